//! Session credentials: the random id and the 16-byte secret a session's opener proves ownership with.
//!
//! Both are drawn by the proposer (the coordinator shell on the node that takes the open) from a
//! generator it is given, and carried in the log, so every replica applies the same values. This
//! module only turns random bytes into credentials and compares secrets; it reads no clock and owns
//! no generator.
//!
//! Invariant: a secret's bytes are never printed (`Debug` hides them) and never returned by a read;
//! only the opener learns them, in the open's answer.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::command::SessionId;

/// Largest session id: 2^53 - 1, the largest integer a JavaScript number (an IEEE double) holds
/// exactly, so browser and Node.js clients never round an id into another session's.
pub const SESSION_ID_MAX: u64 = (1 << 53) - 1;

/// Bytes of a session secret: the length of ZooKeeper's session password, which the ZooKeeper front
/// end passes through as is.
pub const SESSION_SECRET_BYTES: usize = 16;

/// Random bytes one set of session credentials is made from: 8 for the id, the rest for the secret.
pub const SESSION_DRAW_BYTES: usize = 8 + SESSION_SECRET_BYTES;

impl SessionId {
    /// An id from random bits: the low 53 bits, or `None` if they are all zero (0 means "no
    /// session"); the caller draws again.
    pub fn from_random_bits(bits: u64) -> Option<SessionId> {
        let id = bits & SESSION_ID_MAX;
        (id != 0).then_some(SessionId(id))
    }

    /// Whether a proposer may have chosen this id: not 0 and at most [`SESSION_ID_MAX`].
    pub fn is_valid_random(self) -> bool {
        self.0 != 0 && self.0 <= SESSION_ID_MAX
    }
}

/// A session's secret: 16 random bytes that its opener presents to keep it alive, close it and
/// create ephemerals under it. Compared in constant time; `Debug` does not show it.
///
/// Serialized as 16 bytes in binary formats (the log, snapshots, the mesh) and as 32 lowercase hex
/// characters in human-readable ones (the HTTP API's JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionSecret([u8; SESSION_SECRET_BYTES]);

impl SessionSecret {
    /// A secret with these bytes.
    pub const fn from_bytes(bytes: [u8; SESSION_SECRET_BYTES]) -> SessionSecret {
        SessionSecret(bytes)
    }

    /// Its bytes (the ZooKeeper front end's session password).
    pub fn as_bytes(&self) -> &[u8; SESSION_SECRET_BYTES] {
        &self.0
    }

    /// Its 32 hex characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses 32 hex characters (either case).
    ///
    /// # Errors
    /// [`SecretError`] if the text is not 32 hex characters.
    pub fn parse_hex(text: &str) -> Result<SessionSecret, SecretError> {
        let text = text.as_bytes();
        if text.len() != 2 * SESSION_SECRET_BYTES {
            return Err(SecretError);
        }
        let mut bytes = [0u8; SESSION_SECRET_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let digits = std::str::from_utf8(pair).map_err(|_| SecretError)?;
            *byte = u8::from_str_radix(digits, 16).map_err(|_| SecretError)?;
        }
        Ok(SessionSecret(bytes))
    }

    /// Whether `other` is this secret, in time independent of where they differ, so a guesser learns
    /// nothing from response timing.
    pub fn matches(&self, other: &SessionSecret) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Splits [`SESSION_DRAW_BYTES`] random bytes into a session id and secret, or `None` if the id bits
/// are all zero (draw again).
pub fn session_credentials(random: [u8; SESSION_DRAW_BYTES]) -> Option<(SessionId, SessionSecret)> {
    let (id_bytes, secret_bytes) = random.split_at(8);
    let bits = u64::from_le_bytes(id_bytes.try_into().expect("8 bytes"));
    let secret = SessionSecret(secret_bytes.try_into().expect("the rest is a secret's length"));
    SessionId::from_random_bits(bits).map(|id| (id, secret))
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// A session secret that is not 32 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session secret is 32 hex characters")]
pub struct SecretError;

impl Serialize for SessionSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SessionSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SessionSecret, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(SecretVisitor)
        } else {
            deserializer.deserialize_bytes(SecretVisitor)
        }
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SessionSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SESSION_SECRET_BYTES} bytes or {} hex characters", 2 * SESSION_SECRET_BYTES)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<SessionSecret, E> {
        SessionSecret::parse_hex(text).map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<SessionSecret, E> {
        let bytes: [u8; SESSION_SECRET_BYTES] = bytes.try_into().map_err(|_| E::invalid_length(bytes.len(), &self))?;
        Ok(SessionSecret(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SessionSecret, A::Error> {
        let mut bytes = [0u8; SESSION_SECRET_BYTES];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(index, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(de::Error::invalid_length(SESSION_SECRET_BYTES + 1, &self));
        }
        Ok(SessionSecret(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: SessionSecret = SessionSecret([0xab; SESSION_SECRET_BYTES]);

    #[test]
    fn debug_hides_the_bytes() {
        assert_eq!(format!("{SECRET:?}"), "SessionSecret(..)");
        assert!(!format!("{:?}", Some(SECRET)).contains("ab"));
    }

    #[test]
    fn json_is_hex_and_binary_is_bytes() {
        let json = serde_json::to_string(&SECRET).expect("json");
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<SessionSecret>(&json).expect("back"), SECRET);
        assert_eq!(serde_json::from_str::<SessionSecret>(&json.to_uppercase()).expect("upper"), SECRET);
        assert!(serde_json::from_str::<SessionSecret>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<SessionSecret>(&format!("\"{}\"", "zz".repeat(16))).is_err());
        let binary = postcard::to_stdvec(&SECRET).expect("postcard");
        assert_eq!(binary.len(), 1 + SESSION_SECRET_BYTES, "a length byte and the bytes");
        assert_eq!(postcard::from_bytes::<SessionSecret>(&binary).expect("back"), SECRET);
    }

    #[test]
    fn secrets_compare_by_every_byte() {
        let mut other = SECRET.0;
        other[15] ^= 1;
        assert!(SECRET.matches(&SECRET));
        assert!(!SECRET.matches(&SessionSecret(other)));
    }

    #[test]
    fn ids_are_below_2_pow_53_and_never_zero() {
        assert_eq!(SessionId::from_random_bits(u64::MAX), Some(SessionId(SESSION_ID_MAX)));
        assert_eq!(SessionId::from_random_bits(1 << 53), None);
        assert_eq!(SessionId::from_random_bits(0), None);
        let (id, secret) = session_credentials([0xff; SESSION_DRAW_BYTES]).expect("nonzero");
        assert!(id.is_valid_random() && id.0 < 1 << 53);
        assert_eq!(secret, SessionSecret([0xff; SESSION_SECRET_BYTES]));
        assert!(!SessionId(0).is_valid_random() && !SessionId(1 << 53).is_valid_random());
    }
}
