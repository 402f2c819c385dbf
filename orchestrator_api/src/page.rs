//! Paging of the list endpoints, in the manner of Kubernetes: `?limit=N` asks for a page of at
//! most N items, and a response with more to come carries a `continue` token that the client
//! passes back as `?continue=TOKEN` for the next page.
//!
//! A token is the resource it belongs to and the key of the last item of its page (a workload
//! name, `{workload_id}/{instance_id}`, a node id, an event `seq`), base64url-encoded. Clients
//! must treat it as opaque: it is encoded so that nobody builds one by hand (its format may
//! change), and it names its resource so that a token of one list given to another is refused
//! instead of silently skipping items. A page starts strictly after the token's key, so items
//! created or deleted between two requests neither repeat nor shift the pages: each item that
//! exists throughout the walk is returned exactly once.

use crate::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use orchestrator_shared_types::api::ListResponse;
use serde::Deserialize;
use state_store_interface::{StateStore, StoreExt, StoredObject, Versioned};

/// Most items one page holds; a larger `limit` is lowered to this. Bounds the work and the size
/// of one response (an assistant reading a list pays for every token of it).
pub(crate) const MAX_LIMIT: usize = 1000;

/// The list endpoints that page, each with its own tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Workloads,
    Instances,
    Nodes,
    Events,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Workloads => "workloads",
            Resource::Instances => "instances",
            Resource::Nodes => "nodes",
            Resource::Events => "events",
        }
    }

    /// The token of a page that ends at `key`.
    pub(crate) fn token(self, key: &str) -> String {
        base64url_encode(format!("{}:{key}", self.name()).as_bytes())
    }

    /// The key a token of this resource ends at; 400 naming `continue` for anything else.
    pub(crate) fn key_of_token(self, token: &str) -> Result<String, ApiError> {
        base64url_decode(token)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.strip_prefix(self.name())
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::to_owned)
            })
            .ok_or_else(|| self.bad_token())
    }

    /// The 400 for a `continue` that is not a token of this resource.
    pub(crate) fn bad_token(self) -> ApiError {
        ApiError::bad_field(
            "continue",
            format!(
                "not a continue token of GET /api/v1/{}: pass back the `continue` of the \
                 previous page unchanged",
                self.name()
            ),
        )
    }
}

/// The query parameters of an endpoint that only pages (no filters).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Items per page, 1 to 1000 (larger values are lowered to 1000). Without it, every item.
    #[param(minimum = 1)]
    pub limit: Option<usize>,
    /// The `continue` of the previous page (an opaque token).
    #[serde(rename = "continue")]
    pub next: Option<String>,
}

/// What a list request asks for, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Items at most; `None`: every item (after `after`), as before paging existed.
    pub limit: Option<usize>,
    /// Start strictly after this key (from the `continue` token).
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates `limit` and decodes `continue` for `resource`.
    pub(crate) fn new(
        resource: Resource,
        limit: Option<usize>,
        token: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            limit: checked_limit(limit)?,
            after: token.map(|t| resource.key_of_token(t)).transpose()?,
        })
    }

    /// How many items to read to fill the page and learn whether another one follows: one more
    /// than the page, so that no second read is needed to decide on `continue`.
    pub(crate) fn read_limit(&self) -> usize {
        self.limit.map_or(usize::MAX, |l| l + 1)
    }

    /// Cuts `items` (read with [`PageRequest::read_limit`]) to the page, with the token of the
    /// next page if there is one.
    pub(crate) fn finish<T>(
        &self,
        resource: Resource,
        mut items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> ListResponse<T> {
        let next = match self.limit {
            Some(limit) if items.len() > limit => {
                items.truncate(limit);
                items.last().map(|last| resource.token(&key(last)))
            }
            _ => None,
        };
        ListResponse { items, next }
    }
}

/// `limit` at least 1 and at most [`MAX_LIMIT`]. Zero is refused rather than answered with an
/// empty page, whose `continue` would send a client round in circles.
pub(crate) fn checked_limit(limit: Option<usize>) -> Result<Option<usize>, ApiError> {
    match limit {
        Some(0) => Err(ApiError::bad_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
        other => Ok(other.map(|l| l.min(MAX_LIMIT))),
    }
}

/// One page of the stored objects under `prefix`, with their revisions, and the token of the
/// next page if there is one. A range scan of the store, so it costs the page, not the
/// collection.
pub(crate) async fn store_page<T: StoredObject>(
    store: &dyn StateStore,
    resource: Resource,
    prefix: &str,
    page: &PageRequest,
) -> Result<ListResponse<Versioned<T>>, ApiError> {
    let items = store
        .list_obj_page::<T>(prefix, page.after.as_deref(), page.read_limit())
        .await?;
    Ok(page.finish(resource, items, |v| v.value.key()))
}

/// Base64url without padding (RFC 4648 §5): safe in a query string as is.
fn base64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The inverse of [`base64url_encode`]; `None` for anything it cannot have produced: characters
/// outside the URL-safe alphabet, padding, a length no encoding has, and non-canonical
/// encodings (unused low bits of the last character set, so that two spellings decode to the
/// same bytes). One token, one spelling: a client cannot build variants of a token by hand.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    // The engine already refuses trailing bits and padding; re-encoding makes "canonical" a
    // property checked here, whatever the engine's settings.
    (base64url_encode(&bytes) == text).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_and_round_trips() {
        // RFC 4648 §10, without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url_encode(plain.as_bytes()), encoded);
            assert_eq!(base64url_decode(encoded).unwrap(), plain.as_bytes());
        }
        // The URL-safe alphabet: `-` and `_` instead of `+` and `/`.
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            assert_eq!(
                base64url_decode(&base64url_encode(&all[..len])).unwrap(),
                &all[..len]
            );
        }
        for bad in ["a", "abcde", "ab+c", "ab/c", "ab=c", "é"] {
            assert_eq!(base64url_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_canonical_spelling_decodes() {
        // "f" is `Zg`; `Zh`..`Zv` differ only in the unused low bits of the last character.
        assert_eq!(base64url_decode("Zg").unwrap(), b"f");
        assert_eq!(base64url_decode("Zm8").unwrap(), b"fo");
        for bad in [
            "Zh", "Zv",  // "f" with unused bits set
            "Zm9", // "fo" with unused bits set
            "Zg==", "Zm8=", "Zg=", // padded
            " Zg", "Zg\n",  // whitespace
            "Zm9v+", // the standard alphabet
        ] {
            assert_eq!(base64url_decode(bad), None, "{bad:?}");
        }
        // A token re-spelled with different trailing bits is refused like any bad token.
        let token = Resource::Nodes.token("n"); // "nodes:n": 7 bytes, 4 unused bits at the end
        assert_eq!(token, "bm9kZXM6bg");
        let last = token.chars().last().unwrap();
        let respelled = format!(
            "{}{}",
            &token[..token.len() - 1],
            char::from(u8::try_from(last).unwrap() + 1)
        );
        assert_eq!(Resource::Nodes.key_of_token(&token).unwrap(), "n");
        let err = Resource::Nodes.key_of_token(&respelled).unwrap_err();
        assert_eq!(err.code(), "bad_request");
        assert_eq!(err.body().error.details[0].field, "continue");
    }

    #[test]
    fn tokens_round_trip_per_resource() {
        let token = Resource::Instances.token("wl-id/inst 1");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(
            Resource::Instances.key_of_token(&token).unwrap(),
            "wl-id/inst 1"
        );
        // A token of another list, or made up, is refused naming `continue`.
        for bad in [
            Resource::Workloads.token("web"),
            "web".to_owned(),
            "%%".to_owned(),
        ] {
            let err = Resource::Instances.key_of_token(&bad).unwrap_err();
            assert_eq!(err.code(), "bad_request");
            assert_eq!(err.body().error.details[0].field, "continue");
        }
    }

    #[test]
    fn limits_are_checked_and_capped() {
        assert_eq!(checked_limit(None).unwrap(), None);
        assert_eq!(checked_limit(Some(1)).unwrap(), Some(1));
        assert_eq!(checked_limit(Some(MAX_LIMIT)).unwrap(), Some(MAX_LIMIT));
        assert_eq!(checked_limit(Some(usize::MAX)).unwrap(), Some(MAX_LIMIT));
        let err = checked_limit(Some(0)).unwrap_err();
        assert_eq!(err.body().error.details[0].field, "limit");
    }

    #[test]
    fn finish_cuts_the_extra_item_into_a_token() {
        let page = PageRequest {
            limit: Some(2),
            after: None,
        };
        assert_eq!(page.read_limit(), 3);
        let cut = page.finish(Resource::Nodes, vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(cut.items, ["a", "b"]);
        let next = cut.next.expect("a next page");
        assert_eq!(Resource::Nodes.key_of_token(&next).unwrap(), "b");
        let last = page.finish(Resource::Nodes, vec!["a", "b"], |s| s.to_string());
        assert_eq!((last.items.len(), last.next), (2, None));
        let all = PageRequest::default().finish(Resource::Nodes, vec!["a"; 5], |s| s.to_string());
        assert_eq!((all.items.len(), all.next), (5, None));
        assert_eq!(PageRequest::default().read_limit(), usize::MAX);
    }
}
