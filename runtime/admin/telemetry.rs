//! The process-wide Prometheus recorder (installed once; every node in the process shares it), what
//! `GET /metrics` renders (the recorder's metrics, then the process's own `process_*` metrics read
//! from `/proc` at each scrape), and the admin server's own metric handles.
//!
//! Every histogram gets real buckets here: one not matched below would be rendered as a summary,
//! which cannot be aggregated across nodes (`tests/process_prometheus.rs` checks a live scrape has
//! none). The build's identity is `gridkeeper_build_info{version, state_version, os, arch,
//! profile} 1`, set at install.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for every `*_seconds` histogram not matched more closely: 50 µs to 10 s, dense where mesh
/// round trips, fsyncs and consensus commits live (sub-millisecond to tens of milliseconds).
const SECONDS_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Buckets for a task's wait and run times: 1 ms to 2 h, since tasks run from microseconds (`noop`)
/// to hours, and a task waits behind whatever the queue holds.
const TASK_SECONDS_BUCKETS: [f64; 19] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0,
];
const TASK_SECONDS_HISTOGRAMS: [&str; 2] = ["gridkeeper_grid_wait_seconds", "gridkeeper_grid_run_seconds"];

/// Buckets for histograms of counts (writes per fsync, reads per read-index round): powers of two up
/// to the committer's batch bound and beyond.
const COUNT_BUCKETS: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
const COUNT_HISTOGRAMS: [&str; 2] = ["gridkeeper_raft_commit_batch_writes", "gridkeeper_registry_read_index_batch"];

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Why metrics could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("metrics recorder: {0}")]
pub struct TelemetryError(String);

/// Installs the Prometheus recorder on first call and returns its handle.
///
/// Call before anything registers metric handles: handles registered earlier are no-ops.
///
/// # Errors
/// [`TelemetryError`] if another recorder was installed first.
pub fn install() -> Result<PrometheusHandle, TelemetryError> {
    RECORDER
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &SECONDS_BUCKETS)
                .map_err(|error| error.to_string())?;
            // Full names win over suffixes (the exporter tries full, then prefix, then suffix matchers).
            for (names, buckets) in
                [(&TASK_SECONDS_HISTOGRAMS, &TASK_SECONDS_BUCKETS[..]), (&COUNT_HISTOGRAMS, &COUNT_BUCKETS[..])]
            {
                for name in names {
                    builder = builder
                        .set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)
                        .map_err(|error| error.to_string())?;
                }
            }
            let handle = builder.install_recorder().map_err(|error| error.to_string())?;
            record_build_info();
            Ok(handle)
        })
        .clone()
        .map_err(TelemetryError)
}

/// `gridkeeper_build_info{...} 1`: what build a node runs, for dashboards and rolling upgrades.
fn record_build_info() {
    metrics::gauge!(
        "gridkeeper_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "state_version" => crate::registry::STATE_VERSION.to_string(),
        "os" => std::env::consts::OS,
        "arch" => std::env::consts::ARCH,
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
    )
    .set(1.0);
}

/// The `GET /metrics` body: the recorder's metrics, then this process's `process_*` metrics (none
/// where `/proc` is not there to read).
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    if let Some(sample) = process::sample() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&process::render(&sample));
    }
    text
}

/// Counts a refused or closed admin connection, request or watch in
/// `gridkeeper_admin_refusals_total{reason}`.
pub fn refused(refusal: super::admission::Refusal) {
    metrics::counter!("gridkeeper_admin_refusals_total", "reason" => refusal.label()).increment(1);
}

/// Sets `gridkeeper_admin_connections`, the admin connections open.
pub fn connections_open(open: usize) {
    metrics::gauge!("gridkeeper_admin_connections").set(open as f64);
}

/// Counts a TLS handshake that failed (a client certificate from another CA, a plaintext client, a
/// protocol error) in `gridkeeper_admin_refusals_total{reason="tls_handshake"}`.
pub fn tls_refused() {
    metrics::counter!("gridkeeper_admin_refusals_total", "reason" => "tls_handshake").increment(1);
}

/// Counts a call refused for its credential in `gridkeeper_admin_auth_refusals_total{code}`
/// (`unauthorized`: none, invalid or revoked; `no auth`: a role that may not).
pub fn auth_refused(code: crate::api::ErrorCode) {
    metrics::counter!("gridkeeper_admin_auth_refusals_total", "code" => code.name()).increment(1);
}

/// The standard process metrics of Prometheus client libraries (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, ...), read from Linux's `/proc/self` at each scrape and rendered
/// as text, as the Go client's process collector does.
///
/// Read here rather than through the `metrics-process` crate (which does work with `metrics` 0.24):
/// that crate records CPU time through a `metrics` counter, which holds whole numbers, so
/// `process_cpu_seconds_total` would move in steps of one second and `rate()` over a minute would
/// read 0 or 1/60; it would also add `procfs` and its dependencies for five small files.
mod process {
    use std::fmt::Write as _;

    /// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux architecture
    /// gridkeeper builds for (what the Go client's procfs assumes too; reading `sysconf` needs
    /// `unsafe`, which this crate forbids).
    const USER_HZ: f64 = 100.0;

    /// One reading of the process.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub cpu_seconds: f64,
        pub resident_bytes: f64,
        pub virtual_bytes: f64,
        pub virtual_max_bytes: Option<f64>,
        pub open_fds: f64,
        pub max_fds: Option<f64>,
        pub start_time_seconds: Option<f64>,
        pub threads: f64,
    }

    /// The fields of `/proc/self/stat` used here.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Stat {
        pub cpu_ticks: u64,
        pub threads: u64,
        pub start_ticks: u64,
        pub virtual_bytes: u64,
    }

    /// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
    /// fields are counted from the last `)`.
    pub fn parse_stat(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        // After the name: field 3 (state) is index 0, so field N is index N - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            cpu_ticks: field(14)?.saturating_add(field(15)?),
            threads: field(20)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
        })
    }

    /// The soft limit named `name` in `/proc/<pid>/limits` (`unlimited` as `u64::MAX`, as the Go
    /// client reports it).
    pub fn parse_limit(text: &str, name: &str) -> Option<f64> {
        let line = text.lines().find(|line| line.starts_with(name))?;
        match line[name.len()..].split_whitespace().next()? {
            "unlimited" => Some(u64::MAX as f64),
            soft => soft.parse::<u64>().ok().map(|value| value as f64),
        }
    }

    /// A `kB` value of `/proc/<pid>/status` (`VmRSS:  2016 kB`), in bytes.
    pub fn parse_status_bytes(text: &str, key: &str) -> Option<f64> {
        let line = text.lines().find(|line| line.strip_prefix(key).is_some_and(|rest| rest.starts_with(':')))?;
        let kib: u64 = line[key.len() + 1..].split_whitespace().next()?.parse().ok()?;
        Some(kib.saturating_mul(1024) as f64)
    }

    /// The boot time (`btime`) of `/proc/stat`, in seconds since the Unix epoch.
    pub fn parse_boot_time(text: &str) -> Option<u64> {
        text.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()
    }

    /// Reads the process now, or `None` where `/proc/self` cannot be read (not Linux).
    pub fn sample() -> Option<Sample> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = parse_stat(&read("/proc/self/stat")?)?;
        let status = read("/proc/self/status").unwrap_or_default();
        let limits = read("/proc/self/limits").unwrap_or_default();
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        Some(Sample {
            cpu_seconds: stat.cpu_ticks as f64 / USER_HZ,
            resident_bytes: parse_status_bytes(&status, "VmRSS").unwrap_or(0.0),
            virtual_bytes: stat.virtual_bytes as f64,
            virtual_max_bytes: parse_limit(&limits, "Max address space"),
            // The directory listing's own descriptor is among those counted.
            open_fds: open_fds.saturating_sub(1) as f64,
            max_fds: parse_limit(&limits, "Max open files"),
            start_time_seconds: boot.map(|boot| boot as f64 + stat.start_ticks as f64 / USER_HZ),
            threads: stat.threads as f64,
        })
    }

    /// `sample` in the Prometheus text format.
    pub fn render(sample: &Sample) -> String {
        let metrics: [(&str, &str, &str, Option<f64>); 8] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                Some(sample.cpu_seconds),
            ),
            ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", Some(sample.resident_bytes)),
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", Some(sample.virtual_bytes)),
            (
                "process_virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                sample.virtual_max_bytes,
            ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", Some(sample.open_fds)),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", sample.max_fds),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                sample.start_time_seconds,
            ),
            ("process_threads", "gauge", "Number of OS threads in the process.", Some(sample.threads)),
        ];
        let mut text = String::new();
        for (name, kind, help, value) in metrics {
            if let Some(value) = value {
                let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::process::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a thread can set it.
        let text = "4242 (gk (worker) 1) S 1 2 3 0 -1 4194304 99 0 0 0 250 150 0 0 20 0 7 0 47967 3133440 389 \
                    18446744073709551615 1 2 3";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(stat, Stat { cpu_ticks: 400, threads: 7, start_ticks: 47967, virtual_bytes: 3_133_440 });
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn limits_status_and_boot_time_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                40000                files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(20_000.0));
        assert_eq!(parse_limit(limits, "Max address space"), Some(u64::MAX as f64));
        assert_eq!(parse_limit(limits, "Max processes"), None);
        let status = "Name:\tgridkeeper\nVmSize:\t    3892 kB\nVmRSS:\t    2016 kB\nThreads:\t1\n";
        assert_eq!(parse_status_bytes(status, "VmRSS"), Some(2016.0 * 1024.0));
        assert_eq!(parse_status_bytes(status, "VmRSS2"), None);
        assert_eq!(parse_boot_time("cpu 1 2 3\nbtime 1796120040\nprocesses 9\n"), Some(1_796_120_040));
    }

    #[test]
    fn a_sample_renders_typed_lines_and_leaves_out_what_is_unknown() {
        let sample = Sample {
            cpu_seconds: 1.25,
            resident_bytes: 2048.0,
            virtual_bytes: 4096.0,
            virtual_max_bytes: None,
            open_fds: 12.0,
            max_fds: Some(1024.0),
            start_time_seconds: Some(1_700_000_000.5),
            threads: 9.0,
        };
        let text = render(&sample);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n"), "{text}");
        assert!(text.contains("process_start_time_seconds 1700000000.5\n"), "{text}");
        assert!(text.contains("process_threads 9\n"), "{text}");
        assert!(!text.contains("process_virtual_memory_max_bytes"), "{text}");
        assert_eq!(text.lines().filter(|line| line.starts_with("# TYPE")).count(), 7);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_can_be_read() {
        let sample = sample().expect("/proc/self on Linux");
        assert!(sample.threads >= 1.0 && sample.open_fds >= 1.0 && sample.resident_bytes > 0.0, "{sample:?}");
        assert!(sample.max_fds.is_some_and(|max| max >= sample.open_fds), "{sample:?}");
    }
}
