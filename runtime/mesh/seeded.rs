//! QUIC's own randomness drawn from a seed, for simulation: the same seed gives the same connection
//! ids, keys and tokens, so a simulated run replays exactly.
//!
//! quinn seeds only part of its randomness from `EndpointConfig::rng_seed`. The rest comes from the
//! thread's generator: the ids a client picks for its first packets, the ids an endpoint issues, the
//! keys of stateless-reset and address-validation tokens, and tokens' timestamps (from the system
//! clock). Any of them can steer a run: which Initial a server takes as a retransmission, whether a
//! token validates. Replay checks caught a seed whose history differed about one run in six. This
//! module replaces each with a seeded or simulated one; a real socket keeps quinn's defaults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngCore, SeedableRng};

/// Length of the connection ids a seeded endpoint issues (quinn's default).
const CID_BYTES: usize = 8;

/// Length of the first destination id a seeded client picks (quinn's default: the maximum).
const INITIAL_CID_BYTES: usize = 20;

/// A generator for one purpose, drawn from `seed` and a label.
fn generator(seed: &[u8; 32], label: u64) -> rand::rngs::StdRng {
    let mut bytes = *seed;
    for (byte, extra) in bytes[24..].iter_mut().zip(label.to_le_bytes()) {
        *byte ^= extra;
    }
    rand::rngs::StdRng::from_seed(bytes)
}

fn random_bytes<const N: usize>(seed: &[u8; 32], label: u64) -> [u8; N] {
    let mut bytes = [0u8; N];
    generator(seed, label).fill_bytes(&mut bytes);
    bytes
}

const LABEL_RESET_KEY: u64 = 1;
const LABEL_TOKEN_KEY: u64 = 2;
const LABEL_INITIAL_CIDS: u64 = 3;
/// Labels from here on number the endpoint's id generators, one per connection.
const LABEL_CIDS_FROM: u64 = 1 << 32;

/// An endpoint configuration whose reset key and issued ids come from `seed`.
pub fn endpoint_config(seed: [u8; 32]) -> quinn::EndpointConfig {
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &random_bytes::<64>(&seed, LABEL_RESET_KEY));
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    config.rng_seed(Some(seed));
    let generators = Arc::new(AtomicU64::new(LABEL_CIDS_FROM));
    config.cid_generator(move || {
        let label = generators.fetch_add(1, Ordering::Relaxed);
        Box::new(SeededCids(generator(&seed, label)))
    });
    config
}

/// `server` with its token key from `seed` and token times from the simulated clock.
pub fn server_config(server: quinn::ServerConfig, seed: [u8; 32]) -> quinn::ServerConfig {
    let token_key =
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&random_bytes::<64>(&seed, LABEL_TOKEN_KEY));
    let mut seeded = quinn::ServerConfig::new(server.crypto.clone(), Arc::new(token_key));
    seeded.transport = server.transport.clone();
    seeded.time_source(Arc::new(SimulatedTime));
    seeded
}

/// `client` picking its first destination ids from `seed`.
pub fn client_config(mut client: quinn::ClientConfig, seed: [u8; 32]) -> quinn::ClientConfig {
    let rng = Mutex::new(generator(&seed, LABEL_INITIAL_CIDS));
    client.initial_dst_cid_provider(Arc::new(move || {
        let mut bytes = [0u8; INITIAL_CID_BYTES];
        rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).fill_bytes(&mut bytes);
        quinn::ConnectionId::new(&bytes)
    }));
    client
}

/// Connection ids from a seeded generator.
struct SeededCids(rand::rngs::StdRng);

impl quinn::ConnectionIdGenerator for SeededCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0u8; CID_BYTES];
        self.0.fill_bytes(&mut bytes);
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_BYTES
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Unix time as the node's clock gives it: the simulator's under simulation.
struct SimulatedTime;

impl quinn::TimeSource for SimulatedTime {
    fn now(&self) -> crate::clock::UnixTime {
        crate::clock::unix_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::ConnectionIdGenerator;

    #[test]
    fn the_same_seed_gives_the_same_ids_and_another_seed_others() {
        let ids = |seed: [u8; 32], label: u64| {
            let mut cids = SeededCids(generator(&seed, label));
            (0..4).map(|_| cids.generate_cid()).collect::<Vec<_>>()
        };
        let seed = [7u8; 32];
        assert_eq!(ids(seed, LABEL_CIDS_FROM), ids(seed, LABEL_CIDS_FROM));
        assert_ne!(ids(seed, LABEL_CIDS_FROM), ids(seed, LABEL_CIDS_FROM + 1));
        assert_ne!(ids(seed, LABEL_CIDS_FROM), ids([8u8; 32], LABEL_CIDS_FROM));
    }
}
