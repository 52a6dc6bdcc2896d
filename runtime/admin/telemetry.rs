//! The process-wide Prometheus recorder (installed once; every node in the process shares it) and the
//! admin server's own metric handles.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for every `*_seconds` histogram: 50 µs to 10 s, dense where mesh round trips and
/// consensus commits live (sub-millisecond to tens of milliseconds).
const SECONDS_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

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
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &SECONDS_BUCKETS)
                .map_err(|error| error.to_string())?
                .install_recorder()
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(TelemetryError)
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
