//! Reading workload manifests from files or stdin (`-`). Splitting and parsing them (YAML with
//! `---` separated documents, or JSON) is `orchestrator_client::manifest`'s, shared with the MCP
//! server.

use crate::error::CliError;
pub use orchestrator_client::Manifest;
use std::io::Read;

/// The name stdin goes by in messages.
pub const STDIN: &str = "<stdin>";

/// Reads every document of every `files` entry, in order; `-` reads `stdin`. Taking stdin as a
/// reader lets tests feed it and keeps this module free of process-wide state.
pub fn load(files: &[String], stdin: &mut dyn Read) -> Result<Vec<Manifest>, CliError> {
    let mut all = Vec::new();
    for file in files {
        let (name, text) = if file == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|source| CliError::ReadManifest {
                    file: STDIN.to_owned(),
                    source,
                })?;
            (STDIN.to_owned(), text)
        } else {
            let text = std::fs::read_to_string(file).map_err(|source| CliError::ReadManifest {
                file: file.clone(),
                source,
            })?;
            (file.clone(), text)
        };
        all.extend(orchestrator_client::manifest::parse(&name, &text)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_client::manifest::parse;
    use orchestrator_client::ClientError;
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
    fn syntax_errors_name_file_and_document() {
        let err = parse("app.yaml", "name: a\n---\nname: [unclosed\n").unwrap_err();
        let ClientError::ManifestYaml { document, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*document, 2);
        assert!(err.to_string().contains("app.yaml, document 2"));
        // The serde error (with its line) is the source, shown after the message.
        let rendered = crate::error::render_error(&CliError::from(err));
        assert!(rendered.contains("line"), "{rendered}");

        let err = parse("w.json", r#"{"name": }"#).unwrap_err();
        assert!(matches!(err, ClientError::ManifestJson { .. }));
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
}
