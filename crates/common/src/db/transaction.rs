//! One transaction per write: all of it happens, or none of it does.

use spin_sdk::pg::{Connection, ParameterValue};

use super::client::{query, query_one, query_opt};
use super::{Client, Db, DbError, FromRow};
use crate::Problem;

/// A transaction in progress: the statements [`Db`] has, run inside it. There is no
/// way to begin another inside it (PostgreSQL does not nest transactions), nor to
/// commit or roll back by hand: [`transaction`] does both.
pub struct Tx<'db, C = Connection> {
    client: &'db C,
}

impl<C: Client> Tx<'_, C> {
    /// As [`Db::query`], inside the transaction.
    pub async fn query<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Vec<T>, DbError> {
        query(self.client, statement, params).await
    }

    /// As [`Db::query_one`], inside the transaction.
    pub async fn query_one<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<T, DbError> {
        query_one(self.client, statement, params).await
    }

    /// As [`Db::query_opt`], inside the transaction.
    pub async fn query_opt<T: FromRow>(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Option<T>, DbError> {
        query_opt(self.client, statement, params).await
    }

    /// As [`Db::execute`], inside the transaction.
    pub async fn execute(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<u64, DbError> {
        self.client.execute(statement, params).await
    }
}

impl<C: Client> Client for Tx<'_, C> {
    async fn query(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Vec<super::Row>, DbError> {
        self.client.query(statement, params).await
    }

    async fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        self.client.execute(statement, params).await
    }
}

/// Runs `work` in a transaction on `db`: `BEGIN`, then `COMMIT` if `work` returns
/// `Ok`, `ROLLBACK` if it returns `Err`. A failed `COMMIT` is the result (PostgreSQL
/// has then rolled back), so `Ok` means the writes are durable. A failed `ROLLBACK`
/// is logged, and `work`'s own error returned.
///
/// PostgreSQL aborts a transaction at its first failed statement; every later one
/// fails too. So when a statement fails, return its error: recovering from it and
/// carrying on inside the same transaction cannot work.
///
/// ```no_run
/// # use arena_common::db::{transaction, Db};
/// # use arena_common::Problem;
/// # async fn rename(db: &Db, id: arena_common::ids::Uuid) -> Result<(), Problem> {
/// transaction(db, async |tx| {
///     tx.execute("update agents set name = $2 where agent_id = $1", &[id.into(), "Ada".to_owned().into()]).await?;
///     tx.execute("update agents set version = version + 1 where agent_id = $1", &[id.into()]).await?;
///     Ok(())
/// })
/// .await
/// # }
/// ```
pub async fn transaction<C, T>(
    db: &Db<C>,
    work: impl AsyncFnOnce(&Tx<'_, C>) -> Result<T, Problem>,
) -> Result<T, Problem>
where
    C: Client,
{
    let client = db.client();
    client.execute("begin", &[]).await?;
    match work(&Tx { client }).await {
        Ok(value) => {
            client.execute("commit", &[]).await?;
            Ok(value)
        }
        Err(problem) => {
            if let Err(error) = client.execute("rollback", &[]).await {
                // The connection is likely gone, and the transaction with it; the
                // client is told why the work failed, not why the cleanup did.
                eprintln!("rolling back after {problem}: {error}");
            }
            Err(problem)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;
    use crate::db::error::tests::server_error;
    use crate::db::fake::Script;
    use crate::db::{ResultExt, Row};
    use futures::executor::block_on;

    #[test]
    fn ok_commits() {
        let db = Db::new(Script::default());
        let result = block_on(transaction(&db, async |tx| {
            tx.execute("insert into agents values (1)", &[]).await?;
            Ok(7)
        }));
        assert_eq!(result.unwrap(), 7);
        assert_eq!(
            db.client().statements(),
            ["begin", "insert into agents values (1)", "commit"]
        );
    }

    #[test]
    fn err_rolls_back_and_returns_the_error() {
        let db = Db::new(Script::default());
        let result: Result<(), _> = block_on(transaction(&db, async |tx| {
            tx.execute("insert into agents values (1)", &[]).await?;
            Err(Problem::forbidden("not yours"))
        }));
        assert_eq!(result.unwrap_err().code(), ProblemCode::Forbidden);
        assert_eq!(
            db.client().statements(),
            ["begin", "insert into agents values (1)", "rollback"]
        );
    }

    #[test]
    fn a_failed_statement_rolls_back_and_is_mapped() {
        let db = Db::new(
            Script::default().fail("insert", server_error("23505", Some("agents_name_key"))),
        );
        let result: Result<(), _> = block_on(transaction(&db, async |tx| {
            tx.execute("insert into agents values (1)", &[])
                .await
                .on_constraint("agents_name_key", |_| Problem::conflict("name taken"))?;
            tx.execute("insert into events values (1)", &[]).await?;
            Ok(())
        }));
        assert_eq!(result.unwrap_err().detail(), "name taken");
        assert_eq!(
            db.client().statements(),
            ["begin", "insert into agents values (1)", "rollback"]
        );
    }

    #[test]
    fn a_failed_commit_is_reported_not_ok() {
        let db = Db::new(Script::default().fail("commit", server_error("40001", None)));
        let result = block_on(transaction(&db, async |tx| {
            tx.execute("update agents set name = 'x'", &[]).await?;
            Ok(())
        }));
        let problem = result.unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Unavailable);
        assert_eq!(
            db.client().statements(),
            ["begin", "update agents set name = 'x'", "commit"]
        );
    }

    #[test]
    fn a_failed_begin_runs_nothing() {
        let db = Db::new(Script::default().fail("begin", server_error("57P03", None)));
        let result = block_on(transaction(&db, async |_tx| -> Result<(), Problem> {
            unreachable!("work must not run without a transaction")
        }));
        assert_eq!(result.unwrap_err().code(), ProblemCode::UpstreamUnavailable);
        assert_eq!(db.client().statements(), ["begin"]);
    }

    #[test]
    fn a_failed_rollback_still_returns_the_works_error() {
        let db = Db::new(Script::default().fail("rollback", server_error("08006", None)));
        let result: Result<(), _> = block_on(transaction(&db, async |_tx| {
            Err(Problem::not_found("no agent 7"))
        }));
        assert_eq!(result.unwrap_err().code(), ProblemCode::NotFound);
    }

    #[test]
    fn rows_decode_inside_a_transaction() {
        let db = Db::new(Script::default().returning(
            "select",
            &["n"],
            vec![vec![spin_sdk::pg::DbValue::Int64(3)]],
        ));
        let n = block_on(transaction(&db, async |tx| {
            let row: Row = tx
                .query_one("select count(*) as n from agents", &[])
                .await?;
            Ok(row.get::<i64>("n")?)
        }));
        assert_eq!(n.unwrap(), 3);
    }
}
