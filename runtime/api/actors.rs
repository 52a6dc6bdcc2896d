//! Grid actors' contract: a call to an actor and the listing of actors, as the admin API carries them
//! (JSON) and the Rust client, the CLI and the console use them. Serde only: no clock, no I/O.
//!
//! A call names its actor by kind and key and carries its message as JSON; the reply comes back as
//! JSON. Every bound on a call is checked once, where the request is parsed ([`ActorCallRequest::parse`]),
//! so the service layer only ever sees an [`ActorCall`] within them.
//!
//! What a caller sees across a move: a call whose host died before it answered fails with
//! `outcome unknown` (it may have been applied) and is never sent again on the caller's behalf; one
//! refused before anything was applied (`unavailable`, `overloaded`) may be sent again. A call that
//! carries an `idempotency_key` may always be sent again: a durable actor records the reply with its
//! state and answers a repeat with the recorded reply, without handling it twice.
//!
//! Request bodies refuse unknown fields: a misspelt option must not be silently dropped.

use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use crate::grid::actors::{ActorId, ActorRecord};
use crate::ids::NodeId;
use crate::limits::{
    ACTORS_LIST_MAX, ACTOR_CALL_TIMEOUT_MS_DEFAULT, ACTOR_CALL_TIMEOUT_MS_MAX, ACTOR_IDEMPOTENCY_KEY_BYTES_MAX,
    ACTOR_MESSAGE_BYTES_MAX,
};

/// `POST /grid/actors/call`: a message to one actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorCallRequest {
    /// The actor's kind (`counter`, or a kind the nodes register).
    pub kind: String,
    /// The actor's key.
    pub key: String,
    /// The message, as JSON (at most `ACTOR_MESSAGE_BYTES_MAX` bytes of it).
    pub message: serde_json::Value,
    /// Makes the call safe to send again: a durable actor answers a repeat with the reply it recorded
    /// (1 to `ACTOR_IDEMPOTENCY_KEY_BYTES_MAX` bytes, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How long the caller waits for the reply (default `ACTOR_CALL_TIMEOUT_MS_DEFAULT`, at most
    /// `ACTOR_CALL_TIMEOUT_MS_MAX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A call within every bound, as the service layer takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorCall {
    /// The actor.
    pub actor: ActorId,
    /// The message's JSON bytes.
    pub message: Vec<u8>,
    /// See [`ActorCallRequest::idempotency_key`].
    pub idempotency_key: Option<String>,
    /// The wait, within 1..=`ACTOR_CALL_TIMEOUT_MS_MAX`.
    pub timeout_ms: u64,
}

impl ActorCallRequest {
    /// A call of `message` to `actor`, with no idempotency key and the default wait.
    pub fn new(actor: &ActorId, message: serde_json::Value) -> ActorCallRequest {
        ActorCallRequest {
            kind: actor.kind.clone(),
            key: actor.key.clone(),
            message,
            idempotency_key: None,
            timeout_ms: None,
        }
    }

    /// The call this request asks for, every bound checked.
    ///
    /// # Errors
    /// `bad arguments` for a bad kind, key, idempotency key or wait; `too large` for a message over
    /// `ACTOR_MESSAGE_BYTES_MAX` bytes of JSON.
    pub fn parse(self) -> Result<ActorCall, ApiError> {
        let actor = ActorId::new(&self.kind, &self.key).map_err(ApiError::bad_arguments)?;
        if let Some(key) = &self.idempotency_key {
            check_idempotency_key(key)?;
        }
        let timeout_ms = self.timeout_ms.unwrap_or(ACTOR_CALL_TIMEOUT_MS_DEFAULT);
        if !(1..=ACTOR_CALL_TIMEOUT_MS_MAX).contains(&timeout_ms) {
            return Err(ApiError::bad_arguments(format!(
                "timeout_ms must be 1..={ACTOR_CALL_TIMEOUT_MS_MAX} (ACTOR_CALL_TIMEOUT_MS_MAX)"
            )));
        }
        let message = serde_json::to_vec(&self.message).map_err(ApiError::bad_arguments)?;
        if message.len() > ACTOR_MESSAGE_BYTES_MAX {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "a message of {} JSON bytes exceeds ACTOR_MESSAGE_BYTES_MAX ({ACTOR_MESSAGE_BYTES_MAX} bytes)",
                    message.len()
                ),
            ));
        }
        Ok(ActorCall { actor, message, idempotency_key: self.idempotency_key, timeout_ms })
    }
}

/// Checks an idempotency key: 1 to `ACTOR_IDEMPOTENCY_KEY_BYTES_MAX` bytes, no control characters.
///
/// # Errors
/// `bad arguments` naming the rule.
pub fn check_idempotency_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > ACTOR_IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(ApiError::bad_arguments(format!(
            "an idempotency key has 1 to {ACTOR_IDEMPOTENCY_KEY_BYTES_MAX} bytes (ACTOR_IDEMPOTENCY_KEY_BYTES_MAX)"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::bad_arguments("an idempotency key has no control characters"));
    }
    Ok(())
}

/// The answer to an [`ActorCallRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorCallAnswer {
    /// The actor's kind.
    pub kind: String,
    /// The actor's key.
    pub key: String,
    /// The node whose activation answered.
    pub node: NodeId,
    /// The actor's reply, as JSON.
    pub reply: serde_json::Value,
}

impl ActorCallAnswer {
    /// The answer of `actor` hosted on `node`, whose reply is the JSON bytes `reply`.
    ///
    /// # Errors
    /// `internal` if `reply` is not JSON (a JSON call's reply always is).
    pub fn of(actor: ActorId, node: NodeId, reply: &[u8]) -> Result<ActorCallAnswer, ApiError> {
        let reply = serde_json::from_slice(reply).map_err(|error| {
            ApiError::new(ErrorCode::Internal, format!("the reply of {actor} is not JSON: {error}"))
        })?;
        Ok(ActorCallAnswer { kind: actor.kind, key: actor.key, node, reply })
    }
}

/// The answer to a tell (`POST /grid/actors/tell`, an [`ActorCallRequest`] whose reply nobody waits
/// for): the message is queued on the actor's host, in order behind what that caller sent before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorToldAnswer {
    /// The actor's kind.
    pub kind: String,
    /// The actor's key.
    pub key: String,
    /// The node whose activation queued the message.
    pub node: NodeId,
}

/// Query of `GET /grid/actors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorsQuery {
    /// Only actors of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl ActorsQuery {
    /// The kind asked for, checked as an actor's kind is.
    ///
    /// # Errors
    /// `bad arguments` for a kind no actor can have.
    pub fn kind(&self) -> Result<Option<&str>, ApiError> {
        match &self.kind {
            // Any valid key: an error can only be about the kind.
            Some(kind) => ActorId::new(kind, "-").map(|_| Some(kind.as_str())).map_err(ApiError::bad_arguments),
            None => Ok(None),
        }
    }
}

/// An actor as the API shows it: its replicated record, and what its host knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorView {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// The node hosting it; `None`: not active (passivated, orphaned, never called).
    pub node: Option<NodeId>,
    /// The fencing token of its latest activation.
    pub token: u64,
    /// Whether its state is committed through the log.
    pub durable: bool,
    /// Whether the cluster keeps it running without waiting for a call.
    pub singleton: bool,
    /// Bytes of its last committed snapshot.
    pub state_bytes: u64,
    /// Calls whose state was committed (durable actors).
    pub seq: u64,
    /// Messages its current activation handled, when its host reported them.
    #[serde(default)]
    pub messages: Option<u64>,
}

impl ActorView {
    /// The view of `id`'s replicated record; `messages` is left for the host to fill in.
    pub fn of(id: &ActorId, record: &ActorRecord) -> ActorView {
        ActorView {
            kind: id.kind.clone(),
            key: id.key.clone(),
            node: record.node,
            token: record.token.0,
            durable: record.durable,
            singleton: record.singleton,
            state_bytes: record.state.len() as u64,
            seq: record.seq,
            messages: None,
        }
    }
}

/// The answer to `GET /grid/actors`: actors in (kind, key) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorsAnswer {
    /// The actors, at most `ACTORS_LIST_MAX`.
    pub actors: Vec<ActorView>,
    /// Whether there were more than `ACTORS_LIST_MAX` (narrow it with `kind`).
    #[serde(default)]
    pub truncated: bool,
}

impl ActorsAnswer {
    /// `actors` sorted by kind and key and cut at `ACTORS_LIST_MAX`.
    pub fn of(mut actors: Vec<ActorView>) -> ActorsAnswer {
        actors.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
        let truncated = actors.len() > ACTORS_LIST_MAX;
        actors.truncate(ACTORS_LIST_MAX);
        ActorsAnswer { actors, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> Result<ActorCall, ApiError> {
        serde_json::from_value::<ActorCallRequest>(body).map_err(ApiError::bad_arguments)?.parse()
    }

    #[test]
    fn a_call_parses_with_defaults() {
        let call = request(json!({"kind": "counter", "key": "a", "message": {"add": 1}})).expect("parse");
        assert_eq!(call.actor, ActorId::new("counter", "a").expect("id"));
        assert_eq!(call.message, br#"{"add":1}"#);
        assert_eq!((call.idempotency_key, call.timeout_ms), (None, ACTOR_CALL_TIMEOUT_MS_DEFAULT));
        let call = request(json!({"kind": "counter", "key": "a", "message": 5, "idempotency_key": "k1",
            "timeout_ms": ACTOR_CALL_TIMEOUT_MS_MAX}))
        .expect("parse");
        assert_eq!((call.idempotency_key.as_deref(), call.timeout_ms), (Some("k1"), ACTOR_CALL_TIMEOUT_MS_MAX));
    }

    #[test]
    fn every_bound_is_checked_where_the_call_is_parsed() {
        let long_key = "k".repeat(ACTOR_IDEMPOTENCY_KEY_BYTES_MAX + 1);
        let bad = [
            json!({"kind": "", "key": "a", "message": 1}),
            json!({"kind": "no spaces", "key": "a", "message": 1}),
            json!({"kind": "k".repeat(crate::limits::ACTOR_KIND_BYTES_MAX + 1), "key": "a", "message": 1}),
            json!({"kind": "counter", "key": "", "message": 1}),
            json!({"kind": "counter", "key": "a\nb", "message": 1}),
            json!({"kind": "counter", "key": "k".repeat(crate::limits::ACTOR_KEY_BYTES_MAX + 1), "message": 1}),
            json!({"kind": "counter", "key": "a", "message": 1, "idempotency_key": ""}),
            json!({"kind": "counter", "key": "a", "message": 1, "idempotency_key": long_key}),
            json!({"kind": "counter", "key": "a", "message": 1, "idempotency_key": "a\u{7}"}),
            json!({"kind": "counter", "key": "a", "message": 1, "timeout_ms": 0}),
            json!({"kind": "counter", "key": "a", "message": 1, "timeout_ms": ACTOR_CALL_TIMEOUT_MS_MAX + 1}),
            json!({"kind": "counter", "key": "a", "message": 1, "tiemout_ms": 5}),
            json!({"kind": "counter", "key": "a"}),
        ];
        for body in bad {
            let error = request(body.clone()).expect_err(&body.to_string());
            assert_eq!(error.code, ErrorCode::BadArguments, "{body}: {}", error.message);
        }
        let at_limit = "x".repeat(ACTOR_MESSAGE_BYTES_MAX - 2);
        assert!(request(json!({"kind": "counter", "key": "a", "message": at_limit})).is_ok(), "quotes count");
        let over = "x".repeat(ACTOR_MESSAGE_BYTES_MAX - 1);
        let error = request(json!({"kind": "counter", "key": "a", "message": over})).expect_err("too large");
        assert_eq!(error.code, ErrorCode::TooLarge);
        assert!(error.message.contains("ACTOR_MESSAGE_BYTES_MAX"), "{}", error.message);
    }

    #[test]
    fn a_request_round_trips_and_leaves_out_what_it_does_not_set() {
        let actor = ActorId::new("counter", "a").expect("id");
        let request = ActorCallRequest::new(&actor, json!({"add": 1}));
        let text = serde_json::to_string(&request).expect("json");
        assert_eq!(text, r#"{"kind":"counter","key":"a","message":{"add":1}}"#);
        assert_eq!(serde_json::from_str::<ActorCallRequest>(&text).expect("decode"), request);
    }

    #[test]
    fn an_answer_carries_the_reply_as_json() {
        let actor = ActorId::new("counter", "a").expect("id");
        let answer = ActorCallAnswer::of(actor.clone(), NodeId(2), br#"{"total":3}"#).expect("json");
        assert_eq!(
            serde_json::to_value(&answer).expect("json"),
            json!({"kind": "counter", "key": "a", "node": 2, "reply": {"total": 3}})
        );
        assert_eq!(ActorCallAnswer::of(actor, NodeId(2), b"\x00").expect_err("not json").code, ErrorCode::Internal);
    }

    #[test]
    fn a_listing_is_sorted_cut_and_its_kind_checked() {
        let view = |kind: &str, key: &str| ActorView {
            kind: kind.into(),
            key: key.into(),
            node: Some(NodeId(1)),
            token: 7,
            durable: true,
            singleton: false,
            state_bytes: 8,
            seq: 3,
            messages: None,
        };
        let answer = ActorsAnswer::of(vec![view("counter", "b"), view("a", "z"), view("counter", "a")]);
        let order: Vec<(&str, &str)> = answer.actors.iter().map(|v| (v.kind.as_str(), v.key.as_str())).collect();
        assert_eq!(order, [("a", "z"), ("counter", "a"), ("counter", "b")]);
        assert!(!answer.truncated);
        let many = (0..=ACTORS_LIST_MAX).map(|i| view("counter", &format!("{i:06}"))).collect();
        let answer = ActorsAnswer::of(many);
        assert!(answer.truncated && answer.actors.len() == ACTORS_LIST_MAX);
        assert_eq!(ActorsQuery { kind: Some("counter".into()) }.kind().expect("kind"), Some("counter"));
        assert_eq!(ActorsQuery::default().kind().expect("none"), None);
        assert!(ActorsQuery { kind: Some("a b".into()) }.kind().is_err());
    }
}
