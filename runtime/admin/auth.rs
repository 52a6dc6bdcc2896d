//! Authentication, authorization and auditing of every admin request: the shell around
//! `admin/policy.rs`.
//!
//! A caller is the bearer token it presents (a signed token, or the legacy `admin.token`), or else the
//! client certificate it connected with. A revoked name counts as no credential. The route's class
//! and the few fields a worker's permission depends on decide the rest; a refusal is one JSON line,
//! 401 `unauthorized` or 403 `no auth`, before any handler runs and (but for a worker's calls) before
//! any of the body is read. Every call that changes something is appended to the audit log with its
//! outcome.
//!
//! Invariant: no route runs before `authenticate` has allowed it; tokens are compared in constant
//! time and never logged.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::audit::{action_of, bounded_target, AuditRecord};
use super::connection::ClientAddr;
use super::error::HttpError;
use super::http::AdminState;
use super::policy::{audited, decide, Denial, Peek};
use crate::api::{ApiError, ErrorCode};
use crate::credentials::role::ADMIN_TOKEN_PRINCIPAL;
use crate::credentials::token::constant_time_eq;
use crate::credentials::{Principal, Proof, Role, TokenVerifier};

/// Where a node learns which names are revoked.
#[derive(Debug, Clone)]
pub enum Revocations {
    /// Its own applied state (a member).
    Applied,
    /// A list a joined worker refreshes from a member; `None` until the first refresh, and until
    /// then every revocable credential is refused.
    Fetched(Arc<RwLock<Option<BTreeSet<String>>>>),
}

/// Tokens verified recently, so a client that presents the same token on every call pays for one
/// signature check, not one a call. Cleared when full. Keyed by the token's SHA-256, so looking a
/// presented token up compares digests an attacker cannot steer, never the token's own bytes.
#[derive(Debug, Default)]
pub struct VerifiedTokens(
    std::sync::Mutex<std::collections::HashMap<[u8; 32], crate::credentials::token::TokenClaims>>,
);

/// Tokens kept in [`VerifiedTokens`]: far more than the clients one node serves at once.
const VERIFIED_TOKENS_MAX: usize = 4_096;

impl VerifiedTokens {
    fn verify(&self, verifier: &TokenVerifier, token: &str) -> Option<crate::credentials::token::TokenClaims> {
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(claims) = known.get(&key) {
            return Some(claims.clone());
        }
        let claims = verifier.verify(token).ok()?;
        if known.len() >= VERIFIED_TOKENS_MAX {
            known.clear();
        }
        known.insert(key, claims.clone());
        Some(claims)
    }
}

/// What the admin API accepts as credentials.
#[derive(Debug, Clone)]
pub struct EdgeAuth {
    /// Verifies signed tokens (the token key's public half).
    pub verifier: Option<TokenVerifier>,
    /// Tokens already verified.
    pub verified: Arc<VerifiedTokens>,
    /// The legacy shared admin token, accepted as an operator credential.
    pub admin_token: Option<String>,
    /// `/metrics` needs no credential.
    pub metrics_public: bool,
    /// The revocation list.
    pub revocations: Revocations,
}

impl EdgeAuth {
    /// Accepts only the legacy admin token (tests of the HTTP layer that need no TLS).
    pub fn admin_token_only(token: String) -> EdgeAuth {
        EdgeAuth {
            verifier: None,
            verified: Arc::default(),
            admin_token: Some(token),
            metrics_public: false,
            revocations: Revocations::Applied,
        }
    }
}

/// What a node's admin server is set up with: the credentials it accepts, and its TLS configuration
/// (`None`: plain HTTP, on loopback only).
#[derive(Debug, Clone)]
pub struct EdgeSetup {
    /// The credentials accepted.
    pub auth: EdgeAuth,
    /// HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl EdgeSetup {
    /// Loads what node `node` needs from its credentials directory: the token key's public half,
    /// the legacy admin token if given, and (unless `plaintext`) its admin certificate.
    ///
    /// # Errors
    /// [`CredentialError`](crate::credentials::CredentialError) naming the file at fault.
    pub fn load(
        certs: &std::path::Path,
        node: crate::ids::NodeId,
        plaintext: bool,
        metrics_public: bool,
        revocations: Revocations,
    ) -> Result<EdgeSetup, crate::credentials::CredentialError> {
        let auth = EdgeAuth {
            verifier: Some(crate::credentials::load_token_verifier(certs)?),
            verified: Arc::default(),
            admin_token: crate::credentials::load_admin_token_if_any(certs)?,
            metrics_public,
            revocations,
        };
        let tls = if plaintext {
            None
        } else {
            let files = crate::credentials::load_admin_tls(certs, node)?;
            let origin = crate::credentials::CredentialFiles::new(certs).admin_cert(node).display().to_string();
            Some(
                super::tls::server_config(files)
                    .map_err(|reason| crate::credentials::CredentialError::Invalid { path: origin, reason })?,
            )
        };
        Ok(EdgeSetup { auth, tls })
    }
}

/// The principal a connection's client certificate names, put in each of its requests.
#[derive(Debug, Clone)]
pub(crate) struct PeerCertificate(pub Option<Principal>);

/// Who the bearer of `Authorization` is, if the header holds a credential that verifies.
fn bearer(auth: &EdgeAuth, request: &Request) -> Option<Result<Principal, ()>> {
    let value = request.headers().get(header::AUTHORIZATION)?;
    let Some(token) = value.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")) else {
        return Some(Err(()));
    };
    let token = token.trim();
    if let Some(expected) = &auth.admin_token {
        if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            return Some(Ok(Principal {
                name: ADMIN_TOKEN_PRINCIPAL.into(),
                role: Role::Operator,
                proof: Proof::AdminToken,
            }));
        }
    }
    let claims = auth.verifier.as_ref().and_then(|verifier| auth.verified.verify(verifier, token));
    Some(claims.map(|claims| Principal { name: claims.name, role: claims.role, proof: Proof::Token }).ok_or(()))
}

fn revoked(state: &AdminState, principal: &Principal) -> bool {
    if !principal.revocable() {
        return false;
    }
    match &state.auth.revocations {
        Revocations::Applied => match state.view.coordinator() {
            Some(coordinator) => crate::service::credentials::is_revoked(&coordinator, &principal.name),
            // No state to check against: refuse what could be revoked.
            None => true,
        },
        Revocations::Fetched(list) => {
            let list = list.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            list.as_ref().is_none_or(|names| names.contains(&principal.name))
        }
    }
}

/// The fields of a request body the policy and the audit log look at; everything else is ignored.
#[derive(Debug, Default, Deserialize)]
struct BodyPeek {
    path: Option<String>,
    node: Option<u64>,
    name: Option<String>,
    task: Option<String>,
    count: Option<u64>,
    ids: Option<Vec<u64>>,
    specs: Option<Vec<serde::de::IgnoredAny>>,
    reports: Option<Vec<serde::de::IgnoredAny>>,
    ops: Option<Vec<serde::de::IgnoredAny>>,
    draining: Option<bool>,
    /// An actor call's actor (`kind`, `key`).
    kind: Option<String>,
    key: Option<String>,
}

impl BodyPeek {
    fn target(&self) -> String {
        let mut parts = Vec::new();
        if let Some(path) = &self.path {
            parts.push(path.clone());
        }
        if let Some(node) = self.node {
            parts.push(format!("node={node}"));
        }
        if let Some(draining) = self.draining {
            parts.push(format!("draining={draining}"));
        }
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        if let (Some(kind), Some(key)) = (&self.kind, &self.key) {
            parts.push(format!("actor={kind}/{key}"));
        }
        if let Some(task) = &self.task {
            parts.push(format!("task={task} count={}", self.count.unwrap_or(1)));
        }
        if let Some(specs) = &self.specs {
            parts.push(format!("specs={}", specs.len()));
        }
        if let Some(ids) = &self.ids {
            let shown: Vec<String> = ids.iter().take(16).map(u64::to_string).collect();
            let more = if ids.len() > 16 { format!(" (+{})", ids.len() - 16) } else { String::new() };
            parts.push(format!("ids={}{more}", shown.join(",")));
        }
        if let Some(reports) = &self.reports {
            parts.push(format!("reports={}", reports.len()));
        }
        if let Some(ops) = &self.ops {
            parts.push(format!("ops={}", ops.len()));
        }
        bounded_target(parts.join(" "))
    }
}

#[derive(Debug, Deserialize)]
struct PathQuery {
    path: Option<String>,
}

fn refusal(denial: &Denial) -> HttpError {
    match denial {
        Denial::Unauthenticated => HttpError(ApiError::new(
            ErrorCode::Unauthorized,
            "this call needs a credential: a client certificate from the cluster CA, or a valid unrevoked bearer token",
        )),
        Denial::Forbidden(why) => HttpError(ApiError::new(ErrorCode::NoAuth, why)),
    }
}

/// The largest body a route reads, and the limit's name: submissions and reports are bulk.
fn body_limit(path: &str) -> (usize, &'static str) {
    match path {
        "/grid/submit" | "/grid/worker/report" => (crate::limits::BULK_REQUEST_BYTES_MAX, "BULK_REQUEST_BYTES_MAX"),
        _ => (crate::limits::ADMIN_REQUEST_BYTES_MAX, "ADMIN_REQUEST_BYTES_MAX"),
    }
}

/// The middleware every admin route runs behind: authenticates, authorizes, and audits.
pub(crate) async fn authenticate(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let from = request.extensions().get::<ClientAddr>().map(|addr| addr.0.to_string()).unwrap_or_default();
    let principal = match bearer(&state.auth, &request) {
        Some(presented) => presented.ok(),
        None => request.extensions().get::<PeerCertificate>().and_then(|peer| peer.0.clone()),
    };
    let principal = principal.filter(|principal| !revoked(&state, principal));
    let audit = audited(method.as_str(), &path).then_some(state.audit.as_ref()).flatten();
    let worker = principal.as_ref().is_some_and(|principal| matches!(principal.role, Role::Worker(_)));
    let query_path = axum::extract::Query::<PathQuery>::try_from_uri(request.uri()).ok().and_then(|query| query.0.path);
    let mut target = bounded_target(query_path.clone().unwrap_or_default());
    let query_peek = Peek { path: query_path, node: None };
    // Only a worker's permission depends on the body: everyone else is decided before a byte of it
    // is read.
    let mut verdict = decide(principal.as_ref(), method.as_str(), &path, &query_peek, state.auth.metrics_public);
    let read_body = method == Method::POST && principal.is_some() && (worker || (verdict.is_ok() && audit.is_some()));
    let mut request = request;
    if read_body {
        let (parts, body) = request.into_parts();
        let (limit, limit_name) = body_limit(&path);
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                let message = format!("the request body is over {limit_name} ({limit} bytes), or was cut short");
                return HttpError(ApiError::new(ErrorCode::TooLarge, message)).into_response();
            }
        };
        let body_peek: BodyPeek = serde_json::from_slice(&bytes).unwrap_or_default();
        target = body_peek.target();
        if worker {
            let peek = Peek { path: body_peek.path.clone(), node: body_peek.node };
            verdict = decide(principal.as_ref(), method.as_str(), &path, &peek, state.auth.metrics_public);
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let response = match verdict {
        Ok(()) => {
            if let Some(principal) = &principal {
                request.extensions_mut().insert(principal.clone());
            }
            next.run(request).await
        }
        Err(denial) => {
            let refused = refusal(&denial);
            tracing::debug!(%from, %path, code = refused.0.code.name(), "admin call refused");
            super::telemetry::auth_refused(refused.0.code);
            refused.into_response()
        }
    };
    if let Some(audit) = audit {
        let outcome = match response.extensions().get::<ErrorCode>() {
            Some(code) => code.name().to_string(),
            None if response.status().is_success() => "ok".to_string(),
            None => format!("http {}", response.status().as_u16()),
        };
        audit
            .record(AuditRecord {
                ts_ms: crate::clock::unix_millis(),
                who: principal.as_ref().map_or_else(|| "anonymous".to_string(), |p| p.name.clone()),
                role: principal.as_ref().map_or_else(|| "none".to_string(), |p| p.role.name().to_string()),
                from,
                action: action_of(&path),
                target,
                outcome,
            })
            .await;
    }
    response
}
