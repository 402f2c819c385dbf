//! Reading workload manifests: files or stdin (`-`), YAML (several documents separated by `---`)
//! or JSON (one object, or an array of objects).
//!
//! Documents are parsed only as far as YAML/JSON syntax and "is a mapping": the server validates
//! the definition itself, so its errors carry field paths and the CLI never disagrees with it.

use serde::Deserialize;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// One workload document of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Where it came from: a path, or `<stdin>`.
    pub file: String,
    /// Its position in the file, from 1 (the YAML document, or the JSON array element).
    pub document: usize,
    /// The definition as written, sent to the server as JSON.
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

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file (or stdin) could not be read.
    #[error("cannot read {file}")]
    Read {
        /// The path, or `<stdin>`.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML document is not valid YAML.
    #[error("cannot parse {file}, document {document}, as YAML")]
    Yaml {
        /// The path, or `<stdin>`.
        file: String,
        /// Position of the document, from 1.
        document: usize,
        /// What serde said (with line and column).
        #[source]
        source: serde_norway::Error,
    },
    /// The JSON is not valid JSON.
    #[error("cannot parse {file} as JSON")]
    Json {
        /// The path, or `<stdin>`.
        file: String,
        /// What serde said (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A document is valid but is not a mapping (a workload is an object with `name`, ...).
    #[error("{file}, document {document}: expected a workload (a mapping), found {found}")]
    NotAMapping {
        /// The path, or `<stdin>`.
        file: String,
        /// Position of the document, from 1.
        document: usize,
        /// What was found, e.g. `a string`.
        found: &'static str,
    },
    /// Nothing but empty documents.
    #[error("{file} contains no workload")]
    Empty {
        /// The path, or `<stdin>`.
        file: String,
    },
}

/// The name stdin goes by in messages.
pub const STDIN: &str = "<stdin>";

/// Reads every document of every `files` entry, in order; `-` reads `stdin`. Taking stdin as a
/// reader lets tests feed it and keeps this module free of process-wide state.
pub fn load(files: &[String], stdin: &mut dyn Read) -> Result<Vec<Manifest>, ManifestError> {
    let mut all = Vec::new();
    for file in files {
        let (name, text) = if file == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|source| ManifestError::Read {
                    file: STDIN.to_owned(),
                    source,
                })?;
            (STDIN.to_owned(), text)
        } else {
            let text = std::fs::read_to_string(file).map_err(|source| ManifestError::Read {
                file: file.clone(),
                source,
            })?;
            (file.clone(), text)
        };
        all.extend(parse(&name, &text)?);
    }
    Ok(all)
}

/// The documents of one manifest's text. `file` names it in messages; its extension (`.json`,
/// `.yaml`, `.yml`) picks the format, otherwise text starting with `{` or `[` is taken as JSON.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
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
        return Err(ManifestError::Empty {
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
            other => Err(ManifestError::NotAMapping {
                file: file.to_owned(),
                document,
                found: kind(&other),
            }),
        })
        .collect()
}

/// `(position, value)` of each JSON document: the elements of an array, or the one value.
fn parse_json(file: &str, text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let value: Value = serde_json::from_str(text).map_err(|source| ManifestError::Json {
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
fn parse_yaml(file: &str, text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let mut documents = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|source| ManifestError::Yaml {
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
    use std::io::Cursor;

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
    fn flow_yaml_on_stdin_is_not_mistaken_for_json() {
        let docs = parse(STDIN, "{name: web, replicas: 1}").unwrap();
        assert_eq!(docs[0].name(), Some("web"));
    }

    #[test]
    fn empty_input_is_an_error() {
        for text in ["", "   \n", "---\n---\n", "# nothing\n"] {
            let err = parse("empty.yaml", text).unwrap_err();
            assert!(
                matches!(err, ManifestError::Empty { .. }),
                "{text:?}: {err}"
            );
            assert_eq!(err.to_string(), "empty.yaml contains no workload");
        }
        assert!(matches!(
            parse("e.json", "[]"),
            Err(ManifestError::Empty { .. })
        ));
    }

    #[test]
    fn syntax_errors_name_file_and_document() {
        let err = parse("app.yaml", "name: a\n---\nname: [unclosed\n").unwrap_err();
        let ManifestError::Yaml { document, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*document, 2);
        assert!(err.to_string().contains("app.yaml, document 2"));
        // The serde error (with its line) is the source, shown after the message.
        let rendered = crate::error::render_error(&crate::error::CliError::from(err));
        assert!(rendered.contains("line"), "{rendered}");

        let err = parse("w.json", r#"{"name": }"#).unwrap_err();
        assert!(matches!(err, ManifestError::Json { .. }));
    }

    #[test]
    fn documents_must_be_mappings() {
        let err = parse("x.yaml", "name: a\n---\njust a string\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml, document 2: expected a workload (a mapping), found a string"
        );
        assert!(parse("x.json", "[{}, 3]").is_err());
    }

    #[test]
    fn dash_reads_the_given_stdin() {
        let mut stdin = Cursor::new(TWO_YAML.as_bytes().to_vec());
        let docs = load(&["-".to_owned()], &mut stdin).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].file, STDIN);
    }

    #[test]
    fn files_are_read_in_order_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.json");
        std::fs::write(&a, "name: a\n").unwrap();
        std::fs::write(&b, r#"[{"name": "b"}]"#).unwrap();
        let files = [a.display().to_string(), b.display().to_string()];
        let docs = load(&files, &mut std::io::empty()).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.name().unwrap()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let missing = dir.path().join("missing.yaml").display().to_string();
        let err = load(std::slice::from_ref(&missing), &mut std::io::empty()).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot read {missing}"));
    }

    #[test]
    fn describe_prefers_the_name() {
        let docs = parse("x.yaml", "name: web\n---\nreplicas: 1\n").unwrap();
        assert_eq!(docs[0].describe(), "workload web");
        assert_eq!(docs[1].describe(), "document 2 of x.yaml");
    }
}
