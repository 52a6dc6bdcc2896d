//! The web console: static assets (HTML, CSS, plain JavaScript modules, no framework and no build
//! step) embedded in the binary from `admin/ui/` and served under `/ui` on the admin port, plus
//! `GET /grid/summary`, the one JSON document the console needs that the API had no answer for.
//!
//! The assets hold no data, so their routes are open (`policy.rs`, class `Open`): the page asks for
//! a token, keeps it in the tab's `sessionStorage`, and calls the JSON API with `Authorization:
//! Bearer`, where every call is authenticated, authorized and audited as any client's. Every asset
//! answer carries a strict Content-Security-Policy (scripts only from this origin, none inline;
//! nothing fetched from elsewhere; no framing), `X-Content-Type-Options: nosniff`, no referrer, and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates (a 304) and sees a node's new
//! build at once.
//!
//! - `GET /ui`, `GET /ui/` → the page; `GET /ui/<asset>` → one of [`ASSETS`], else 404.
//! - `GET /grid/summary` → [`GridSummary`]: tasks per state and the tasks that ended in each recent
//!   interval, from this node's applied table (no barrier: a minority node still answers what it
//!   holds).
//!
//! Invariant: the console's scripts put every piece of data into the page as text (`textContent`,
//! attribute values), never as markup; the policy forbids inline script, so an injected `<script>`
//! would not run anyway.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::api::grid::state_name;
use crate::grid::task::{Task, TaskId, TaskState};
use crate::limits::QUERY_SCAN_MAX;
use crate::state::ReplicatedState;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// Its entity tag: a hash of the bytes, computed at compile time.
    pub etag: u64,
}

/// FNV-1a over `bytes`: an entity tag that changes whenever an asset does.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut at = 0;
    while at < bytes.len() {
        hash ^= bytes[at] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        at += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("ui/", $name)),
            etag: fnv1a(include_bytes!(concat!("ui/", $name))),
        }
    };
}

/// Every file the console serves; nothing else under `/ui/` exists.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("cluster.js", "text/javascript; charset=utf-8"),
    asset!("tasks.js", "text/javascript; charset=utf-8"),
    asset!("task.js", "text/javascript; charset=utf-8"),
    asset!("jobs.js", "text/javascript; charset=utf-8"),
    asset!("actors.js", "text/javascript; charset=utf-8"),
    asset!("registry.js", "text/javascript; charset=utf-8"),
];

/// The console's Content-Security-Policy: everything from this origin only, no inline script or
/// style, no plugins, no framing, forms never submitted by the browser (the page's scripts send the
/// token; a form that submitted itself would put it in a URL).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes and `/grid/summary`, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*asset}", get(asset))
        .route("/grid/summary", get(summary))
}

/// The asset named `name`, if the console has one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

async fn index(headers: HeaderMap) -> Response {
    serve(find("index.html"), &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(find(&name), &headers)
}

/// The headers every console answer carries.
fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn serve(asset: Option<&'static Asset>, request: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        let answer = (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such asset\n");
        return guarded(answer.into_response());
    };
    let etag = format!("\"{:016x}\"", asset.etag);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let response = if unchanged {
        (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
    } else {
        let headers = [(header::CONTENT_TYPE, asset.content_type.to_string()), (header::ETAG, etag)];
        (StatusCode::OK, headers, asset.body).into_response()
    };
    guarded(response)
}

/// Width of one interval of [`GridSummary::recent`].
pub const SUMMARY_BUCKET_MS: u64 = 2_000;
/// Intervals in [`GridSummary::recent`]: the last minute.
pub const SUMMARY_BUCKETS: usize = 30;

/// `GET /grid/summary`: the grid as this node's applied table holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridSummary {
    /// The answering node.
    pub node: u64,
    /// This node's Unix time when it answered (the end of the last interval).
    pub now_ms: u64,
    /// Tasks the table holds (ended ones still in its history included).
    pub tasks: usize,
    /// Tasks looked at: the newest [`QUERY_SCAN_MAX`] at most.
    pub scanned: usize,
    /// The newest task's id: the tasks ever submitted, since ids are handed out in order from 1.
    pub last_id: Option<u64>,
    /// Tasks per state among those scanned (every state named, zeros included).
    pub states: BTreeMap<String, u64>,
    /// Width of each interval of `recent`.
    pub bucket_ms: u64,
    /// Per terminal state, the tasks whose last attempt ended in each of the last
    /// [`SUMMARY_BUCKETS`] intervals, oldest first. Counted from end times, not from differences of
    /// `states`, so the rates stay right once history retention forgets as many ended tasks as
    /// end; a task that ended with no attempt (cancelled or failed while pending) has no end time
    /// and counts in `states` only.
    pub recent: BTreeMap<String, Vec<u64>>,
}

const STATES: [TaskState; 7] = [
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Running,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::TimedOut,
    TaskState::Cancelled,
];

/// The summary of `state` as node `node` sees it at `now_ms`: one pass over the newest tasks.
pub fn summarize(state: &ReplicatedState, node: u64, now_ms: u64) -> GridSummary {
    let mut states: BTreeMap<String, u64> = STATES.iter().map(|&state| (state_name(state).to_string(), 0)).collect();
    let mut recent: BTreeMap<String, Vec<u64>> = STATES
        .iter()
        .filter(|state| state.is_terminal())
        .map(|&state| (state_name(state).to_string(), vec![0; SUMMARY_BUCKETS]))
        .collect();
    let window_ms = SUMMARY_BUCKET_MS * SUMMARY_BUCKETS as u64;
    let (mut scanned, mut last_id) = (0, None);
    for task in state.grid.older_than(TaskId(u64::MAX)).take(QUERY_SCAN_MAX) {
        scanned += 1;
        last_id = last_id.or(Some(task.id.0));
        *states.entry(state_name(task.state).to_string()).or_default() += 1;
        let Some(ended_ms) = ended_ms(task) else { continue };
        let age = now_ms.saturating_sub(ended_ms);
        if age >= window_ms {
            continue;
        }
        // Age 0 falls in the newest interval, the last one.
        let bucket = SUMMARY_BUCKETS - 1 - usize::try_from(age / SUMMARY_BUCKET_MS).unwrap_or(SUMMARY_BUCKETS - 1);
        if let Some(counts) = recent.get_mut(state_name(task.state)) {
            counts[bucket] += 1;
        }
    }
    GridSummary {
        node,
        now_ms,
        tasks: state.grid.len(),
        scanned,
        last_id,
        states,
        bucket_ms: SUMMARY_BUCKET_MS,
        recent,
    }
}

/// When an ended task ended: its last attempt's end.
fn ended_ms(task: &Task) -> Option<u64> {
    if !task.state.is_terminal() {
        return None;
    }
    task.attempts.last()?.ended_ms
}

async fn summary(State(state): State<Arc<AdminState>>) -> Result<Json<GridSummary>, HttpError> {
    let coordinator = coordinator(&state)?;
    let node = state.view.node().0;
    let now_ms = crate::clock::unix_millis();
    Ok(Json(coordinator.read_state(|replicated| summarize(replicated, node, now_ms))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::task::TaskSpec;
    use crate::grid::{FencingToken, GridCommand};
    use crate::ids::NodeId;
    use crate::state::{Command, Proposal};

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("assets are UTF-8")
    }

    #[test]
    fn every_file_the_page_loads_is_served_and_nothing_else_is() {
        let mut wanted = Vec::new();
        let index = text(find("index.html").expect("index"));
        for part in index.split("\"/ui/").skip(1) {
            wanted.push(part.split('"').next().expect("a quoted path").to_string());
        }
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            for part in text(asset).split("from './").skip(1) {
                wanted.push(part.split('\'').next().expect("a quoted module").to_string());
            }
        }
        assert!(wanted.len() > 5, "{wanted:?}");
        for name in &wanted {
            assert!(find(name).is_some(), "{name} is loaded but not served");
        }
        for asset in ASSETS {
            assert!(
                asset.name == "index.html" || wanted.iter().any(|name| name == asset.name),
                "{} unused",
                asset.name
            );
        }
        assert!(find("../Cargo.toml").is_none() && find("").is_none() && find("app.js/").is_none());
    }

    #[test]
    fn the_scripts_never_write_markup_and_the_page_has_no_inline_code() {
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('style'",
            ] {
                assert!(!text(asset).contains(sink), "{} uses {sink}", asset.name);
            }
        }
        let index = text(find("index.html").expect("index"));
        assert_eq!(index.matches("<script").count(), index.matches("<script type=\"module\" src=").count());
        assert!(!index.contains(" style=") && !index.contains(" onclick=") && !index.contains(" onload="));
    }

    #[test]
    fn assets_carry_their_type_the_policy_and_an_etag() {
        let response = serve(find("app.js"), &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let etag = headers[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(find("app.js"), &again).status(), StatusCode::NOT_MODIFIED);
        let other = serve(find("index.html"), &again);
        assert_eq!(other.status(), StatusCode::OK);
        assert_eq!(other.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let missing = serve(find("secrets.json"), &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn the_summary_counts_states_and_buckets_recent_ends() {
        let mut state = ReplicatedState::new(Default::default(), Default::default());
        let mut specs = vec![TaskSpec::new("echo", vec![]); 5];
        specs[1].retry.attempts_max = 1;
        let proposal = Proposal { now_ms: 1_000, command: Command::App(GridCommand::Submit { tasks: specs }) };
        assert!(state.apply(1, &proposal, &mut Default::default()).0.is_ok());
        let now = 1_000_000;
        let token = FencingToken(2);
        // Task 1 ended just now, task 2 failed ten seconds ago, task 3 ended two minutes ago; 4 runs;
        // 5 waits.
        for (id, ended) in [(1, Some(now)), (2, Some(now - 10_000)), (3, Some(now - 120_000)), (4, None)] {
            state.grid.on_assigned(TaskId(id), NodeId(1), token, 1_500).expect("assign");
            state.grid.on_started(TaskId(id), token, 1_600).expect("start");
            if let Some(ended) = ended {
                let outcome = if id == 2 { Err("boom".to_string()) } else { Ok(vec![]) };
                state.grid.on_finished(TaskId(id), token, outcome, ended).expect("finish");
            }
        }
        let summary = summarize(&state, 7, now);
        assert_eq!((summary.node, summary.tasks, summary.scanned, summary.last_id), (7, 5, 5, Some(5)));
        let count = |name: &str| summary.states[name];
        let counts = ["pending", "assigned", "running", "succeeded", "failed", "timed_out", "cancelled"].map(count);
        assert_eq!(counts, [1, 0, 1, 2, 1, 0, 0], "{:?}", summary.states);
        let succeeded = &summary.recent["succeeded"];
        assert_eq!(succeeded.len(), SUMMARY_BUCKETS);
        assert_eq!(succeeded.iter().sum::<u64>(), 1, "the one two minutes ago is out of the window");
        assert_eq!(succeeded[SUMMARY_BUCKETS - 1], 1, "now is in the newest interval");
        let failed = &summary.recent["failed"];
        assert_eq!((failed.iter().sum::<u64>(), failed[SUMMARY_BUCKETS - 1 - 5]), (1, 1), "10 s ago: 5 intervals back");
        assert_eq!(summary.recent.keys().collect::<Vec<_>>(), ["cancelled", "failed", "succeeded", "timed_out"]);
    }
}
