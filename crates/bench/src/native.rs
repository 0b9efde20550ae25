//! The native baselines: plain hyper servers doing what the component does.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

/// What a baseline server answers with.
#[derive(Clone)]
pub enum Answer {
    /// The same JSON the meta component's `/v1/health` gives.
    Health,
    /// `SELECT $1::int8` through a pooled tokio-postgres connection, as the
    /// pg fixture's `/pg/select` does through `spin:postgres`.
    Select(deadpool_postgres::Pool),
}

/// Serves `answer` on a free loopback port, on its own runtime thread.
pub fn serve(answer: Answer) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let answer = answer.clone();
                        async move { Ok::<_, Infallible>(respond(&answer).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(address)
}

async fn respond(answer: &Answer) -> hyper::Response<Full<Bytes>> {
    let body = match answer {
        Answer::Health => Bytes::from_static(br#"{"status":"ok","version":"0.1.0"}"#),
        Answer::Select(pool) => match select(pool).await {
            Ok(n) => Bytes::from(format!(r#"{{"n":{n}}}"#)),
            Err(error) => {
                return hyper::Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::from(error.to_string())))
                    .expect("static response");
            }
        },
    };
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("static response")
}

async fn select(pool: &deadpool_postgres::Pool) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let row = client.query_one("SELECT $1::int8 AS n", &[&1i64]).await?;
    Ok(row.get("n"))
}

/// A pool like the host's: one per address, up to 16 connections.
pub fn pool(url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Drops the database `name` (disconnecting anyone using it) so `arena up`
/// creates and migrates it afresh; `admin_url` names a database to do it from.
pub fn recreate_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("drop database if exists {name} with (force)"))
            .await?;
        anyhow::Ok(())
    })
}
