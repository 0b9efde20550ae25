//! TODO(helper): replace this stub.

use crate::Request;
use arena_common::Problem;

pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn create(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn update(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}

pub(crate) async fn delete(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let _ = req;
    todo!()
}
