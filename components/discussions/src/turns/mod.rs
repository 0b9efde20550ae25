//! TODO(helper): replace this stub.

use crate::{Request, Response};
use arena_common::Problem;

pub(crate) async fn advance(req: &mut Request, id: &str) -> Result<Response, Problem> {
    let _ = (req, id);
    todo!()
}

pub(crate) async fn cancel(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = (req, id);
    todo!()
}
