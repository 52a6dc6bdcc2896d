//! Fuzzes what the admin edge decodes from outside bytes before it trusts anything: a bearer token
//! (`TokenVerifier::verify`), a client certificate's principal (`principal_of`) and a token public
//! key (`TokenVerifier::from_spki`). Nothing may panic or allocate past what the bytes justify; no
//! token the fuzzer makes verifies (it would need the signing key); and a token that does verify
//! (one this target signed, mutated back into shape by the fuzzer) gives the same claims again.
#![no_main]

use std::sync::OnceLock;

use gridkeeper::credentials::token::{TokenClaims, TokenSigner, TokenVerifier};
use gridkeeper::credentials::{principal_of, Role};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (TokenVerifier, String) {
    static KEYS: OnceLock<(TokenVerifier, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (signer, _) = TokenSigner::generate().expect("a key");
        let verifier = TokenVerifier::from_spki(&signer.public_spki()).expect("its public half");
        let claims = TokenClaims { name: "fuzz".into(), role: Role::Reader, iat_ms: 1 };
        (verifier, signer.issue(&claims).expect("a token"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (verifier, valid) = keys();
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = verifier.verify(&text) {
        assert_eq!(verifier.verify(&text), Ok(claims));
    }
    // The valid token with the input spliced into it: only the untouched token may verify.
    let cut = data.first().map_or(0, |&byte| usize::from(byte) % valid.len());
    let spliced = format!("{}{}{}", &valid[..cut], text, &valid[cut..]);
    if verifier.verify(&spliced).is_ok() {
        assert_eq!(spliced, *valid, "a changed token verified");
    }
    let _ = principal_of(data);
    let _ = TokenVerifier::from_spki(data);
});
