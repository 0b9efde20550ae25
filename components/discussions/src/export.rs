//! TODO(helper): replace this stub.

use crate::{Request, Response};
use arena_common::Problem;

pub(crate) async fn export(req: &mut Request, id: &str) -> Result<Response, Problem> {
    let _ = (req, id);
    todo!()
}
