//! Extractors whose failures are [`ApiError`]s, so that a bad body or query string gets the same
//! JSON error shape as everything else, with the field path when one is known.
//!
//! * [`Manifest`]: a [`WorkloadDefinition`] in JSON or YAML, chosen by `Content-Type` (JSON
//!   when there is none), parsed and then validated.
//! * [`JsonBody`]: any other body, JSON only.
//! * [`ApiQuery`]: a query string.
//!
//! Field paths come from `serde_path_to_error`, which tracks where the deserializer was
//! (`containers[0].resources.memory_mb`) in the same notation as the validation errors of
//! `orchestrator_shared_types`, for JSON and YAML alike.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use orchestrator_shared_types::{FieldError, WorkloadDefinition};
use serde::de::DeserializeOwned;

/// The formats a body can come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Yaml,
}

/// What `Content-Type` says about the body: a format, or the unsupported media type.
pub(crate) fn format_of(headers: &HeaderMap) -> Result<Format, String> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        // curl without -H, and many scripts: JSON is the API's native format.
        return Ok(Format::Json);
    };
    let raw = value.to_str().map_err(|_| "<not text>".to_owned())?;
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        s if s.starts_with("application/") && s.ends_with("+json") => Ok(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Ok(Format::Yaml),
        _ => Err(raw.to_owned()),
    }
}

/// Reads the whole body (bounded by the body limit) and refuses an empty one.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let bytes =
        Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::bad_request(rejection.body_text()),
            })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    Ok(bytes)
}

/// Decodes `bytes` as `format`, turning serde's error into a 400 that names the field.
pub(crate) fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, ApiError> {
    let (path, message) = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = serde_path_to_error::deserialize::<_, T>(&mut de)
                .map_err(|e| (e.path().to_string(), e.into_inner().to_string()));
            // Trailing garbage after the document is an error too, as in serde_json::from_slice.
            match value.and_then(|v| {
                de.end()
                    .map(|()| v)
                    .map_err(|e| (String::new(), e.to_string()))
            }) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            }
        }
        Format::Yaml => {
            let de = serde_norway::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(v) => return Ok(v),
                Err(e) => (e.path().to_string(), yaml_message(e.into_inner())),
            }
        }
    };
    let what = match format {
        Format::Json => "JSON",
        Format::Yaml => "YAML",
    };
    Err(match field_of_error(&path, &message) {
        Some(field) => ApiError::BadRequest {
            message: format!("invalid {what} body: {field}: {message}"),
            details: vec![FieldError { field, message }],
        },
        None => ApiError::bad_request(format!("invalid {what} body: {message}")),
    })
}

/// The field an error is about. serde_path_to_error knows where the deserializer was (it
/// prints `.` for the document's root); a missing field is reported by its parent, so its name
/// comes from serde's message (`missing field `containers``).
fn field_of_error(path: &str, message: &str) -> Option<String> {
    // `?` is a segment serde_path_to_error could not name (e.g. a key cut short by the end of
    // the input): the path up to it is the best there is.
    let known = path.split(".?").next().unwrap_or_default();
    let parent = (!known.is_empty() && known != "." && known != "?").then_some(known);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (parent, missing) {
        (Some(p), Some(m)) => Some(format!("{p}.{m}")),
        (None, Some(m)) => Some(m.to_owned()),
        (Some(p), None) => Some(p.to_owned()),
        (None, None) => None,
    }
}

/// serde_norway prefixes its message with its own notion of the path (`containers[0]: ...`);
/// the path is reported separately, so keep only the rule and the position.
fn yaml_message(e: serde_norway::Error) -> String {
    let text = e.to_string();
    match e.location() {
        // "path: message at line L column C": drop the "path: " part when there is one.
        Some(_) => match text.split_once(": ") {
            Some((head, rest)) if !head.contains(' ') => rest.to_owned(),
            _ => text,
        },
        None => text,
    }
}

/// A workload definition from a JSON or YAML body, parsed and validated (every rule broken is
/// in the 400's details).
#[derive(Debug)]
pub(crate) struct Manifest(pub WorkloadDefinition);

impl<S: Send + Sync> FromRequest<S> for Manifest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = format_of(req.headers()).map_err(|got| ApiError::UnsupportedMediaType {
            got,
            expected: "application/json or application/yaml",
        })?;
        let bytes = read_body(req, state).await?;
        parse_manifest(format, &bytes).map(Manifest)
    }
}

/// A workload definition parsed from `bytes` and validated: what [`Manifest`] does with a body
/// (also the fuzz targets' entry point, feature `fuzzing`).
pub(crate) fn parse_manifest(format: Format, bytes: &[u8]) -> Result<WorkloadDefinition, ApiError> {
    let def: WorkloadDefinition = decode(format, bytes)?;
    def.validate().map_err(ApiError::Validation)?;
    Ok(def)
}

/// A JSON body of type `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if format_of(req.headers()) != Ok(Format::Json) {
            let got = req
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(ApiError::UnsupportedMediaType {
                got,
                expected: "application/json",
            });
        }
        let bytes = read_body(req, state).await?;
        decode(Format::Json, &bytes).map(JsonBody)
    }
}

/// A query string of type `T`; a bad one is a 400 `bad_request`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|rejection| query_error(&rejection.body_text()))
    }
}

/// A 400 for a bad query string, naming the parameter when serde_urlencoded's message starts
/// with it (`limit: invalid digit found in string`).
fn query_error(text: &str) -> ApiError {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    let message = format!("invalid query string: {detail}");
    match detail.split_once(": ") {
        Some((field, rule))
            if !field.is_empty()
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            ApiError::BadRequest {
                message,
                details: vec![FieldError {
                    field: field.to_owned(),
                    message: rule.to_owned(),
                }],
            }
        }
        _ => ApiError::bad_request(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    #[test]
    fn content_types() {
        assert_eq!(format_of(&headers(None)), Ok(Format::Json));
        assert_eq!(
            format_of(&headers(Some("application/json; charset=utf-8"))),
            Ok(Format::Json)
        );
        assert_eq!(
            format_of(&headers(Some("application/merge-patch+json"))),
            Ok(Format::Json)
        );
        for yaml in [
            "application/yaml",
            "application/x-yaml",
            "text/yaml",
            "Text/YAML",
        ] {
            assert_eq!(format_of(&headers(Some(yaml))), Ok(Format::Yaml), "{yaml}");
        }
        assert!(format_of(&headers(Some("text/plain"))).is_err());
        assert!(format_of(&headers(Some("application/xml"))).is_err());
    }

    fn field_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::BadRequest { details, .. } => details.first().map(|d| d.field.clone()),
            other => panic!("expected bad_request, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        let body = br#"{"name":"w","replicas":1,"containers":[{"name":"a","image":"i","resources":{"memory_mb":-1}}]}"#;
        let e = decode::<WorkloadDefinition>(Format::Json, body).unwrap_err();
        assert_eq!(
            field_of(e).as_deref(),
            Some("containers[0].resources.memory_mb")
        );
        // A syntax error says where, in lines and columns (and under which key, if inside one).
        let e = decode::<WorkloadDefinition>(Format::Json, b"{\"name\": ").unwrap_err();
        assert!(e.to_string().contains("line 1 column 9"), "{e}");
        let e = decode::<WorkloadDefinition>(Format::Json, b"{\"name\": \"x\",").unwrap_err();
        assert_eq!(field_of(e), None, "a key cut short has no name");
        let e = decode::<WorkloadDefinition>(Format::Json, b"\"text\"").unwrap_err();
        assert_eq!(field_of(e), None);
        let e = decode::<WorkloadDefinition>(
            Format::Json,
            br#"{"name":"w","replicas":1,"containers":[]} trailing"#,
        )
        .unwrap_err();
        assert_eq!(field_of(e), None);
        let e = decode::<WorkloadDefinition>(
            Format::Json,
            br#"{"name":"w","replicas":1,"containers":[{"name":"a"}]}"#,
        )
        .unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("containers[0].image"));
        let e = decode::<WorkloadDefinition>(Format::Json, br#"{"name":"w","replicas":1}"#)
            .unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("containers"));
    }

    #[test]
    fn yaml_errors_name_the_field() {
        let body =
            b"name: w\nreplicas: 1\ncontainers:\n  - name: a\n    image: i\n    colour: red\n";
        let e = decode::<WorkloadDefinition>(Format::Yaml, body).unwrap_err();
        let message = e.to_string();
        assert_eq!(field_of(e).as_deref(), Some("containers[0].colour"));
        assert!(message.contains("unknown field `colour`"), "{message}");
    }
}
