//! The connection a handler queries through.

use std::sync::Arc;

use spin_sdk::pg::{Connection, ParameterValue};

use super::{DbError, FromRow, Row};
use crate::Problem;

/// The Spin variable holding the PostgreSQL address (`postgres://user:pass@host/db`).
/// Real Spin tries TLS unless the address ends in `?sslmode=disable`.
///
/// Spin shows a component only the variables its manifest entry names, and lets it
/// reach only the hosts it lists, so a component using [`Db::connect`] carries:
///
/// ```toml
/// [component.agents]
/// allowed_outbound_hosts = ["postgres://127.0.0.1:5432"]
/// [component.agents.variables]
/// database_url = "{{ database_url }}"
/// ```
pub const DATABASE_URL: &str = "database_url";

/// What [`Db`] needs from a connection: run a statement, return its rows or the count
/// it affected. Spin's [`Connection`] in components; a scripted one in tests.
// Components are single-threaded Wasm: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// Runs `statement` and collects its rows.
    async fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<Vec<Row>, DbError>;

    /// Runs `statement`; the number of rows it affected.
    async fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError>;
}

impl Client for Connection {
    async fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<Vec<Row>, DbError> {
        let failed = |error| DbError::pg(statement, error);
        let mut result = Connection::query(self, statement, params)
            .await
            .map_err(failed)?;
        let columns: Arc<[String]> = result.columns().iter().map(|c| c.name.clone()).collect();
        let mut rows = Vec::new();
        while let Some(values) = result.rows().next().await {
            rows.push(Row::new(Arc::clone(&columns), values));
        }
        // The row stream ends early when the statement fails part-way; only the result
        // says whether it did.
        result.result().await.map_err(failed)?;
        Ok(rows)
    }

    async fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        Connection::execute(self, statement, params)
            .await
            .map_err(|error| DbError::pg(statement, error))
    }
}

/// A database connection for one request.
///
/// Statements take parameters as `&[ParameterValue]`; `.into()` makes one from a
/// `bool`, an integer, a float, a `String`, a `Uuid`, a `Timestamp`, an `Option` of
/// those (`None` is `NULL`), and more (see `spin_sdk::pg`).
pub struct Db<C = Connection> {
    client: C,
}

impl Db {
    /// Opens a connection to the address in the Spin variable [`DATABASE_URL`].
    ///
    /// A variable that is not set is a 500 (the deployment is broken); a database
    /// that does not answer is a 503 `upstream_unavailable`. Neither sends the address.
    pub async fn connect() -> Result<Self, Problem> {
        let address = crate::variables::text(DATABASE_URL).await?;
        let connection = Connection::open(address)
            .await
            .map_err(|error| DbError::pg("connecting", error))?;
        Ok(Self::new(connection))
    }
}

impl<C: Client> Db<C> {
    /// A `Db` over `client`.
    pub fn new(client: C) -> Self {
        Self { client }
    }

    /// Every row `statement` returns, each decoded as a `T`.
    pub async fn query<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Vec<T>, DbError> {
        query(&self.client, statement, params).await
    }

    /// The one row `statement` returns; none or several is a [`DbError::RowCount`]
    /// (a 500). For a lookup that may find nothing, use [`query_opt`](Self::query_opt).
    pub async fn query_one<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<T, DbError> {
        query_one(&self.client, statement, params).await
    }

    /// The row `statement` returns, if any; several is a [`DbError::RowCount`].
    pub async fn query_opt<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Option<T>, DbError> {
        query_opt(&self.client, statement, params).await
    }

    /// Runs `statement`; the number of rows it affected.
    pub async fn execute(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<u64, DbError> {
        self.client.execute(statement, params).await
    }

    /// The connection, for [`transaction`](super::transaction).
    pub(crate) fn client(&self) -> &C {
        &self.client
    }
}

/// A `Db` is itself a [`Client`], as is a [`Tx`](super::Tx): a helper that takes
/// `&impl Client` (an event, an audit record) runs on either, inside a
/// transaction or outside one.
impl<C: Client> Client for Db<C> {
    async fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<Vec<Row>, DbError> {
        self.client.query(statement, params).await
    }

    async fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        self.client.execute(statement, params).await
    }
}

/// Typed rows from any [`Client`]: what [`Db`] and [`Tx`](super::Tx) offer, for a
/// helper that takes `&impl Client` and runs inside a transaction or outside one.
#[allow(async_fn_in_trait)]
pub trait Typed: Client + Sized {
    /// As [`Db::query`].
    async fn rows<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Vec<T>, DbError> {
        query(self, statement, params).await
    }

    /// As [`Db::query_one`].
    async fn row<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<T, DbError> {
        query_one(self, statement, params).await
    }

    /// As [`Db::query_opt`].
    async fn row_opt<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Option<T>, DbError> {
        query_opt(self, statement, params).await
    }
}

impl<C: Client> Typed for C {}

pub(super) async fn query<C: Client, T: FromRow>(
    client: &C,
    statement: &str,
    params: &[ParameterValue],
) -> Result<Vec<T>, DbError> {
    let rows = client.query(statement, params).await?;
    rows.into_iter().map(T::from_row).collect()
}

pub(super) async fn query_opt<C: Client, T: FromRow>(
    client: &C,
    statement: &str,
    params: &[ParameterValue],
) -> Result<Option<T>, DbError> {
    let mut rows = client.query(statement, params).await?;
    match rows.len() {
        0 => Ok(None),
        1 => rows.pop().map(T::from_row).transpose(),
        got => Err(DbError::RowCount {
            expected: "at most one",
            got,
        }),
    }
}

pub(super) async fn query_one<C: Client, T: FromRow>(
    client: &C,
    statement: &str,
    params: &[ParameterValue],
) -> Result<T, DbError> {
    let mut rows = client.query(statement, params).await?;
    match (rows.pop(), rows.len()) {
        (Some(row), 0) => T::from_row(row),
        (last, before) => Err(DbError::RowCount {
            expected: "exactly one",
            got: before + usize::from(last.is_some()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;
    use crate::db::fake::Script;
    use futures::executor::block_on;
    use spin_sdk::pg::DbValue;

    fn db_with(rows: usize) -> Db<Script> {
        let rows = (0..rows).map(|n| vec![DbValue::Int32(n as i32)]).collect();
        Db::new(Script::default().returning("select", &["n"], rows))
    }

    fn numbers(rows: Vec<Row>) -> Vec<i32> {
        rows.iter().map(|row| row.get("n").unwrap()).collect()
    }

    #[test]
    fn query_decodes_every_row() {
        let rows: Vec<Row> = block_on(db_with(3).query("select n", &[])).unwrap();
        assert_eq!(numbers(rows), [0, 1, 2]);
    }

    #[test]
    fn query_one_wants_exactly_one_row() {
        let one: Row = block_on(db_with(1).query_one("select n", &[])).unwrap();
        assert_eq!(one.get::<i32>("n").unwrap(), 0);
        for rows in [0, 2] {
            let error = block_on(db_with(rows).query_one::<Row>("select n", &[])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("expected exactly one row, the statement returned {rows}")
            );
            assert_eq!(Problem::from(error).code(), ProblemCode::Internal);
        }
    }

    #[test]
    fn query_opt_wants_at_most_one_row() {
        assert!(
            block_on(db_with(0).query_opt::<Row>("select n", &[]))
                .unwrap()
                .is_none()
        );
        assert!(
            block_on(db_with(1).query_opt::<Row>("select n", &[]))
                .unwrap()
                .is_some()
        );
        let error = block_on(db_with(2).query_opt::<Row>("select n", &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected at most one row, the statement returned 2"
        );
    }

    #[test]
    fn statements_and_parameters_reach_the_connection_unchanged() {
        let db = db_with(0);
        let params = [ParameterValue::Int64(7), ParameterValue::Str("ada".into())];
        block_on(db.execute("delete from agents where n = $1 and name = $2", &params)).unwrap();
        assert_eq!(
            db.client().statements(),
            ["delete from agents where n = $1 and name = $2"]
        );
        assert_eq!(
            format!("{:?}", db.client().params()),
            format!("{:?}", [params])
        );
    }
}
