//! A scripted [`Client`] for native tests: records each statement, fails the ones it
//! is told to, and answers queries with the rows it is given.

use std::cell::RefCell;
use std::sync::Arc;

use spin_sdk::pg::{DbValue, ParameterValue};

use super::{Client, DbError, Row};

#[derive(Default)]
pub(crate) struct Script {
    statements: RefCell<Vec<String>>,
    params: RefCell<Vec<Vec<ParameterValue>>>,
    /// A statement starting with the prefix fails, once, with the error.
    failures: RefCell<Vec<(&'static str, Option<DbError>)>>,
    /// A query starting with the prefix returns these rows.
    results: Vec<(&'static str, Vec<Row>)>,
}

impl Script {
    pub(crate) fn fail(self, prefix: &'static str, error: DbError) -> Self {
        self.failures.borrow_mut().push((prefix, Some(error)));
        self
    }

    pub(crate) fn returning(
        mut self,
        prefix: &'static str,
        columns: &[&str],
        rows: Vec<Vec<DbValue>>,
    ) -> Self {
        let columns: Arc<[String]> = columns.iter().map(|c| c.to_string()).collect();
        let rows = rows
            .into_iter()
            .map(|values| Row::new(Arc::clone(&columns), values))
            .collect();
        self.results.push((prefix, rows));
        self
    }

    /// Every statement run so far, in order.
    pub(crate) fn statements(&self) -> Vec<String> {
        self.statements.borrow().clone()
    }

    /// The parameters of every statement run so far, in order.
    pub(crate) fn params(&self) -> Vec<Vec<ParameterValue>> {
        self.params.borrow().clone()
    }

    fn run(&self, statement: &str, params: &[ParameterValue]) -> Result<(), DbError> {
        self.statements.borrow_mut().push(statement.to_owned());
        self.params.borrow_mut().push(params.to_vec());
        let mut failures = self.failures.borrow_mut();
        let failure = failures
            .iter_mut()
            .find(|(prefix, error)| statement.starts_with(prefix) && error.is_some());
        match failure.and_then(|(_, error)| error.take()) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Client for Script {
    async fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<Vec<Row>, DbError> {
        self.run(statement, params)?;
        Ok(self
            .results
            .iter()
            .find(|(prefix, _)| statement.starts_with(prefix))
            .map(|(_, rows)| rows.clone())
            .unwrap_or_default())
    }

    async fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        self.run(statement, params)?;
        Ok(1)
    }
}
