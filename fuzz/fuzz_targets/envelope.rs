//! Envelope parsing on arbitrary bytes: never panics, and whatever is
//! accepted is a fixed point of canonicalization (re-parsing its canonical
//! JSON yields the same envelope and id).
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncropel_protocol::{canonical_string, parse_json, Envelope, DEFAULT_MAX_DEPTH};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse_json(data, DEFAULT_MAX_DEPTH) {
        let text = canonical_string(&value);
        let again = parse_json(text.as_bytes(), DEFAULT_MAX_DEPTH)
            .expect("canonical JSON of an accepted value must parse");
        assert_eq!(again, value, "canonical form is not a fixed point");
    }
    if let Ok(envelope) = Envelope::parse(data, DEFAULT_MAX_DEPTH) {
        let canonical = envelope.canonical_json();
        let reparsed = Envelope::parse(canonical.as_bytes(), DEFAULT_MAX_DEPTH)
            .expect("canonical JSON of an accepted envelope must parse");
        assert_eq!(reparsed.id(), envelope.id(), "id changed on re-parse");
        assert_eq!(reparsed.canonical_json(), canonical);
    }
});
