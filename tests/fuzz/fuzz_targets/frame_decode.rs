//! Fuzzes the frame decoder with arbitrary bytes: it must return a value or a typed error, never
//! panic, hang, or allocate past the bound. Every frame it accepts must re-encode to a frame that
//! decodes to the same message.
#![no_main]

use gridkeeper::wire::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

/// Small bound so the fuzzer also explores the oversized-length path cheaply.
const BODY_BYTES_MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((message, used)) = decode_frame(rest, BODY_BYTES_MAX) {
        let again = encode_frame(&message, BODY_BYTES_MAX).expect("a decoded message re-encodes");
        let (decoded, _) = decode_frame(&again, BODY_BYTES_MAX).expect("a re-encoded frame decodes");
        assert_eq!(decoded, message);
        rest = &rest[used..];
    }
});
