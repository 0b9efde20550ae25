//! TODO(helper): replace this stub.

use crate::Request;
use arena_common::Problem;

pub(crate) async fn list(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn add(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn reorder(
    req: &mut Request,
    id: &str,
) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn remove(
    req: &mut Request,
    id: &str,
    participant: &str,
) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}
