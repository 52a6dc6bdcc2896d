//! Sessions in the znode tree: opening, closing and ending them, and checking that a command acting
//! for a session presents its secret.
//!
//! Two kinds of session exist. A *secured* session (opened by [`Command::OpenSessionSecured`]) has a
//! random id and a secret; only a command presenting the secret may close it or create ephemerals
//! under it, and the leader checks the same secret before a keepalive. A *legacy* session was opened
//! by [`Command::OpenSession`], written by earlier versions: its id is its zxid and it has no secret.
//! Replaying an old log must give the old result, so the old commands ([`Command::Create`] and
//! [`Command::Multi`] with a session, [`Command::CloseSession`]) still act on legacy sessions as they
//! did, and on legacy sessions only. The new API never keeps a legacy session alive (it has no
//! secret to present), so after an upgrade each one expires within its timeout.
//!
//! [`Command::OpenSessionSecured`]: super::Command::OpenSessionSecured
//! [`Command::OpenSession`]: super::Command::OpenSession
//! [`Command::Create`]: super::Command::Create
//! [`Command::Multi`]: super::Command::Multi
//! [`Command::CloseSession`]: super::Command::CloseSession

use std::collections::{BTreeMap, BTreeSet};

use super::{Applied, Ctx, Outcome, Registry, RegistryError, SessionId, SessionRecord, SessionSecret};

/// Whom a command says it acts for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Claim<'a> {
    /// No session.
    Nobody,
    /// A session named without a secret: accepted only for a legacy session.
    Legacy(SessionId),
    /// A session and the secret proving its ownership.
    Proven(SessionId, &'a SessionSecret),
}

impl Claim<'_> {
    /// The claim of an old command's optional session.
    pub(super) fn legacy(session: Option<SessionId>) -> Claim<'static> {
        session.map_or(Claim::Nobody, Claim::Legacy)
    }

    /// The session claimed, if any.
    pub(super) fn session(self) -> Option<SessionId> {
        match self {
            Claim::Nobody => None,
            Claim::Legacy(session) | Claim::Proven(session, _) => Some(session),
        }
    }
}

impl Registry {
    /// Checks that `secret` is `session`'s, as the leader does before refreshing its clock on a
    /// keepalive.
    ///
    /// # Errors
    /// [`RegistryError::SessionExpired`] if the session is not open, [`RegistryError::NoAuth`] if the
    /// secret is not its (a legacy session has none, so every secret is refused).
    pub fn check_session_secret(&self, session: SessionId, secret: &SessionSecret) -> Result<(), RegistryError> {
        self.check_claim(Claim::Proven(session, secret))
    }

    /// Whether `session` is open and has no secret (opened by an earlier version's log entry).
    pub fn is_legacy_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session) && !self.secrets.contains_key(&session)
    }

    /// The secrets of the open secured sessions, for the snapshot to persist beside the registry
    /// (they are not part of this type's serde layout). Never to be shown to a client.
    pub fn session_secrets(&self) -> &BTreeMap<SessionId, SessionSecret> {
        &self.secrets
    }

    /// Restores the secrets a snapshot carried beside the registry; call it right after
    /// deserializing. Secrets of sessions that are not open are dropped. A registry restored without
    /// them treats every session as a legacy one.
    pub fn restore_session_secrets(&mut self, mut secrets: BTreeMap<SessionId, SessionSecret>) {
        secrets.retain(|session, _| self.sessions.contains_key(session));
        self.secrets = secrets;
        // Called right after deserializing: the derived byte count is rebuilt with the secrets.
        self.rebuild_derived();
    }

    /// Checks a command's claim to act for a session.
    pub(super) fn check_claim(&self, claim: Claim<'_>) -> Result<(), RegistryError> {
        let Some(session) = claim.session() else { return Ok(()) };
        if !self.sessions.contains_key(&session) {
            return Err(RegistryError::SessionExpired { session });
        }
        let granted = match (claim, self.secrets.get(&session)) {
            (Claim::Legacy(_), None) => true,
            (Claim::Proven(_, presented), Some(secret)) => secret.matches(presented),
            _ => false,
        };
        if granted {
            Ok(())
        } else {
            Err(RegistryError::NoAuth { session })
        }
    }

    /// Opens `session`, with `secret` if it is a secured one.
    pub(super) fn open_session(
        &mut self,
        session: SessionId,
        secret: Option<SessionSecret>,
        timeout_ms: u64,
    ) -> Applied {
        if secret.is_some() && !session.is_valid_random() {
            return Err(RegistryError::BadArguments { reason: format!("session id {session} out of range") });
        }
        // A legacy id (a zxid) never collides with another legacy one; a drawn id may, rarely, and
        // its proposer draws again.
        if self.sessions.contains_key(&session) {
            return Err(RegistryError::SessionExists { session });
        }
        if self.sessions.len() >= self.limits.sessions_max {
            return Err(RegistryError::QuotaExceeded { reason: format!("{} sessions", self.limits.sessions_max) });
        }
        let timeout_ms = timeout_ms.clamp(self.limits.session_timeout_ms_min, self.limits.session_timeout_ms_max);
        self.sessions.insert(session, SessionRecord { timeout_ms, ephemerals: BTreeSet::new() });
        if let Some(secret) = secret {
            self.secrets.insert(session, secret);
        }
        Ok(Outcome::SessionOpened { session, timeout_ms })
    }

    /// Closes the claimed session, if the claim holds.
    pub(super) fn close_session(&mut self, ctx: &mut Ctx, claim: Claim<'_>) -> Applied {
        let session = claim.session().expect("a close names its session");
        self.check_claim(claim)?;
        Ok(self.end_sessions(ctx, &[session]))
    }

    /// Ends `sessions` (closed or expired), deleting their ephemerals; unknown ones are skipped.
    pub(super) fn end_sessions(&mut self, ctx: &mut Ctx, sessions: &[SessionId]) -> Outcome {
        let (mut ended, mut ephemerals) = (0, 0);
        for session in sessions {
            let Some(record) = self.sessions.remove(session) else { continue };
            self.secrets.remove(session);
            ended += 1;
            for path in record.ephemerals {
                // Ephemerals never have children, so each is a leaf.
                if let Some(parent) = path.parent() {
                    if self.nodes.contains_key(&path) {
                        self.remove_leaf_and_containers(ctx, &path, parent);
                        ephemerals += 1;
                    }
                }
            }
        }
        Outcome::SessionsEnded { sessions: ended, ephemerals }
    }
}
