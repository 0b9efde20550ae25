//! Arena's discussions component: agents (and people) taking turns on a topic,
//! persisted so a discussion can be paused, resumed elsewhere, or recovered after
//! a crash.
//!
//! | Route | Module | Who |
//! |---|---|---|
//! | `GET, POST /v1/discussions` | `discussions` | readers: own, shared, taking part (admins: all); writers: members and admins |
//! | `GET, PATCH, DELETE /v1/discussions/{id}` | `discussions` | readers; its owner or an admin changes it |
//! | `POST /v1/discussions/{id}/{start,pause,resume,complete,archive}` | `lifecycle` | its owner, admins |
//! | `GET, POST /v1/discussions/{id}/participants`, `DELETE .../participants/{participant_id}`, `PUT .../participants/order` | `participants` | readers; its owner or an admin changes the roster |
//! | `GET, POST /v1/discussions/{id}/messages`, `GET .../messages/{message_id}` | `messages` | readers; human participants, its owner and admins post |
//! | `POST /v1/discussions/{id}/hands`, `DELETE .../hands/{participant_id}` | `hands` | human participants raise a hand; they, the owner or an admin lower it |
//! | `POST /v1/discussions/{id}/turns`, `POST .../turns/current/cancel` | `turns` | its owner, admins |
//! | `GET, PUT /v1/discussions/{id}/context` | `context` | readers; its owner or an admin writes |
//! | `POST /v1/discussions/{id}/fork` | `fork` | readers who are members or admins |
//! | `GET /v1/discussions/{id}/export` | `export` | readers |
//!
//! Every change is recorded with an event on the discussion's stream,
//! `discussion:<id>`, in the same transaction (see `arena_common::events`). Every
//! 403 this component answers is recorded in the audit trail.

mod context;
mod discussion;
mod discussions;
mod export;
mod fork;
mod hands;
mod lifecycle;
mod message;
mod messages;
mod openapi;
mod participant;
mod participants;
mod turns;

pub use openapi::openapi;

use arena_common::{Problem, request};
use http::Method;

/// The body type handlers read: Spin's incoming body.
pub(crate) type Request = spin_sdk::http::Request;

/// What handlers answer: a whole body, or (a turn, streamed) server-sent events;
/// `plain` makes the first kind into it.
pub(crate) use arena_common::response::{AnyResponse as Response, any as plain};

/// A resource this component serves; ids are still text, parsed by the handler
/// so a malformed one gets a 400 naming the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Discussions,
    Discussion(&'a str),
    Transition(&'a str, lifecycle::Transition),
    Participants(&'a str),
    ParticipantOrder(&'a str),
    Participant(&'a str, &'a str),
    Messages(&'a str),
    Message(&'a str, &'a str),
    Hands(&'a str),
    Hand(&'a str, &'a str),
    Turns(&'a str),
    CurrentTurnCancel(&'a str),
    Context(&'a str),
    Fork(&'a str),
    Export(&'a str),
}

impl<'a> Route<'a> {
    /// The resource at `path`, if any. Paths match exactly: no trailing slash.
    fn at(path: &'a str) -> Option<Self> {
        Some(match arena_common::routes::segments(path)?.as_slice() {
            ["discussions"] => Route::Discussions,
            ["discussions", id] => Route::Discussion(id),
            ["discussions", id, "participants"] => Route::Participants(id),
            ["discussions", id, "participants", "order"] => Route::ParticipantOrder(id),
            ["discussions", id, "participants", participant] => Route::Participant(id, participant),
            ["discussions", id, "messages"] => Route::Messages(id),
            ["discussions", id, "messages", message] => Route::Message(id, message),
            ["discussions", id, "hands"] => Route::Hands(id),
            ["discussions", id, "hands", participant] => Route::Hand(id, participant),
            ["discussions", id, "turns"] => Route::Turns(id),
            ["discussions", id, "turns", "current", "cancel"] => Route::CurrentTurnCancel(id),
            ["discussions", id, "context"] => Route::Context(id),
            ["discussions", id, "fork"] => Route::Fork(id),
            ["discussions", id, "export"] => Route::Export(id),
            ["discussions", id, action] => Route::Transition(id, action.parse().ok()?),
            _ => return None,
        })
    }

    /// The methods the resource answers, for routing and for `Allow`.
    fn methods(self) -> &'static [Method] {
        const READ: [Method; 2] = [Method::GET, Method::HEAD];
        match self {
            Route::Discussions | Route::Participants(_) | Route::Messages(_) => {
                &[Method::GET, Method::HEAD, Method::POST]
            }
            Route::Discussion(_) => &[Method::GET, Method::HEAD, Method::PATCH, Method::DELETE],
            Route::Message(..) | Route::Export(_) => &READ,
            Route::Context(_) => &[Method::GET, Method::HEAD, Method::PUT],
            Route::ParticipantOrder(_) => &[Method::PUT],
            Route::Participant(..) | Route::Hand(..) => &[Method::DELETE],
            Route::Transition(..)
            | Route::Hands(_)
            | Route::Turns(_)
            | Route::CurrentTurnCancel(_)
            | Route::Fork(_) => &[Method::POST],
        }
    }
}

/// Answers one request. Every problem names the request's path and id, wherever it
/// was raised.
pub async fn respond(mut req: Request) -> Result<Response, Problem> {
    let path = request::path(&req).to_owned();
    let result = dispatch(&mut req, &path).await;
    if let Err(problem) = &result {
        arena_common::audit::record_if_denied(&req, problem).await;
    }
    result.map_err(|problem| problem.for_request(&req))
}

async fn dispatch(req: &mut Request, path: &str) -> Result<Response, Problem> {
    let Some(route) = Route::at(path) else {
        return Err(Problem::not_found(format!("there is nothing at {path}")));
    };
    let method = req.method().clone();
    if !route.methods().contains(&method) {
        return Err(Problem::method_not_allowed(&method, route.methods()));
    }
    let is_read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Discussions if is_read => plain(discussions::list(req).await),
        Route::Discussions => plain(discussions::create(req).await),
        Route::Discussion(id) if is_read => plain(discussions::get(req, id).await),
        Route::Discussion(id) if method == Method::PATCH => {
            plain(discussions::update(req, id).await)
        }
        Route::Discussion(id) => plain(discussions::delete(req, id).await),
        Route::Transition(id, transition) => {
            plain(lifecycle::transition(req, id, transition).await)
        }
        Route::Participants(id) if is_read => plain(participants::list(req, id).await),
        Route::Participants(id) => plain(participants::add(req, id).await),
        Route::ParticipantOrder(id) => plain(participants::reorder(req, id).await),
        Route::Participant(id, participant) => {
            plain(participants::remove(req, id, participant).await)
        }
        Route::Messages(id) if is_read => plain(messages::list(req, id).await),
        Route::Messages(id) => plain(messages::post(req, id).await),
        Route::Message(id, message) => plain(messages::get(req, id, message).await),
        Route::Hands(id) => plain(hands::raise(req, id).await),
        Route::Hand(id, participant) => plain(hands::lower(req, id, participant).await),
        Route::Turns(id) => turns::advance(req, id).await,
        Route::CurrentTurnCancel(id) => plain(turns::cancel(req, id).await),
        Route::Context(id) if is_read => plain(context::get(req, id).await),
        Route::Context(id) => plain(context::put(req, id).await),
        Route::Fork(id) => plain(fork::fork(req, id).await),
        Route::Export(id) => export::export(req, id).await,
    }
}

/// The Spin entry point: the component's `wasi:http/handler` export.
#[cfg(all(feature = "component", target_family = "wasm"))]
#[spin_sdk::http_service]
async fn serve(req: spin_sdk::http::Request) -> Result<Response, Problem> {
    respond(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifecycle::Transition;

    #[test]
    fn paths_route_to_their_resources_with_ids_as_text() {
        assert_eq!(Route::at("/v1/discussions"), Some(Route::Discussions));
        assert_eq!(Route::at("/v1/discussions/d"), Some(Route::Discussion("d")));
        assert_eq!(
            Route::at("/v1/discussions/d/pause"),
            Some(Route::Transition("d", Transition::Pause))
        );
        assert_eq!(
            Route::at("/v1/discussions/d/participants/order"),
            Some(Route::ParticipantOrder("d"))
        );
        assert_eq!(
            Route::at("/v1/discussions/d/participants/p"),
            Some(Route::Participant("d", "p"))
        );
        assert_eq!(
            Route::at("/v1/discussions/d/turns/current/cancel"),
            Some(Route::CurrentTurnCancel("d"))
        );
        assert_eq!(
            Route::at("/v1/discussions/d/messages/m"),
            Some(Route::Message("d", "m"))
        );
    }

    #[test]
    fn unknown_and_trailing_slash_paths_route_nowhere() {
        for path in [
            "/v1/discussions/",
            "/v1/discussions/d/explode",
            "/v1/discussions/d/turns/current",
            "/v1/discussions/d/turns/t/cancel",
            "/v1/discussions/d/messages/m/x",
            "/discussions",
        ] {
            assert_eq!(Route::at(path), None, "{path}");
        }
    }

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let documented = arena_common::routes::documented(&openapi());
        for (path, methods) in &documented {
            let route = Route::at(path).unwrap_or_else(|| panic!("{path} is not served"));
            assert_eq!(
                *methods,
                arena_common::routes::sorted(route.methods().to_vec()),
                "{path}"
            );
        }
        // One path per kind of route but the transitions, five paths of their own.
        assert_eq!(documented.len(), 14 + 5);
    }
}
