//! `Body::peek`'s structure-only scan agrees with a full serde_json parse wherever both read the
//! body, never panics, and never accepts a wrongly typed `model`/`stream` that the parse reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octo_core::Body;

fuzz_target!(|data: &[u8]| {
    let scanned = Body::from_bytes(data.to_vec()).peek();
    let mut parsed = Body::from_bytes(data.to_vec());
    if parsed.json().is_err() {
        // Malformed: the scan may refuse it or leave it to the upstream, but must not panic.
        return;
    }
    // A parsed body's peek reads the document tree (last duplicate wins, types checked).
    match (scanned, parsed.peek()) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("the scan accepted {a:?}; the parsed document says {e}"),
        // The scan refuses a duplicate `model`/`stream` that the tree silently keeps the last of.
        (Err(e), Ok(_)) => assert!(e.message().contains("duplicate field"), "{}", e.message()),
        (Err(_), Err(_)) => {}
    }
});
