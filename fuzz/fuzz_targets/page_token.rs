//! `continue` tokens of the list endpoints: decoding arbitrary text, encoding arbitrary keys.
//!
//! The first byte picks the resource (workloads, instances, nodes, events); the rest is the
//! text. Checks: no panic; a token that decodes is the one spelling of its key (re-encoding
//! the key gives the token back) and is refused by every other resource; any key encodes to a
//! URL-safe token that decodes to the same key for its resource only; a checked `limit` is
//! between 1 and 1000.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_api::fuzzing::{key_of_page_token, page_request, page_token, RESOURCES};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let resource = usize::from(selector) % RESOURCES.len();
    let others = (1..RESOURCES.len()).map(|d| (resource + d) % RESOURCES.len());
    let text = String::from_utf8_lossy(rest);

    if let Ok(key) = key_of_page_token(resource, &text) {
        assert_eq!(
            page_token(resource, &key),
            text,
            "a second spelling of a token"
        );
        for other in others.clone() {
            assert!(key_of_page_token(other, &text).is_err());
        }
    }

    let token = page_token(resource, &text);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(key_of_page_token(resource, &token).unwrap(), text);
    for other in others {
        assert!(key_of_page_token(other, &token).is_err());
    }

    let limit = rest
        .get(..8)
        .map(|b| usize::from_le_bytes(b.try_into().unwrap()))
        .filter(|_| selector & 0x80 != 0);
    match page_request(resource, limit, Some(&text)) {
        Ok((checked, after)) => {
            assert!(checked.is_none_or(|l| (1..=1000).contains(&l)));
            assert_eq!(checked.is_none(), limit.is_none());
            assert!(after.is_some());
        }
        Err(e) => assert!(e.status().is_client_error()),
    }
});
