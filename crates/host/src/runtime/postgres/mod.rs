//! `spin:postgres/postgres@4.2.0`: PostgreSQL for components, as Spin offers it.
//!
//! | WIT | here |
//! |---|---|
//! | `connection.open[-async]`, `connection-builder` | a connection from the per-address [`Pools`], after the address passes the component's `allowed_outbound_hosts` |
//! | `query`, `execute` | prepared and run on that connection; results fully read |
//! | `query-async` | columns at once, rows streamed with back-pressure (never all in memory), then the final result |
//! | errors | `db-error` with the SQLSTATE `code` for server errors |
//!
//! One `connection` resource holds one physical connection for its whole
//! life, so `BEGIN` … `COMMIT` on it is a real transaction.

mod convert;
mod pool;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use deadpool_postgres::Object;
use tokio::sync::{mpsc, oneshot};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Access, Accessor, Destination, FutureReader, HasData, Resource, ResourceTable, StreamProducer,
    StreamReader, StreamResult, VecBuffer,
};

pub use pool::Pools;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/spin-postgres@4.2.0",
        inline: "package arena:host; world postgres { import spin:postgres/postgres@4.2.0; }",
        imports: { default: async | store | trappable },
        with: {
            "spin:postgres/postgres.connection": super::Connection,
            "spin:postgres/postgres.connection-builder": super::ConnectionBuilder,
        },
    });
}

use bindings::spin::postgres::postgres as pg;
use pg::{Column, Error, ParameterValue, Row, RowSet};

/// Rows buffered between the database and a guest reading a `query-async`
/// stream; the database is read no faster than the guest consumes.
const ROW_BUFFER: usize = 64;

/// Which PostgreSQL servers a component may reach.
pub trait Destinations: Send + Sync {
    /// Whether `postgres://{host}:{port}` is allowed.
    fn allows(&self, host: &str, port: u16) -> bool;
}

impl Destinations for crate::allowed_hosts::AllowedHosts {
    fn allows(&self, host: &str, port: u16) -> bool {
        let host = match host.contains(':') {
            true => format!("[{host}]"),
            false => host.to_ascii_lowercase(),
        };
        let destination = crate::allowed_hosts::Destination {
            scheme: "postgres".into(),
            host,
            port: Some(port),
        };
        self.allows_destination(&destination)
    }
}

/// What one instance needs: the app-wide pools and its own destinations.
pub struct PostgresCtx {
    pub pools: Arc<Pools>,
    pub destinations: Arc<dyn Destinations>,
    pub component: Arc<str>,
}

/// The `HasData` marker for this interface's bindings.
pub struct Postgres;

pub struct PostgresView<'a> {
    pub ctx: &'a PostgresCtx,
    pub table: &'a mut ResourceTable,
}

impl HasData for Postgres {
    type Data<'a> = PostgresView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> PostgresView<'_>,
) -> wasmtime::Result<()> {
    pg::add_to_linker::<T, Postgres>(linker, view)
}

/// A `connection` resource: one physical connection, returned to its pool
/// when the guest drops it.
pub struct Connection {
    client: Arc<Object>,
}

/// A `connection-builder` resource.
pub struct ConnectionBuilder {
    address: String,
    ca_root: Option<String>,
}

impl pg::Host for PostgresView<'_> {}
impl pg::HostConnection for PostgresView<'_> {}
impl pg::HostConnectionBuilder for PostgresView<'_> {}

/// Resolves, checks and connects; everything `open` and `build` share.
async fn connect(
    ctx: (Arc<Pools>, Arc<dyn Destinations>, Arc<str>),
    address: &str,
    ca_root: Option<&str>,
) -> Result<Connection, Error> {
    let (pools, destinations, component) = ctx;
    let config: tokio_postgres::Config = address
        .parse()
        .map_err(|e| Error::ConnectionFailed(format!("invalid address: {e}")))?;
    for (host, port) in endpoints(&config)? {
        if !destinations.allows(&host, port) {
            tracing::warn!(
                component = %component,
                destination = %format!("postgres://{host}:{port}"),
                "connection to disallowed destination"
            );
            return Err(Error::ConnectionFailed(format!(
                "connection to disallowed destination postgres://{host}:{port}: \
                 add it to the component's allowed_outbound_hosts"
            )));
        }
    }
    let pool = pools
        .get(address, &config, ca_root)
        .map_err(Error::ConnectionFailed)?;
    let client = pool
        .get()
        .await
        .map_err(|e| Error::ConnectionFailed(connect_error(&e)))?;
    Ok(Connection {
        client: Arc::new(client),
    })
}

/// Hands a new connection to the guest as a resource; a failure to connect is
/// the guest's error to handle, a full resource table traps.
fn into_resource(
    connected: Result<Connection, Error>,
    push: impl FnOnce(
        Connection,
    ) -> Result<Resource<Connection>, wasmtime::component::ResourceTableError>,
) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
    match connected {
        Ok(connection) => Ok(Ok(push(connection)?)),
        Err(error) => Ok(Err(error)),
    }
}

/// Every `(host, port)` the address may connect to.
#[allow(
    clippy::result_large_err,
    reason = "the WIT error is what the guest receives"
)]
fn endpoints(config: &tokio_postgres::Config) -> Result<Vec<(String, u16)>, Error> {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(host) => Ok((host.clone(), port)),
                #[allow(unreachable_patterns)]
                _ => Err(Error::ConnectionFailed(
                    "Unix sockets are not allowed; use host:port".into(),
                )),
            }
        })
        .collect()
}

fn connect_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// tokio-postgres's own `Display` hides the cause ("error connecting to
/// server"); the cause is what an operator needs.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Maps a tokio-postgres error to the interface's `error`.
fn query_error(error: tokio_postgres::Error) -> Error {
    if let Some(db) = error.as_db_error() {
        let mut extras = Vec::new();
        let mut extra = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                extras.push((name.to_owned(), value.to_owned()));
            }
        };
        extra("hint", db.hint());
        extra("schema", db.schema());
        extra("table", db.table());
        extra("column", db.column());
        extra("constraint", db.constraint());
        extra("datatype", db.datatype());
        return Error::QueryFailed(pg::QueryError::DbError(pg::DbError {
            as_text: db.to_string(),
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras,
        }));
    }
    if error.is_closed() {
        return Error::ConnectionFailed(describe(&error));
    }
    let text = describe(&error);
    if text.contains("error serializing parameter") {
        return Error::BadParameter(text);
    }
    if text.contains("error deserializing column") {
        return Error::ValueConversionFailed(text);
    }
    Error::QueryFailed(pg::QueryError::Text(text))
}

fn params(values: Vec<ParameterValue>) -> Vec<convert::Param> {
    values.into_iter().map(convert::Param).collect()
}

fn as_sql(params: &[convert::Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

fn columns(statement: &tokio_postgres::Statement) -> Vec<Column> {
    statement
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            data_type: convert::data_type(c.type_()),
        })
        .collect()
}

async fn query(
    client: &Object,
    statement: &str,
    values: Vec<ParameterValue>,
) -> Result<RowSet, Error> {
    let prepared = client.prepare(statement).await.map_err(query_error)?;
    let params = params(values);
    let rows = client
        .query(&prepared, &as_sql(&params))
        .await
        .map_err(query_error)?;
    let rows = rows
        .iter()
        .map(convert::row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_error)?;
    Ok(RowSet {
        columns: columns(&prepared),
        rows,
    })
}

async fn execute(
    client: &Object,
    statement: &str,
    values: Vec<ParameterValue>,
) -> Result<u64, Error> {
    let params = params(values);
    client
        .execute(statement, &as_sql(&params))
        .await
        .map_err(query_error)
}

fn client(
    table: &ResourceTable,
    connection: &Resource<Connection>,
) -> wasmtime::Result<Arc<Object>> {
    Ok(table.get(connection)?.client.clone())
}

fn context(view: &PostgresView<'_>) -> (Arc<Pools>, Arc<dyn Destinations>, Arc<str>) {
    (
        view.ctx.pools.clone(),
        view.ctx.destinations.clone(),
        view.ctx.component.clone(),
    )
}

impl<T: Send + 'static> pg::HostConnectionWithStore<T> for Postgres {
    async fn drop(accessor: &Accessor<T, Self>, rep: Resource<Connection>) -> wasmtime::Result<()> {
        accessor.with(|mut access| access.get().table.delete(rep))?;
        Ok(())
    }

    async fn open(
        mut host: Access<'_, T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let context = context(&host.get());
        let connected = connect(context, &address, None).await;
        into_resource(connected, |connection| host.get().table.push(connection))
    }

    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let context = accessor.with(|mut access| context(&access.get()));
        let connected = connect(context, &address, None).await;
        into_resource(connected, |connection| {
            accessor.with(|mut access| access.get().table.push(connection))
        })
    }

    async fn query(
        mut host: Access<'_, T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let client = client(host.get().table, &connection)?;
        Ok(query(&client, &statement, params).await)
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<Column>,
                StreamReader<Row>,
                FutureReader<Result<(), Error>>,
            ),
            Error,
        >,
    > {
        let client = accessor.with(|mut access| client(access.get().table, &connection))?;
        let prepared = match client.prepare(&statement).await {
            Ok(prepared) => prepared,
            Err(error) => return Ok(Err(query_error(error))),
        };
        let columns = columns(&prepared);
        let (rows_tx, rows_rx) = mpsc::channel(ROW_BUFFER);
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(stream_rows(
            client,
            prepared,
            self::params(params),
            rows_tx,
            done_tx,
        ));
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, RowProducer { rows: rows_rx })?;
            let done = FutureReader::new(&mut access, async move {
                // A dropped sender means the task ended early: the guest
                // stopped reading, so nobody is waiting for this result.
                Ok::<_, wasmtime::Error>(done_rx.await.unwrap_or(Ok(())))
            })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn execute(
        mut host: Access<'_, T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let client = client(host.get().table, &connection)?;
        Ok(execute(&client, &statement, params).await)
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let client = accessor.with(|mut access| client(access.get().table, &connection))?;
        Ok(execute(&client, &statement, params).await)
    }
}

impl<T: Send + 'static> pg::HostConnectionBuilderWithStore<T> for Postgres {
    async fn drop(
        accessor: &Accessor<T, Self>,
        rep: Resource<ConnectionBuilder>,
    ) -> wasmtime::Result<()> {
        accessor.with(|mut access| access.get().table.delete(rep))?;
        Ok(())
    }

    async fn new(
        mut host: Access<'_, T, Self>,
        address: String,
    ) -> wasmtime::Result<Resource<ConnectionBuilder>> {
        Ok(host.get().table.push(ConnectionBuilder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        mut host: Access<'_, T, Self>,
        builder: Resource<ConnectionBuilder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        host.get().table.get_mut(&builder)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(
        mut host: Access<'_, T, Self>,
        builder: Resource<ConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let view = host.get();
        let ConnectionBuilder { address, ca_root } = view.table.get(&builder)?;
        let (address, ca_root) = (address.clone(), ca_root.clone());
        let context = context(&view);
        let connected = connect(context, &address, ca_root.as_deref()).await;
        into_resource(connected, |connection| host.get().table.push(connection))
    }

    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<ConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let (address, ca_root, context) = accessor.with(|mut access| -> wasmtime::Result<_> {
            let view = access.get();
            let ConnectionBuilder { address, ca_root } = view.table.get(&builder)?;
            Ok((address.clone(), ca_root.clone(), context(&view)))
        })?;
        let connected = connect(context, &address, ca_root.as_deref()).await;
        into_resource(connected, |connection| {
            accessor.with(|mut access| access.get().table.push(connection))
        })
    }
}

/// Reads rows from the database into `rows` until the result ends, the
/// guest stops reading, or an error occurs; reports how it ended on `done`.
async fn stream_rows(
    client: Arc<Object>,
    statement: tokio_postgres::Statement,
    params: Vec<convert::Param>,
    rows: mpsc::Sender<Row>,
    done: oneshot::Sender<Result<(), Error>>,
) {
    use futures::StreamExt;
    let result = async {
        let stream = client
            .query_raw(&statement, as_sql(&params))
            .await
            .map_err(query_error)?;
        let mut stream = std::pin::pin!(stream);
        while let Some(row) = stream.next().await {
            let row = convert::row(&row.map_err(query_error)?).map_err(query_error)?;
            if rows.send(row).await.is_err() {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(rows);
    let _ = done.send(result);
}

/// The guest's end of a `query-async` row stream.
struct RowProducer {
    rows: mpsc::Receiver<Row>,
}

impl<D> StreamProducer<D> for RowProducer {
    type Item = Row;
    type Buffer = VecBuffer<Row>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Row, VecBuffer<Row>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let wanted = destination.remaining(&mut store).unwrap_or(ROW_BUFFER);
        if wanted == 0 {
            // A readiness probe: claim readiness without taking a row.
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let mut batch = Vec::new();
        while batch.len() < wanted {
            match self.rows.poll_recv(cx) {
                Poll::Ready(Some(row)) => batch.push(row),
                Poll::Ready(None) if batch.is_empty() => {
                    return Poll::Ready(Ok(StreamResult::Dropped));
                }
                Poll::Ready(None) | Poll::Pending if !batch.is_empty() => break,
                Poll::Pending if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => unreachable!("handled above"),
            }
        }
        destination.set_buffer(batch.into());
        Poll::Ready(Ok(StreamResult::Completed))
    }
}
