//! `token create`: makes an API token for `orchestratord --tokens FILE`. Local: it needs no
//! server. The token is printed once; the file keeps only its SHA-256.

use crate::error::CliError;
use clap::{Args, Subcommand};
use orchestrator_shared_types::auth::{generate_token, hash_token, Role, TokenEntry, TokenFile};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token: print it, and add its name, role and hash to the daemon's token file.
    Create(CreateArgs),
}

/// `token create` arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Who holds the token: named in the audit log and in events.
    #[arg(long)]
    pub name: String,
    /// What it may do: admin (everything) or read-only (reads).
    #[arg(long, default_value = "admin")]
    pub role: Role,
    /// The token file of `orchestratord --tokens` to add the entry to (created, mode 0600, if
    /// missing). Without it the entry is printed on stderr for you to add.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// Runs a `token` command.
pub fn run(command: &TokenCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => create(args, out),
    }
}

fn create(args: &CreateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let token = generate_token()
        .map_err(|e| CliError::Usage(format!("the OS gave no random bytes: {e}")))?;
    let entry = TokenEntry {
        name: args.name.clone(),
        role: args.role,
        sha256: hash_token(&token),
    };
    match &args.file {
        Some(path) => {
            add_entry(path, entry)?;
            eprintln!(
                "added {:?} ({}) to {}; reload the daemon's tokens with `kill -HUP $(pidof orchestratord)`",
                args.name,
                args.role,
                path.display()
            );
        }
        None => {
            let yaml = serde_norway::to_string(&TokenFile {
                tokens: vec![entry],
            })
            .map_err(|e| CliError::Usage(e.to_string()))?;
            eprintln!("add this entry to the daemon's --tokens file:\n{yaml}");
        }
    }
    writeln!(out, "{token}")?;
    Ok(())
}

/// Adds `entry` to the token file at `path`, refusing a name already there; the file is
/// written whole to a temporary file beside it and renamed, so a crash leaves the old one.
fn add_entry(path: &Path, entry: TokenEntry) -> Result<(), CliError> {
    let unusable = |message: String| CliError::Usage(format!("{}: {message}", path.display()));
    let mut file: TokenFile = match std::fs::read_to_string(path) {
        Ok(text) => serde_norway::from_str(&text).map_err(|e| unusable(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
        Err(e) => return Err(unusable(e.to_string())),
    };
    if file.tokens.iter().any(|t| t.name == entry.name) {
        return Err(unusable(format!(
            "a token named {:?} exists; choose another name (or remove that entry first)",
            entry.name
        )));
    }
    file.tokens.push(entry);
    let yaml = serde_norway::to_string(&file).map_err(|e| unusable(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(yaml.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| unusable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_appends_hashes_and_refuses_a_taken_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let args = |name: &str, role| CreateArgs {
            name: name.into(),
            role,
            file: Some(path.clone()),
        };
        let mut out = Vec::new();
        create(&args("alice", Role::Admin), &mut out).unwrap();
        create(&args("bob", Role::ReadOnly), &mut out).unwrap();
        let printed = String::from_utf8(out).unwrap();
        let tokens: Vec<&str> = printed.lines().collect();
        assert_eq!(tokens.len(), 2);
        let file: TokenFile =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(file.problems().is_empty());
        assert_eq!(file.tokens[0].sha256, hash_token(tokens[0]));
        assert_eq!(
            (file.tokens[1].name.as_str(), file.tokens[1].role),
            ("bob", Role::ReadOnly)
        );
        // The token itself is not in the file.
        assert!(!std::fs::read_to_string(&path).unwrap().contains(tokens[0]));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = create(&args("alice", Role::Admin), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("\"alice\" exists"), "{err}");
    }
}
