//! `gridkeeper actor call` and `gridkeeper actors`: grid actors from the command line, over any node's
//! admin API (`POST /grid/actors/call` with the submitter role, `GET /grid/actors` with the reader
//! role).
//!
//! `actor call` prints the actor's reply as one line of JSON (with `--json`, the whole answer:
//! `{"kind", "key", "node", "reply"}`). It sends the call once: a call that fails with `outcome
//! unknown` may have been handled, and is repeated safely only with the same `--idempotency-key`.
//! `actors` prints a table (kind, key, node, durable, seq, messages, state bytes) or, with `--json`, the
//! route's document. A `--message` that is not JSON is a usage error (exit 2); a call the node refuses
//! is one line on stderr (exit 1).

use clap::{Args, Subcommand};

use super::output::{json_line, or_dash, Table};
use super::Connect;
use crate::api::actors::{ActorCallAnswer, ActorCallRequest, ActorsAnswer, ActorsQuery};
use crate::client::ClientError;

/// `gridkeeper actor`.
#[derive(Debug, Args)]
pub struct ActorArgs {
    #[command(subcommand)]
    command: ActorCommand,
}

#[derive(Debug, Subcommand)]
enum ActorCommand {
    /// Send a message to an actor (activated on its first call) and print its reply.
    Call(CallArgs),
    /// Send a message to an actor without waiting for its reply; prints the node that queued it.
    Tell(CallArgs),
}

/// `gridkeeper actor call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    connect: Connect,
    /// The actor's kind (built-in: counter).
    #[arg(long)]
    kind: String,
    /// The actor's key.
    #[arg(long)]
    key: String,
    /// The message, as JSON (the counter takes `{"add": N}`).
    #[arg(long, value_name = "JSON", value_parser = parse_message)]
    message: serde_json::Value,
    /// Makes the call safe to send again: a durable actor answers a repeat with the reply it recorded.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// How long to wait for the reply, in milliseconds (default 5000, at most 10000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the whole answer as one JSON object: `{"kind", "key", "node", "reply"}` (a tell's has no
    /// `reply`).
    #[arg(long)]
    json: bool,
}

/// `gridkeeper actors`.
#[derive(Debug, Args)]
pub struct ActorsArgs {
    #[command(flatten)]
    connect: Connect,
    /// Only actors of this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Print the route's document: `{"actors": [...], "truncated"}`.
    #[arg(long)]
    json: bool,
}

fn parse_message(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

impl CallArgs {
    /// The request these flags make, checked as the node checks it.
    fn request(&self) -> Result<ActorCallRequest, ClientError> {
        let request = ActorCallRequest {
            kind: self.kind.clone(),
            key: self.key.clone(),
            message: self.message.clone(),
            idempotency_key: self.idempotency_key.clone(),
            timeout_ms: self.timeout_ms,
        };
        // The same bounds the node applies, checked before anything is sent.
        request.clone().parse().map_err(ClientError::Api)?;
        Ok(request)
    }
}

/// Runs `gridkeeper actor ...`.
///
/// # Errors
/// [`ClientError`] for refusals and unreachable nodes.
pub async fn actor(args: ActorArgs) -> Result<(), ClientError> {
    match args.command {
        ActorCommand::Call(args) => call(args).await,
        ActorCommand::Tell(args) => tell(args).await,
    }
}

async fn tell(args: CallArgs) -> Result<(), ClientError> {
    let request = args.request()?;
    let client = args.connect.client().await?;
    let answer = client.actor_tell(&request).await?;
    if args.json {
        println!("{}", json_line(&answer).map_err(ClientError::Transport)?);
    } else {
        println!("queued on node {}", answer.node);
    }
    Ok(())
}

async fn call(args: CallArgs) -> Result<(), ClientError> {
    let request = args.request()?;
    let client = args.connect.client().await?;
    let answer = client.actor_call(&request).await?;
    println!("{}", call_output(&answer, args.json).map_err(ClientError::Transport)?);
    Ok(())
}

/// What `actor call` prints: the reply, or with `json` the whole answer, as one line.
fn call_output(answer: &ActorCallAnswer, json: bool) -> Result<String, String> {
    if json {
        json_line(answer)
    } else {
        json_line(&answer.reply)
    }
}

/// Runs `gridkeeper actors`.
///
/// # Errors
/// [`ClientError`] for a bad kind and unreachable nodes.
pub async fn actors(args: ActorsArgs) -> Result<(), ClientError> {
    let query = ActorsQuery { kind: args.kind };
    query.kind().map_err(ClientError::Api)?;
    let client = args.connect.client().await?;
    let answer = client.actors(&query).await?;
    if args.json {
        println!("{}", json_line(&answer).map_err(ClientError::Transport)?);
    } else {
        print!("{}", actors_table(&answer));
    }
    Ok(())
}

/// The actors for people, one row each in (kind, key) order; a `-` node is an actor not active now.
fn actors_table(answer: &ActorsAnswer) -> String {
    let mut table =
        Table::new(["KIND", "KEY", "NODE", "DURABLE", "SEQ", "MESSAGES", "STATE BYTES"]).right([2, 4, 5, 6]);
    for actor in &answer.actors {
        table.row([
            actor.kind.clone(),
            actor.key.clone(),
            or_dash(actor.node),
            if actor.durable { "yes" } else { "no" }.to_string(),
            actor.seq.to_string(),
            or_dash(actor.messages),
            actor.state_bytes.to_string(),
        ]);
    }
    let mut out = table.render();
    if answer.truncated {
        out.push_str(&format!("more: the first {} shown; narrow with --kind\n", answer.actors.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::actors::ActorView;
    use crate::api::ErrorCode;
    use crate::cli::{Cli, Command};
    use crate::ids::NodeId;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut argv = vec!["gridkeeper"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.command)
    }

    fn call_args(args: &[&str]) -> CallArgs {
        let mut argv = vec!["actor", "call", "--admin", "127.0.0.1:9101"];
        argv.extend_from_slice(args);
        match parse(&argv).expect("parses") {
            Command::Actor(ActorArgs { command: ActorCommand::Call(args) }) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_call_parses_into_the_request_the_node_checks() {
        let args = call_args(&["--kind", "counter", "--key", "a", "--message", r#"{"add": 1}"#]);
        let request = args.request().expect("request");
        assert_eq!(
            request,
            ActorCallRequest {
                kind: "counter".into(),
                key: "a".into(),
                message: serde_json::json!({"add": 1}),
                idempotency_key: None,
                timeout_ms: None,
            }
        );
        assert!(!args.json);
        let args = call_args(&[
            "--kind",
            "counter",
            "--key",
            "a",
            "--message",
            "2",
            "--idempotency-key",
            "k1",
            "--timeout-ms",
            "900",
            "--json",
        ]);
        let request = args.request().expect("request");
        assert_eq!((request.idempotency_key.as_deref(), request.timeout_ms), (Some("k1"), Some(900)));
        assert!(args.json);
    }

    #[test]
    fn bad_flags_are_usage_errors_and_bad_values_refusals() {
        use clap::error::ErrorKind;
        let base = ["actor", "call", "--admin", "127.0.0.1:9101", "--kind", "counter", "--key", "a"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat()).map(|_| ()).expect_err("usage error");
        assert_eq!(with(&["--message", "{not json"]).kind(), ErrorKind::ValueValidation);
        assert_eq!(with(&[]).kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(with(&["--message", "1", "--timeout-ms", "soon"]).kind(), ErrorKind::ValueValidation);
        assert_eq!(with(&["--message", "1", "--bogus"]).kind(), ErrorKind::UnknownArgument);
        // Well-formed flags whose values the node would refuse are refused before anything is sent.
        let refused = |extra: &[&str]| {
            let args = call_args(&[&["--kind", "counter", "--key", "a", "--message", "1"][..], extra].concat());
            match args.request() {
                Err(ClientError::Api(error)) => error.code,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(refused(&["--timeout-ms", "0"]), ErrorCode::BadArguments);
        assert_eq!(refused(&["--idempotency-key", &"k".repeat(65)]), ErrorCode::BadArguments);
        let args = call_args(&["--kind", "no spaces", "--key", "a", "--message", "1"]);
        assert!(matches!(args.request(), Err(ClientError::Api(error)) if error.code == ErrorCode::BadArguments));
        assert!(matches!(
            parse(&["actors", "--admin", "127.0.0.1:9101", "--kind", "counter", "--json"]),
            Ok(Command::Actors(ActorsArgs { kind: Some(_), json: true, .. }))
        ));
    }

    #[test]
    fn a_call_prints_its_reply_or_the_whole_answer() {
        let answer = ActorCallAnswer {
            kind: "counter".into(),
            key: "a".into(),
            node: NodeId(3),
            reply: serde_json::json!({"total": 2}),
        };
        assert_eq!(call_output(&answer, false).expect("text"), r#"{"total":2}"#);
        assert_eq!(
            call_output(&answer, true).expect("json"),
            r#"{"kind":"counter","key":"a","node":3,"reply":{"total":2}}"#
        );
    }

    #[test]
    fn the_table_shows_each_actor_and_says_when_it_is_cut() {
        let view = |key: &str, node: Option<u64>, messages: Option<u64>| ActorView {
            kind: "counter".into(),
            key: key.into(),
            node: node.map(NodeId),
            token: 9,
            durable: true,
            singleton: false,
            state_bytes: 8,
            seq: 12,
            messages,
        };
        let mut answer =
            ActorsAnswer { actors: vec![view("a", Some(2), Some(12)), view("b b", None, None)], truncated: false };
        assert_eq!(
            actors_table(&answer),
            "KIND     KEY  NODE  DURABLE  SEQ  MESSAGES  STATE BYTES\n\
             counter  a       2  yes       12        12            8\n\
             counter  b b     -  yes       12         -            8\n"
        );
        answer.truncated = true;
        assert!(actors_table(&answer).ends_with("more: the first 2 shown; narrow with --kind\n"));
        assert_eq!(actors_table(&ActorsAnswer::default()), "KIND  KEY  NODE  DURABLE  SEQ  MESSAGES  STATE BYTES\n");
    }
}
