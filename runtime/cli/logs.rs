//! `gridkeeper logs --id N [--attempt K] [--follow] [--json]`: an attempt's log lines, through any
//! node's `GET /grid/logs`.
//!
//! Text output is one line per log line, `<RFC 3339 time> <LEVEL> <text>`, and nothing else; `--json`
//! prints the route's document (with `--follow`, one JSON line per log line). `--follow` asks again
//! every [`FOLLOW_POLL`] for the lines after the last one printed until the attempt has ended, and
//! waits meanwhile for a task that has no such attempt yet (pending, or between retries). A node
//! that keeps the lines and is down makes the command fail with the route's `unavailable` error.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::output::{json_line, rfc3339};
use super::Connect;
use crate::admin::logs_api::{LogsQuery, LogsView};
use crate::api::grid::TasksResponse;
use crate::api::{ApiError, ErrorCode};
use crate::client::{Access, ClientError};
use crate::worker::logs::LogLine;

/// How often `--follow` asks for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(300);

/// `gridkeeper logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    connect: Connect,
    /// The task.
    #[arg(long)]
    id: u64,
    /// The attempt, 1 for the first (default: the latest).
    #[arg(long)]
    attempt: Option<u32>,
    /// Print lines as they come until the attempt ends (waiting for it to start).
    #[arg(long)]
    follow: bool,
    /// Print the JSON document (with --follow: one JSON line per log line).
    #[arg(long)]
    json: bool,
}

/// One log line as text: `<RFC 3339 time> <LEVEL> <text>`.
pub fn text_line(line: &LogLine) -> String {
    format!("{} {} {}", rfc3339(line.ts_ms), line.level.name().to_ascii_uppercase(), line.text)
}

/// Runs `gridkeeper logs`.
///
/// # Errors
/// [`ClientError`]: the node unreachable, or the route's error (`no task`, `unavailable`, ...).
pub async fn logs(args: LogsArgs) -> Result<(), ClientError> {
    let (admin, access) = args.connect.resolve().await?;
    let mut query = LogsQuery { id: args.id, attempt: args.attempt, after: None };
    let mut out = std::io::stdout().lock();
    if !args.follow {
        let view = fetch_logs(admin, &access, &query).await?;
        let printed = if args.json {
            writeln!(out, "{}", json_line(&view).map_err(ClientError::Transport)?)
        } else {
            view.lines.iter().try_for_each(|line| writeln!(out, "{}", text_line(line)))
        };
        // A closed pipe (`| head`) is the reader's choice, not an error.
        drop(printed);
        return Ok(());
    }
    loop {
        match fetch_logs(admin, &access, &query).await {
            Ok(view) => {
                query.attempt = Some(view.attempt);
                for line in &view.lines {
                    let text =
                        if args.json { json_line(line).map_err(ClientError::Transport)? } else { text_line(line) };
                    if writeln!(out, "{text}").is_err() {
                        return Ok(());
                    }
                }
                let _ = out.flush();
                query.after = view.lines.last().map(|line| line.seq).or(query.after);
                if view.ended {
                    return Ok(());
                }
            }
            Err(error) if error.code() == ErrorCode::NoTask && attempt_to_come(admin, &access, &query).await? => {}
            Err(error) => return Err(error),
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// `GET path` on the node, decoding an error answer by its code.
async fn get<T: serde::de::DeserializeOwned>(admin: SocketAddr, access: &Access, path: &str) -> Result<T, ClientError> {
    use crate::admin::client::AdminClientError;
    match crate::admin::client::get(admin, path, access).await {
        Ok(body) => {
            serde_json::from_slice(&body).map_err(|error| ClientError::Transport(format!("bad answer: {error}")))
        }
        Err(AdminClientError::Status { body, .. }) => Err(match serde_json::from_str::<ApiError>(&body) {
            Ok(error) => ClientError::Api(error),
            Err(_) => ClientError::Transport(body),
        }),
        Err(error) => Err(ClientError::Transport(error.to_string())),
    }
}

async fn fetch_logs(admin: SocketAddr, access: &Access, query: &LogsQuery) -> Result<LogsView, ClientError> {
    get(admin, access, &format!("/grid/logs?{}", query.to_query())).await
}

/// Whether the attempt the query asks for has yet to come: the task exists, has not ended, and has no
/// such attempt yet (none at all, or fewer than the number asked for).
async fn attempt_to_come(admin: SocketAddr, access: &Access, query: &LogsQuery) -> Result<bool, ClientError> {
    let tasks: TasksResponse = get(admin, access, &format!("/grid/tasks?id={}", query.id)).await?;
    let Some(task) = tasks.tasks.first() else { return Ok(false) };
    let latest = task.attempts.last().map_or(0, |attempt| attempt.attempt);
    let coming = match query.attempt {
        None => latest == 0,
        Some(number) => number > latest,
    };
    Ok(coming && !task.state.is_terminal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::kinds::LogLevel;

    #[test]
    fn a_text_line_is_its_time_level_and_text() {
        let line =
            LogLine { seq: 3, ts_ms: 1_704_067_200_250, level: LogLevel::Warn, text: "failing attempt 1".into() };
        assert_eq!(text_line(&line), "2024-01-01T00:00:00.250Z WARN failing attempt 1");
    }
}
