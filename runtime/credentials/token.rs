//! Bearer tokens: a name and a role, signed with the cluster's token key (Ed25519).
//!
//! A token is `gk1.<payload>.<signature>`, both parts base64url without padding; the payload is JSON
//! `{"name", "role", "iat_ms"}` and the signature covers `gk1.<payload>`. `gridkeeper certs` holds the
//! signing key (`private/token.key`, which stays with the operator); every node reads only the public
//! half (`token.pub`), so any node verifies any token with no shared state, and a node cannot mint one.
//!
//! Core: no I/O and no clock; the issue time is an input. Revocation is not decided here: a valid
//! signature says who the bearer is, the replicated revocation list (see `admin/`) says whether that
//! name still counts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::role::{check_credential_name, Role};

/// A token's prefix and format version.
const TOKEN_PREFIX: &str = "gk1.";

/// Longest token accepted, checked before any decoding: a name of 63 bytes and a role make a
/// payload under 200 bytes, the signature 86.
pub const TOKEN_BYTES_MAX: usize = 512;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaims {
    /// The token's name (what revocation names).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was issued, Unix milliseconds.
    pub iat_ms: u64,
}

/// Why a token was not accepted. Deliberately coarse: a caller learns only that it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format, or too long.
    #[error("not a gridkeeper token")]
    Malformed,
    /// The signature is not the cluster's.
    #[error("token signature does not verify")]
    BadSignature,
    /// Signed, but the claims are not acceptable (an unknown role, a bad name).
    #[error("token claims are invalid")]
    BadClaims,
}

/// The signing half of the cluster's token key.
pub struct TokenSigner {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A fresh key, returned with its PKCS#8 encoding (to store).
    ///
    /// # Errors
    /// A message if the system's randomness fails.
    pub fn generate() -> Result<(TokenSigner, Vec<u8>), String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "cannot generate a token key".to_string())?;
        let signer = TokenSigner::from_pkcs8(pkcs8.as_ref())?;
        Ok((signer, pkcs8.as_ref().to_vec()))
    }

    /// The key stored as PKCS#8.
    ///
    /// # Errors
    /// A message if the bytes are not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<TokenSigner, String> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(|pair| TokenSigner { pair })
            .map_err(|error| format!("not an Ed25519 PKCS#8 key: {error}"))
    }

    /// The public half as DER SubjectPublicKeyInfo, what nodes are given.
    pub fn public_spki(&self) -> Vec<u8> {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.pair.public_key().as_ref());
        spki
    }

    /// Signs `claims` into a token.
    ///
    /// # Errors
    /// A message if the name is not a valid credential name or the role is a worker's.
    pub fn issue(&self, claims: &TokenClaims) -> Result<String, String> {
        check_credential_name(&claims.name)?;
        if matches!(claims.role, Role::Worker(_)) {
            return Err("a worker authenticates with its node certificate, not a token".into());
        }
        let payload = serde_json::to_vec(claims).map_err(|error| error.to_string())?;
        let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let signature = self.pair.sign(signed.as_bytes());
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

/// The verifying half of the cluster's token key, as every node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVerifier {
    public: [u8; 32],
}

impl TokenVerifier {
    /// The key from its DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// A message if it is not an Ed25519 public key.
    pub fn from_spki(der: &[u8]) -> Result<TokenVerifier, String> {
        let raw = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .filter(|raw| raw.len() == 32)
            .ok_or_else(|| "not an Ed25519 public key".to_string())?;
        let mut public = [0u8; 32];
        public.copy_from_slice(raw);
        Ok(TokenVerifier { public })
    }

    /// The claims of `token` if the cluster's key signed it.
    ///
    /// # Errors
    /// [`TokenError`] for anything else; nothing is decoded past the length check unless the shape
    /// is right, and nothing is parsed before the signature verifies.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed);
        }
        let body = token.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, signature) = body.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..TOKEN_PREFIX.len() + payload.len()];
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: TokenClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::BadClaims)?;
        check_credential_name(&claims.name).map_err(|_| TokenError::BadClaims)?;
        if matches!(claims.role, Role::Worker(_)) {
            return Err(TokenError::BadClaims);
        }
        Ok(claims)
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(name: &str, role: Role) -> TokenClaims {
        TokenClaims { name: name.into(), role, iat_ms: 1_796_000_000_000 }
    }

    #[test]
    fn a_token_verifies_with_the_public_half_only() {
        let (signer, pkcs8) = TokenSigner::generate().expect("key");
        let verifier = TokenVerifier::from_spki(&signer.public_spki()).expect("public");
        let token = signer.issue(&claims("ci", Role::Reader)).expect("issue");
        assert!(token.starts_with("gk1.") && token.len() <= TOKEN_BYTES_MAX, "{token}");
        assert_eq!(verifier.verify(&token), Ok(claims("ci", Role::Reader)));
        // The stored key signs the same way.
        let again = TokenSigner::from_pkcs8(&pkcs8).expect("reload");
        assert_eq!(
            verifier.verify(&again.issue(&claims("ops", Role::Operator)).expect("issue")).map(|c| c.role),
            Ok(Role::Operator)
        );
        let longest = signer.issue(&claims(&"x".repeat(63), Role::Submitter)).expect("issue");
        assert!(longest.len() <= TOKEN_BYTES_MAX);
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let (signer, _) = TokenSigner::generate().expect("key");
        let (other, _) = TokenSigner::generate().expect("other key");
        let verifier = TokenVerifier::from_spki(&signer.public_spki()).expect("public");
        let token = signer.issue(&claims("ci", Role::Reader)).expect("issue");
        assert_eq!(
            verifier.verify(&other.issue(&claims("ci", Role::Reader)).expect("x")),
            Err(TokenError::BadSignature)
        );
        // The payload swapped for an operator's, the signature kept.
        let (_, signature) = token.rsplit_once('.').expect("dot");
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"name":"ci","role":"operator","iat_ms":1}"#);
        assert_eq!(verifier.verify(&format!("gk1.{forged_payload}.{signature}")), Err(TokenError::BadSignature));
        for garbage in ["", "gk1.", "gk1..", "gk2.a.b", "Bearer x", &"a".repeat(TOKEN_BYTES_MAX + 1), "gk1.a.!!"] {
            assert!(verifier.verify(garbage).is_err(), "{garbage:?}");
        }
        assert!(signer.issue(&claims("node-1", Role::Reader)).is_err(), "reserved name");
        assert!(signer.issue(&claims("w", Role::Worker(crate::ids::NodeId(1)))).is_err());
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(TokenVerifier::from_spki(&[0; 44]).is_err());
        assert!(TokenVerifier::from_spki(&ED25519_SPKI_PREFIX).is_err());
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
    }
}
