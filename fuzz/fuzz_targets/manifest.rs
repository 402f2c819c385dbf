//! A manifest body (JSON and YAML) through the path the create, update and preview routes use:
//! parse with field paths, then validate. Every input is tried as both formats.
//!
//! Checks: no panic; every error renders to the API's JSON error body; a definition that is
//! accepted survives a JSON round trip (what the store persists and the API returns) unchanged
//! and still valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_api::fuzzing::manifest;

fuzz_target!(|body: &[u8]| {
    for yaml in [false, true] {
        match manifest(yaml, body) {
            Ok(def) => {
                let json = serde_json::to_vec(&def).expect("a definition serializes");
                let again = manifest(false, &json).unwrap_or_else(|e| {
                    panic!(
                        "an accepted definition is refused after a JSON round trip: {e}\n{}",
                        String::from_utf8_lossy(&json)
                    )
                });
                assert_eq!(def, again, "the JSON round trip changed the definition");
            }
            Err(e) => {
                let body = e.body();
                assert!(!body.error.message.is_empty());
                assert!(e.status().is_client_error(), "{e}: {}", e.status());
            }
        }
    }
});
