//! `ImageReference::parse` on arbitrary text.
//!
//! Checks: no panic; a reference that parses prints (`to_string`) to a reference that parses to
//! the same value and prints the same (normalization is idempotent); its endpoint and manifest
//! reference are not empty.
#![no_main]

use container_runtime_interface::image::ImageReference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = ImageReference::parse(text) else {
        return;
    };
    let printed = reference.to_string();
    let again = ImageReference::parse(&printed).unwrap_or_else(|e| {
        panic!("{text:?} parsed, but its normal form {printed:?} does not: {e}")
    });
    assert_eq!(reference, again, "{text:?} -> {printed:?}");
    assert_eq!(again.to_string(), printed);
    assert!(!reference.endpoint().is_empty());
    assert!(!reference.manifest_reference().is_empty());
    assert!(reference.tag.is_some() || reference.digest.is_some());
});
