//! The web console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver and `fantoccini`) against a real 3-node HTTPS cluster with real credentials. It
//! refuses a bad token with a visible message, signs in with a token the CLI issued, shows the
//! members and the leader, lists a task the CLI submitted and shows its log line, cancels a task
//! from its page, pauses a job, browses the registry, lists a counter actor the CLI called with its
//! node, keeps task output and actor keys as text (no markup runs),
//! disables actions for a reader, and shows a killed node down (the delay is printed). Screenshots
//! of every page go to `target/console-screenshots/`.
//!
//! The test installs `chromium` and `chromium-driver` itself (`ensure_apt`); chromedriver and every
//! Chromium process it started are killed when the test ends, also on a panic.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use support::zk_tools::ensure_apt;
use support::{admin_get, binary, free_tcp_port, leader_of, wait_for, ClusterSpec, NodeProcess, TempDir, WAIT_MAX};

/// Longest the page may take to show what the API already says (it polls every 1.5 s).
const PAGE_WAIT_MAX: Duration = Duration::from_secs(20);
/// Longest one WebDriver command may take.
const COMMAND_MAX: Duration = Duration::from_secs(30);

/// Chromium's flags: headless as root on this machine, no network of its own, a fresh profile, and
/// the cluster's own CA accepted (the admin API is HTTPS with a certificate from it).
fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--window-size=1400,1000",
    ]
    .iter()
    .map(|flag| flag.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// chromedriver, and through it Chromium; both killed on drop.
struct Driver {
    child: Child,
    port: u16,
    profile: TempDir,
}

impl Driver {
    fn start(logs: &Path) -> Driver {
        let port = free_tcp_port();
        let profile = TempDir::new("console-chromium");
        let log = std::fs::File::create(logs.join("chromedriver.log")).expect("chromedriver log");
        // Its own process group, which the Chromium it starts inherits: dropping the driver kills
        // the group.
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, port, profile };
        wait_for(WAIT_MAX, || std::net::TcpStream::connect(("127.0.0.1", port)).ok())
            .expect("chromedriver listens within the bound");
        driver
    }

    /// Processes still in the driver's process group (chromedriver and the Chromium it started).
    fn group_pids(&self) -> Vec<i32> {
        let group = self.child.id().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                // Field 5 of /proc/PID/stat is the process group; the command (field 2) may hold
                // spaces, so count from the closing parenthesis.
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
                let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
                let mut fields = rest.split(' ');
                let state = fields.next();
                state != Some("Z") && fields.nth(1) == Some(group.as_str())
            })
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) has no memory preconditions; the group is the one chromedriver leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        if wait_for(Duration::from_secs(10), || self.group_pids().is_empty().then_some(())).is_none() {
            eprintln!("processes of the chromedriver group still running: {:?}", self.group_pids());
        }
    }
}

/// A WebDriver session, driven synchronously so the test can call the blocking support helpers
/// between steps.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    base: String,
    shots: PathBuf,
}

impl Browser {
    fn open(driver: &Driver, base: String, shots: PathBuf) -> Browser {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("acceptInsecureCerts".into(), serde_json::json!(true));
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": chromium_args(driver.profile.path()) }),
        );
        let url = format!("http://127.0.0.1:{}", driver.port);
        let client = runtime
            .block_on(async {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let mut builder = ClientBuilder::new(connector);
                builder.capabilities(capabilities);
                tokio::time::timeout(COMMAND_MAX, builder.connect(&url)).await
            })
            .expect("a WebDriver session within the bound")
            .expect("a WebDriver session");
        Browser { runtime, client: Some(client), base, shots }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    fn run<T>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        match self.runtime.block_on(async { tokio::time::timeout(COMMAND_MAX, future).await }) {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => panic!("{what}: {error}"),
            Err(_) => panic!("{what}: no answer within {COMMAND_MAX:?}"),
        }
    }

    fn goto(&self, hash: &str) {
        let url = format!("{}/ui/{hash}", self.base);
        self.run("goto", self.client().goto(&url));
    }

    /// Evaluates `script` (a function body returning JSON) in the page.
    fn eval(&self, script: &str) -> serde_json::Value {
        self.run("execute", self.client().execute(script, Vec::new()))
    }

    /// Polls `script` until it returns a value JavaScript counts as true (not `null`, `false`, `0` or
    /// `""`), for at most [`PAGE_WAIT_MAX`]; fails the test (after a screenshot) if it never does.
    fn wait(&self, what: &str, script: &str) -> serde_json::Value {
        let found = wait_for(PAGE_WAIT_MAX, || {
            let value = self.eval(script);
            let falsy = value.is_null() || value == false || value == 0 || value == "";
            (!falsy).then_some(value)
        });
        found.unwrap_or_else(|| {
            self.screenshot(&format!("failed-{}", what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
            let text = self.eval("return document.body.innerText");
            panic!("the page never showed {what} within {PAGE_WAIT_MAX:?}; it shows:\n{}", text.as_str().unwrap_or(""))
        })
    }

    fn click(&self, selector: &str) {
        let element = self.run("find", self.client().find(Locator::Css(selector)));
        self.run("click", element.click());
    }

    fn type_into(&self, selector: &str, text: &str) {
        let element = self.run("find", self.client().find(Locator::Css(selector)));
        self.run("clear", element.clear());
        self.run("send keys", element.send_keys(text));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run("screenshot", self.client().screenshot());
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    fn sign_in(&self, token: &str) {
        self.goto("#/cluster");
        self.wait("the login form", "return !document.getElementById('login').hidden");
        self.type_into("#token", token);
        self.click("#login-submit");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
    }
}

fn cli(args: &[&str]) -> String {
    let output = Command::new(binary()).args(args).output().expect("run gridkeeper");
    assert!(output.status.success(), "gridkeeper {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn submit(spec: &ClusterSpec, task: &str, input: &str) -> u64 {
    let admin = spec.admin(1).to_string();
    let certs = spec.certs();
    let certs = certs.to_str().expect("utf-8");
    let printed = cli(&["submit", "--admin", &admin, "--certs", certs, "--task", task, "--input", input, "--json"]);
    let printed: serde_json::Value = serde_json::from_str(printed.trim()).expect("submit prints JSON");
    printed["ids"][0].as_u64().expect("an id")
}

fn task_state(spec: &ClusterSpec, id: u64) -> Option<String> {
    let body = admin_get(spec.admin(1), &format!("/grid/tasks?id={id}"))?;
    let page: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(page["tasks"][0]["state"].as_str()?.to_string())
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

/// The ids shown in the members table, and whether each is up.
const MEMBERS: &str = "const m = [...document.querySelectorAll('#members tr[data-member]')]
    .map((row) => [Number(row.dataset.member), row.dataset.alive === 'true']);";

#[test]
fn the_console_shows_the_cluster_its_tasks_and_logs_and_acts_through_the_api() {
    ensure_apt("console-apt.installed", &["chromium", "chromium-driver"]).unwrap_or_else(|error| panic!("{error}"));
    let spec = ClusterSpec::new("console", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    let leader = wait_for(WAIT_MAX, || leader_of(&spec, &[1, 2, 3])).expect("a leader");
    let certs = spec.certs();
    let certs_arg = certs.to_str().expect("utf-8");
    cli(&["certs", "--out", certs_arg, "--token", "console", "--role", "submitter"]);
    cli(&["certs", "--out", certs_arg, "--token", "viewer", "--role", "reader"]);
    let token =
        |name: &str| std::fs::read_to_string(certs.join(format!("token-{name}"))).expect("token").trim().to_string();

    let shots = screenshots_dir();
    let driver = Driver::start(spec.dir.path());
    let browser = Browser::open(&driver, format!("https://{}", spec.admin(1)), shots.clone());

    // A bad token is refused with the node's message, and the form stays.
    browser.sign_in("gk1.bm90LWEtdG9rZW4.AAAA");
    let refused = browser.wait(
        "the refusal of a bad token",
        "const e = document.getElementById('login-error'); return !e.hidden && e.textContent;",
    );
    let refused = refused.as_str().expect("text").to_string();
    assert!(refused.contains("Refused") && refused.contains("unauthorized"), "{refused}");
    assert_eq!(browser.eval("return sessionStorage.getItem('gridkeeper.token')"), serde_json::Value::Null);
    browser.screenshot("login-refused");

    // The cluster page: ids 1, 2, 3, all up, and the leader the API names.
    browser.sign_in(&token("console"));
    browser.wait(
        "three members, all up",
        &format!("{MEMBERS} return JSON.stringify(m) === '[[1,true],[2,true],[3,true]]';"),
    );
    let shown = browser.wait(
        "the leader",
        "const e = document.getElementById('leader'); return e && e.textContent !== 'none' && e.textContent;",
    );
    assert_eq!(shown.as_str(), Some(leader.to_string().as_str()), "the leader shown");
    browser.wait("a ready node", "const e = document.getElementById('health'); return e && e.textContent === 'ready';");
    browser.wait("the throughput sparkline", "return document.querySelector('#throughput svg polyline') !== null;");
    browser.screenshot("cluster");

    // A task submitted through the CLI appears in the tasks page and its log line on its page. Its
    // input is markup: the page must show it as text and run nothing.
    let input = r#"{"value":{"console":"<img src=x id=injected onerror=\"document.title='pwned'\">"}}"#;
    let echo = submit(&spec, "echo", input);
    wait_for(WAIT_MAX, || (task_state(&spec, echo)? == "succeeded").then_some(())).expect("the echo task succeeds");
    browser.goto("#/tasks");
    browser.wait(
        "the echo task listed",
        &format!("return !!document.querySelector('#tasks-table tr[data-task=\"{echo}\"]');"),
    );
    browser.goto("#/tasks?kind=sleep");
    browser.wait("the kind filter", "return !!document.getElementById('tasks-empty');");
    browser.goto("#/tasks?kind=echo");
    browser.wait(
        "the echo task under its kind",
        &format!("return !!document.querySelector('#tasks-table tr[data-task=\"{echo}\"]');"),
    );
    browser.screenshot("tasks");
    browser.goto(&format!("#/task/{echo}"));
    browser.wait(
        "the task succeeded",
        "const e = document.getElementById('task-state'); return e && e.dataset.state === 'succeeded';",
    );
    let logged = browser.wait(
        "the echo log line",
        "const l = [...document.querySelectorAll('#logs li.log-line .text')].map((e) => e.textContent); return l.length ? l : null;",
    );
    // `echo` logs its `value` as one line of compact JSON.
    let expected = serde_json::from_str::<serde_json::Value>(input).expect("json")["value"].clone();
    let lines: Vec<String> = serde_json::from_value(logged).expect("lines");
    assert!(
        lines.iter().any(|line| serde_json::from_str::<serde_json::Value>(line).ok().as_ref() == Some(&expected)),
        "the echo task logs its input as one JSON line: {lines:?}"
    );
    let preview = browser.eval("return document.getElementById('input-preview').textContent");
    assert!(preview.as_str().is_some_and(|text| text.contains("<img src=x id=injected")), "{preview}");
    assert_eq!(browser.eval("return document.getElementById('injected') === null && document.title !== 'pwned'"), true);
    browser.screenshot("task");

    // A task that failed once and then succeeded: two attempts on its timeline, and the first one's
    // log line (`fail` logs `failing attempt N`) on the page pinned to attempt 1.
    let retried = submit(&spec, "fail", r#"{"times": 1}"#);
    wait_for(WAIT_MAX, || (task_state(&spec, retried)? == "succeeded").then_some(()))
        .expect("the retried task succeeds");
    browser.goto(&format!("#/task/{retried}?attempt=1"));
    browser.wait(
        "two attempts, the first failed",
        "const r = [...document.querySelectorAll('#attempts tbody tr')].map((e) => e.dataset.state); \
         return r.length === 2 && r[0] === 'failed' && r[1] === 'succeeded';",
    );
    browser.wait(
        "the first attempt's log line",
        "return [...document.querySelectorAll('#logs li.log-line .text')].some((e) => e.textContent === 'failing attempt 1');",
    );
    browser.screenshot("task-retried");

    // Cancel from the console: a long sleep, cancelled by a click, is cancelled for the API.
    let sleeper = submit(&spec, "sleep", r#"{"ms": 600000}"#);
    wait_for(WAIT_MAX, || (task_state(&spec, sleeper)? == "running").then_some(())).expect("the sleep task runs");
    browser.goto(&format!("#/task/{sleeper}"));
    browser.wait("an enabled cancel button", "const b = document.getElementById('cancel'); return b && !b.disabled;");
    browser.click("#cancel");
    wait_for(PAGE_WAIT_MAX, || (task_state(&spec, sleeper)? == "cancelled").then_some(()))
        .expect("the console's cancel cancels the task");
    browser.wait(
        "the task cancelled",
        "const e = document.getElementById('task-state'); return e && e.dataset.state === 'cancelled';",
    );
    browser.screenshot("task-cancelled");

    // Jobs: the job is listed, linked to its tasks, and paused from the console.
    let admin = spec.admin(1).to_string();
    cli(&[
        "schedule",
        "--admin",
        &admin,
        "--certs",
        certs_arg,
        "--name",
        "console-job",
        "--task",
        "noop",
        "--every-ms",
        "3600000",
    ]);
    browser.goto("#/jobs");
    browser.wait("the job listed", "return !!document.querySelector('#jobs-table tr[data-job=\"console-job\"]');");
    browser.click("button[data-action=\"pause\"][data-job=\"console-job\"]");
    browser.wait(
        "the job paused",
        "const r = document.querySelector('tr[data-job=\"console-job\"]'); return r && r.dataset.paused === 'true';",
    );
    let jobs = admin_get(spec.admin(1), "/grid/jobs").expect("jobs");
    assert!(jobs.contains(r#""paused":true"#), "{jobs}");
    browser.screenshot("jobs");
    // Resumed, then run now: the run is submitted and linked from the row.
    browser.click("button[data-action=\"resume\"][data-job=\"console-job\"]");
    browser.wait(
        "the job resumed",
        "const r = document.querySelector('tr[data-job=\"console-job\"]'); return r && r.dataset.paused === 'false';",
    );
    browser.click("button[data-action=\"trigger\"][data-job=\"console-job\"]");
    let run = browser.wait(
        "the triggered run",
        "const a = document.querySelector('tr[data-job=\"console-job\"] a[href^=\"#/task/\"]'); return a && a.textContent;",
    );
    let run: u64 = run.as_str().and_then(|text| text.parse().ok()).expect("a task id");
    let kind = admin_get(spec.admin(1), &format!("/grid/tasks?id={run}")).expect("the run");
    assert!(kind.contains(r#""task":"noop""#), "{kind}");

    // The registry browser: the tree, and a node's data, stat and ACL.
    browser.goto("#/registry?path=%2Fgrid%2Fnodes%2F1");
    browser
        .wait("the registry tree", "return !!document.querySelector('#registry-tree a[data-path=\"/grid/nodes/2\"]');");
    browser.wait(
        "the node's stat and ACL",
        "return !!document.querySelector('#registry-stat') && !!document.querySelector('#registry-acl');",
    );
    browser.screenshot("registry");

    // Actors: a counter called through the CLI is listed with its hosting node; its key is markup,
    // which the page shows as text.
    let key = "<img src=x id=actor-injected>";
    let message = r#"{"add": 2}"#;
    let common = ["--admin", admin.as_str(), "--certs", certs_arg];
    let reply =
        cli(&[&["actor", "call"][..], &common, &["--kind", "counter", "--key", key, "--message", message]].concat());
    assert_eq!(reply.trim(), r#"{"total":2}"#);
    browser.goto("#/actors?kind=counter");
    let host = browser.wait(
        "the counter listed with its node",
        "const r = [...document.querySelectorAll('#actors-table tbody tr')].find((e) => e.dataset.key === '<img src=x id=actor-injected>'); \
         return r && r.dataset.node;",
    );
    assert!(host.as_str().is_some_and(|node| ["1", "2", "3"].contains(&node)), "hosted on a member: {host}");
    assert_eq!(browser.eval("return document.getElementById('actor-injected') === null"), true);
    browser.screenshot("actors");

    // A reader sees the task but may not act on it.
    browser.click("#logout");
    browser.sign_in(&token("viewer"));
    browser.goto(&format!("#/task/{echo}"));
    browser.wait(
        "the task for a reader",
        "const e = document.getElementById('task-state'); return e && e.dataset.state === 'succeeded';",
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('resubmit').disabled && !!document.getElementById('actions-denied')"),
        true
    );
    browser.screenshot("task-reader");

    // A task that ran on node 3, whose logs stay there.
    let admin = spec.admin(1).to_string();
    let printed = cli(&[
        "submit",
        "--admin",
        &admin,
        "--certs",
        certs_arg,
        "--task",
        "echo",
        "--input",
        r#"{"value": 3}"#,
        "--affinity",
        "3",
        "--json",
    ]);
    let pinned =
        serde_json::from_str::<serde_json::Value>(printed.trim()).expect("json")["ids"][0].as_u64().expect("id");
    wait_for(WAIT_MAX, || (task_state(&spec, pinned)? == "succeeded").then_some(())).expect("the pinned task succeeds");

    // A killed node shows down on the cluster page; the delay is measured.
    browser.goto("#/cluster");
    browser
        .wait("three members up before the kill", &format!("{MEMBERS} return m.length === 3 && m.every((r) => r[1]);"));
    let victim = 3;
    let killed = Instant::now();
    nodes[(victim - 1) as usize].kill();
    browser.wait("the killed node down", &format!("{MEMBERS} return m.some((r) => r[0] === {victim} && !r[1]);"));
    let delay = killed.elapsed();
    println!("console: node {victim} shown down {} ms after kill -9", delay.as_millis());
    browser.screenshot("cluster-node-down");

    // The logs of an attempt held by the dead node are unavailable, and the page says so.
    browser.goto(&format!("#/task/{pinned}"));
    let status = browser.wait(
        "the logs unavailable",
        "const e = document.getElementById('logs-status'); return e && e.textContent.startsWith('Logs unavailable') && e.textContent;",
    );
    assert!(status.as_str().is_some_and(|text| text.contains(&victim.to_string())), "names the node: {status}");
    browser.screenshot("task-logs-unavailable");
    println!("console: screenshots in {}", shots.display());
    drop(browser);
    drop(driver);
}
