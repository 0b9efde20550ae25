//! TODO(helper): replace this stub.

use crate::Request;
use arena_common::Problem;

pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn put(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}
