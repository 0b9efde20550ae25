//! TODO(helper): replace this stub.

use crate::Request;
use arena_common::Problem;

/// A lifecycle action, `POST /v1/discussions/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Start,
    Pause,
    Resume,
    Complete,
    Archive,
}

impl std::str::FromStr for Transition {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        Ok(match text {
            "start" => Transition::Start,
            "pause" => Transition::Pause,
            "resume" => Transition::Resume,
            "complete" => Transition::Complete,
            "archive" => Transition::Archive,
            _ => return Err(()),
        })
    }
}

pub(crate) async fn transition(
    req: &mut Request,
    id: &str,
    transition: Transition,
) -> Result<http::Response<String>, Problem> {
    let _ = (req, id, transition);
    todo!()
}
