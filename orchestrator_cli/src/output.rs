//! Output formats (`-o table|wide|json|yaml`) and the plumbing every command shares: kubectl-like
//! tables (left-aligned columns, three spaces apart, no borders) and the server's objects printed
//! as JSON or YAML.

use crate::error::CliError;
use serde::Serialize;
use std::io::Write;
use tabled::builder::Builder;
use tabled::settings::{Padding, Style};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable table (or text, for `describe` and `cluster info`).
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The server's objects as pretty JSON.
    Json,
    /// The server's objects as YAML.
    Yaml,
}

impl OutputFormat {
    /// Whether the format prints the server's objects rather than text for people.
    pub fn is_structured(self) -> bool {
        matches!(self, OutputFormat::Json | OutputFormat::Yaml)
    }

    /// Whether tables get their extra columns.
    pub fn is_wide(self) -> bool {
        self == OutputFormat::Wide
    }
}

/// Prints `value` as JSON or YAML. Callers only reach this for structured formats; a table format
/// falls back to JSON rather than printing nothing.
pub fn print_structured<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &T,
) -> Result<(), CliError> {
    let text = match format {
        OutputFormat::Yaml => serde_norway::to_string(value).map_err(|e| CliError::Render {
            format: "yaml",
            source: Box::new(e),
        })?,
        _ => {
            let mut json = serde_json::to_string_pretty(value).map_err(|e| CliError::Render {
                format: "json",
                source: Box::new(e),
            })?;
            json.push('\n');
            json
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// A table with a header row: columns left-aligned, three spaces apart, no trailing spaces.
pub fn table<I, R>(header: &[&str], rows: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let mut builder = Builder::default();
    builder.push_record(header.iter().map(|h| (*h).to_owned()));
    for row in rows {
        builder.push_record(row);
    }
    let mut table = builder.build();
    table.with(Style::empty()).with(Padding::new(0, 3, 0, 0));
    let mut text = String::new();
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Indents every line of `text` by `spaces` (tables nested in `describe`).
pub fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

/// Builds `describe`-style text: `Key:` labels padded to one column.
#[derive(Debug, Default)]
pub struct Fields {
    text: String,
}

/// Width of the label column of [`Fields`].
const LABEL_WIDTH: usize = 16;

impl Fields {
    /// An empty text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `Label:  value`.
    pub fn field(&mut self, label: &str, value: impl std::fmt::Display) -> &mut Self {
        let label = format!("{label}:");
        let line = format!("{label:<LABEL_WIDTH$}{value}");
        self.text.push_str(line.trim_end());
        self.text.push('\n');
        self
    }

    /// Adds a `Label:` line followed by `body` indented by two spaces.
    pub fn section(&mut self, label: &str, body: &str) -> &mut Self {
        self.text.push_str(&format!("{label}:\n"));
        self.text.push_str(&indent(body, 2));
        self
    }

    /// The text built so far.
    pub fn finish(&self) -> String {
        self.text.clone()
    }
}

/// `<none>` for an empty value, as kubectl shows it.
pub fn or_none(value: String) -> String {
    if value.is_empty() {
        "<none>".to_owned()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned_without_borders_or_trailing_spaces() {
        let text = table(
            &["NAME", "READY"],
            vec![
                vec!["web".to_owned(), "3/3".to_owned()],
                vec!["a-longer-name".to_owned(), "0/1".to_owned()],
            ],
        );
        assert_eq!(
            text,
            "NAME            READY\nweb             3/3\na-longer-name   0/1\n"
        );
    }

    #[test]
    fn structured_output_is_parseable() {
        let mut out = Vec::new();
        print_structured(&mut out, OutputFormat::Json, &serde_json::json!({"a": [1]})).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["a"][0], 1);
        let mut out = Vec::new();
        print_structured(&mut out, OutputFormat::Yaml, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a: 1\n");
    }

    #[test]
    fn fields_align_labels() {
        let text = Fields::new()
            .field("Name", "web")
            .field("Labels", "")
            .section("Containers", "web:\n  Image:  nginx\n")
            .finish();
        assert_eq!(
            text,
            "Name:           web\nLabels:\nContainers:\n  web:\n    Image:  nginx\n"
        );
    }
}
