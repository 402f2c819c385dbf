//! Workload manifests: YAML (several documents separated by `---`) or JSON (one object, or an
//! array of objects), split into one [`Manifest`] per workload.
//!
//! Documents are parsed only as far as YAML/JSON syntax and "is a mapping": the server validates
//! the definition itself, so its errors carry field paths and a client never disagrees with it.

use crate::ClientError;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// One workload document of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Where it came from: a path, `<stdin>`, ...
    pub file: String,
    /// Its position in the file, from 1 (the YAML document, or the JSON array element).
    pub document: usize,
    /// The definition as written, to send to the server as JSON.
    pub body: Value,
}

impl Manifest {
    /// The workload's `name`, when the document has one.
    pub fn name(&self) -> Option<&str> {
        self.body.get("name").and_then(Value::as_str)
    }

    /// How to name this document in messages: `workload web`, or `document 2 of app.yaml` when it
    /// has no usable name.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(name) if !name.is_empty() => format!("workload {name}"),
            _ => format!("document {} of {}", self.document, self.file),
        }
    }
}

/// The documents of one manifest's text. `file` names it in messages; its extension (`.json`,
/// `.yaml`, `.yml`) picks the format, otherwise text starting with `{` or `[` is taken as JSON
/// (falling back to YAML's flow style) and anything else as YAML.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, ClientError> {
    let extension = Path::new(file)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let documents = match extension.as_deref() {
        Some("json") => parse_json(file, text)?,
        Some("yaml" | "yml") => parse_yaml(file, text)?,
        _ if text.trim_start().starts_with(['{', '[']) => match parse_json(file, text) {
            Ok(docs) => docs,
            // `{name: web}` is YAML's flow style, not JSON: give YAML a chance, but report the
            // JSON error if YAML fails too since the text looked like JSON.
            Err(json_error) => parse_yaml(file, text).map_err(|_| json_error)?,
        },
        _ => parse_yaml(file, text)?,
    };
    if documents.is_empty() {
        return Err(ClientError::EmptyManifest {
            file: file.to_owned(),
        });
    }
    documents
        .into_iter()
        .map(|(document, body)| match body {
            Value::Object(_) => Ok(Manifest {
                file: file.to_owned(),
                document,
                body,
            }),
            other => Err(ClientError::NotAWorkload {
                file: file.to_owned(),
                document,
                found: kind(&other),
            }),
        })
        .collect()
}

/// `(position, value)` of each JSON document: the elements of an array, or the one value.
fn parse_json(file: &str, text: &str) -> Result<Vec<(usize, Value)>, ClientError> {
    let value: Value = serde_json::from_str(text).map_err(|source| ClientError::ManifestJson {
        file: file.to_owned(),
        source,
    })?;
    Ok(match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect(),
        other => vec![(1, other)],
    })
}

/// `(position, value)` of each non-empty YAML document. Empty documents (a leading or trailing
/// `---`, comments only) are skipped but still counted, so positions match the file.
fn parse_yaml(file: &str, text: &str) -> Result<Vec<(usize, Value)>, ClientError> {
    let mut documents = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|source| ClientError::ManifestYaml {
            file: file.to_owned(),
            document: i + 1,
            source,
        })?;
        if !value.is_null() {
            documents.push((i + 1, value));
        }
    }
    Ok(documents)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_YAML: &str = "\
---
name: web
replicas: 2
containers:
  - name: web
    image: nginx:1
---
# comment only: an empty document
---
name: api
replicas: 1
containers: [{name: api, image: api:2}]
";

    #[test]
    fn multi_document_yaml_keeps_positions() {
        let docs = parse("app.yaml", TWO_YAML).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].name(), Some("web"));
        assert_eq!(docs[0].document, 1);
        assert_eq!(docs[0].body["containers"][0]["image"], "nginx:1");
        assert_eq!(docs[1].name(), Some("api"));
        assert_eq!(docs[1].document, 3);
        assert_eq!(docs[1].body["replicas"], 1);
    }

    #[test]
    fn json_object_and_array() {
        let one = parse("w.json", r#"{"name": "web", "replicas": 1}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name(), Some("web"));
        let many = parse("-", r#" [{"name": "a"}, {"name": "b"}] "#).unwrap();
        assert_eq!(
            many.iter()
                .map(|m| (m.name(), m.document))
                .collect::<Vec<_>>(),
            vec![(Some("a"), 1), (Some("b"), 2)]
        );
    }

    #[test]
    fn flow_yaml_is_not_mistaken_for_json() {
        let docs = parse("<stdin>", "{name: web, replicas: 1}").unwrap();
        assert_eq!(docs[0].name(), Some("web"));
    }

    #[test]
    fn empty_input_is_an_error() {
        for text in ["", "   \n", "---\n---\n", "# nothing\n"] {
            let err = parse("empty.yaml", text).unwrap_err();
            assert!(
                matches!(err, ClientError::EmptyManifest { .. }),
                "{text:?}: {err}"
            );
            assert_eq!(err.to_string(), "empty.yaml contains no workload");
        }
        assert!(matches!(
            parse("e.json", "[]"),
            Err(ClientError::EmptyManifest { .. })
        ));
    }

    #[test]
    fn syntax_errors_name_file_document_and_line() {
        let err = parse("app.yaml", "name: a\n---\nname: [unclosed\n").unwrap_err();
        let ClientError::ManifestYaml {
            document, source, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*document, 2);
        assert!(err.to_string().contains("app.yaml, document 2"));
        // The parser's error says where, in lines of the whole file (not of the document): the
        // end of the input where it gave up, and the unclosed `[` on line 3.
        let location = source.location().expect("a location");
        assert_eq!((location.line(), location.column()), (4, 1), "{source}");
        assert!(
            source
                .to_string()
                .contains("flow sequence at line 3 column 7"),
            "{source}"
        );

        let err = parse("w.json", r#"{"name": }"#).unwrap_err();
        assert!(matches!(err, ClientError::ManifestJson { .. }));
    }

    #[test]
    fn documents_must_be_mappings() {
        let err = parse("x.yaml", "name: a\n---\njust a string\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml, document 2: expected a workload (a mapping), found a string"
        );
        assert!(parse("x.json", "[{}, 3]").is_err());
        assert!(parse("x", "- a\n- b\n").is_err());
    }

    #[test]
    fn describe_prefers_the_name() {
        let docs = parse("x.yaml", "name: web\n---\nreplicas: 1\n").unwrap();
        assert_eq!(docs[0].describe(), "workload web");
        assert_eq!(docs[1].describe(), "document 2 of x.yaml");
    }
}
