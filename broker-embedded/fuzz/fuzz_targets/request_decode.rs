//! Request framing and decoding, exactly as a connection of the Kafka server parses a frame:
//! the size prefix, the API key and version, the layout check that refuses impossible array
//! counts, then the `kafka-protocol` header and body decoders for every supported API and
//! version. Must never panic, abort or allocate beyond a small multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = broker_embedded::fuzzing::decode_request(data) {
        // The layout check and the decoders must agree on every byte they read, or the check
        // would be guarding the wrong fields.
        assert_eq!(
            decoded.checked_len, decoded.decoded_len,
            "layout check and decoder disagree: {decoded:?}"
        );
    }
});
