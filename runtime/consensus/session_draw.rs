//! Where the session ids and secrets a coordinator proposes come from: the operating system's
//! generator on a real node, a seeded one in simulation (so a seed replays the run).

use super::request::CoordinatorError;
use crate::registry::secret::{session_credentials, SESSION_DRAW_BYTES};
use crate::registry::{SessionId, SessionSecret};

/// Where the session ids and secrets this node proposes come from.
pub(super) enum SessionRng {
    /// The operating system's generator: secrets nobody can predict.
    Os,
    /// A seeded generator (simulation only).
    Seeded(Box<rand::rngs::StdRng>),
}

impl SessionRng {
    pub(super) fn new(seed: Option<u64>, applied_index: u64) -> SessionRng {
        use rand::SeedableRng;
        // Mixing in the applied index keeps a restarted simulated node from drawing its previous
        // incarnation's ids again.
        seed.map_or(SessionRng::Os, |seed| {
            SessionRng::Seeded(Box::new(rand::rngs::StdRng::seed_from_u64(
                seed ^ applied_index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )))
        })
    }

    /// Fresh credentials, or `None` if the draw gave id 0 (draw again).
    pub(super) fn draw(&mut self) -> Result<Option<(SessionId, SessionSecret)>, CoordinatorError> {
        use rand::{RngCore, TryRngCore};
        let mut random = [0u8; SESSION_DRAW_BYTES];
        match self {
            SessionRng::Os => rand::rngs::OsRng
                .try_fill_bytes(&mut random)
                .map_err(|error| CoordinatorError::Unavailable(format!("no randomness for a session: {error}")))?,
            SessionRng::Seeded(rng) => rng.fill_bytes(&mut random),
        }
        Ok(session_credentials(random))
    }
}
