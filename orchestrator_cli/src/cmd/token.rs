//! `token create|list|revoke`: the API tokens of `orchestratord --tokens FILE`. Local: they need
//! no server, only the file. A token is printed once, when it is made; the file keeps only its
//! SHA-256. The daemon reads a changed file on SIGHUP.

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
    /// List the tokens of a token file: names and roles (the tokens themselves are not in it).
    List(FileArgs),
    /// Remove a token from a token file; it stops working when the daemon reloads the file.
    Revoke(RevokeArgs),
}

/// `token list` arguments.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The token file of `orchestratord --tokens`.
    #[arg(long)]
    pub file: PathBuf,
}

/// `token revoke` arguments.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The name of the token to remove.
    #[arg(long)]
    pub name: String,
    /// The token file of `orchestratord --tokens`.
    #[arg(long)]
    pub file: PathBuf,
}

/// How to make the daemon read a changed token file.
const RELOAD_HINT: &str = "reload the daemon's tokens with `kill -HUP $(pidof orchestratord)`";

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
        TokenCommand::List(args) => list(&args.file, out),
        TokenCommand::Revoke(args) => revoke(args),
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
                "added {:?} ({}) to {}; {RELOAD_HINT}",
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

fn list(path: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let file = read_file(path, false)?;
    writeln!(out, "{:<24} ROLE", "NAME")?;
    for t in &file.tokens {
        writeln!(out, "{:<24} {}", t.name, t.role)?;
    }
    Ok(())
}

fn revoke(args: &RevokeArgs) -> Result<(), CliError> {
    let mut file = read_file(&args.file, false)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != args.name);
    if file.tokens.len() == before {
        return Err(CliError::Usage(format!(
            "{}: no token named {:?}",
            args.file.display(),
            args.name
        )));
    }
    write_file(&args.file, &file)?;
    eprintln!(
        "removed {:?} from {}; {RELOAD_HINT}",
        args.name,
        args.file.display()
    );
    Ok(())
}

/// An error about the token file at `path`.
fn unusable(path: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {message}", path.display()))
}

/// The token file at `path`; an empty one if it is missing and `missing_ok`.
fn read_file(path: &Path, missing_ok: bool) -> Result<TokenFile, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_norway::from_str(&text).map_err(|e| unusable(path, e)),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(TokenFile::default())
        }
        Err(e) => Err(unusable(path, e)),
    }
}

/// Writes `file` whole to a temporary file (mode 0600) beside `path` and renames it over
/// `path`, so a crash leaves the old file.
fn write_file(path: &Path, file: &TokenFile) -> Result<(), CliError> {
    let yaml = serde_norway::to_string(file).map_err(|e| unusable(path, e))?;
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
    write().map_err(|e| unusable(path, e))
}

/// Adds `entry` to the token file at `path` (made if missing), refusing a name already there.
fn add_entry(path: &Path, entry: TokenEntry) -> Result<(), CliError> {
    let mut file = read_file(path, true)?;
    if file.tokens.iter().any(|t| t.name == entry.name) {
        return Err(unusable(
            path,
            format!(
                "a token named {:?} exists; choose another name (or revoke that one first)",
                entry.name
            ),
        ));
    }
    file.tokens.push(entry);
    write_file(path, &file)
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

        // list: names and roles, never hashes.
        let mut listed = Vec::new();
        list(&path, &mut listed).unwrap();
        let listed = String::from_utf8(listed).unwrap();
        assert!(
            listed.contains("alice") && listed.contains("read-only"),
            "{listed}"
        );
        assert!(!listed.contains(&file.tokens[0].sha256), "{listed}");

        // revoke: the entry goes, the others stay; an unknown name is an error.
        let revoke_args = |name: &str| RevokeArgs {
            name: name.into(),
            file: path.clone(),
        };
        revoke(&revoke_args("alice")).unwrap();
        let file: TokenFile =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let names: Vec<&str> = file.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["bob"]);
        let err = revoke(&revoke_args("alice")).unwrap_err();
        assert!(
            err.to_string().contains("no token named \"alice\""),
            "{err}"
        );
    }
}
