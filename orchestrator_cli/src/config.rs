//! Which server to talk to, with which token and CA: the command line and environment over the
//! config file (`~/.config/orchestrator/config.yaml`, named servers like kubeconfig contexts)
//! over the default (`http://127.0.0.1:8080`, no token).
//!
//! ```yaml
//! current: prod
//! servers:
//!   - name: prod
//!     server: https://10.0.0.5:8080
//!     token_file: ~/.config/orchestrator/prod.token   # or token: orc_...
//!     ca_cert: ~/.config/orchestrator/prod-ca.pem
//!   - name: local
//!     server: http://127.0.0.1:8080
//! ```

use crate::cli::DEFAULT_SERVER;
use crate::error::CliError;
use orchestrator_client::ClientOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The server used when `--context` does not name one.
    pub current: Option<String>,
    /// Named servers.
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
}

/// One named server of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Its name (`--context NAME`).
    pub name: String,
    /// Its URL.
    pub server: String,
    /// The API token.
    pub token: Option<String>,
    /// A file holding the API token (first line), instead of `token`.
    pub token_file: Option<PathBuf>,
    /// PEM certificates to trust for an `https://` server.
    pub ca_cert: Option<PathBuf>,
}

/// What the command line and environment say (each `None` when not given).
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--server` / `ORCHESTRATOR_SERVER`.
    pub server: Option<String>,
    /// `--token` / `ORCHESTRATOR_TOKEN`.
    pub token: Option<String>,
    /// `--ca-cert` / `ORCHESTRATOR_CA_CERT`.
    pub ca_cert: Option<PathBuf>,
    /// `--context` / `ORCHESTRATOR_CONTEXT`.
    pub context: Option<String>,
    /// `--config` / `ORCHESTRATOR_CONFIG`; `None`: the default path, if the file exists.
    pub config: Option<PathBuf>,
}

/// The server to call and how.
#[derive(Debug)]
pub struct Target {
    /// Its URL.
    pub server: String,
    /// Token and CA.
    pub options: ClientOptions,
}

/// `~/.config/orchestrator/config.yaml` (or under `$XDG_CONFIG_HOME`).
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("orchestrator").join("config.yaml"))
}

/// `~/...` in paths of the config file.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

fn config_error(path: &Path, message: impl Into<String>) -> CliError {
    CliError::Config {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Resolves the target from `overrides` and the config file.
pub fn resolve(overrides: Overrides) -> Result<Target, CliError> {
    let (path, explicit) = match overrides.config {
        Some(path) => (Some(path), true),
        None => (default_path(), false),
    };
    let file = match &path {
        Some(path) if explicit || path.exists() => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| config_error(path, format!("cannot read it: {e}")))?;
            let parsed: ConfigFile =
                serde_norway::from_str(&text).map_err(|e| config_error(path, e.to_string()))?;
            Some((path.clone(), parsed))
        }
        _ => None,
    };
    let entry = match &file {
        Some((path, file)) => {
            let wanted = overrides.context.as_ref().or(file.current.as_ref());
            match wanted {
                Some(name) => Some((
                    path,
                    file.servers
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| {
                            let known: Vec<_> =
                                file.servers.iter().map(|s| s.name.as_str()).collect();
                            config_error(
                                path,
                                format!("no server named {name:?} (it has: {})", known.join(", ")),
                            )
                        })?,
                )),
                None => None,
            }
        }
        None => match &overrides.context {
            Some(name) => {
                return Err(CliError::Usage(format!(
                    "--context {name}: there is no config file ({})",
                    path.map_or_else(|| "no HOME".to_owned(), |p| p.display().to_string())
                )))
            }
            None => None,
        },
    };
    let from_file = |f: fn(&ServerEntry) -> Option<String>| entry.and_then(|(_, e)| f(e));
    let server = overrides
        .server
        .or_else(|| from_file(|e| Some(e.server.clone())))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = match overrides.token {
        Some(token) => Some(token),
        None => match entry {
            Some((_, ServerEntry { token: Some(t), .. })) => Some(t.clone()),
            Some((
                path,
                ServerEntry {
                    token_file: Some(file),
                    ..
                },
            )) => {
                let file = expand_home(file);
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    config_error(path, format!("token_file {}: {e}", file.display()))
                })?;
                Some(text.lines().next().unwrap_or_default().trim().to_owned())
            }
            _ => None,
        },
    };
    let ca_cert = overrides.ca_cert.or_else(|| {
        entry
            .and_then(|(_, e)| e.ca_cert.as_deref())
            .map(expand_home)
    });
    let ca_pem = ca_cert
        .map(|path| {
            std::fs::read(&path).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read the CA certificate {}: {e}",
                    path.display()
                ))
            })
        })
        .transpose()?;
    Ok(Target {
        server,
        options: ClientOptions { token, ca_pem },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = write(dir.path(), "prod.token", "orc_fromfile\n");
        let ca = write(dir.path(), "ca.pem", "PEM");
        let config = write(
            dir.path(),
            "config.yaml",
            &format!(
                "current: prod\nservers:\n  - name: prod\n    server: https://10.0.0.5:8080\n    token_file: {}\n    ca_cert: {}\n  - name: dev\n    server: http://10.0.0.6:8080\n    token: orc_dev\n",
                token_file.display(),
                ca.display()
            ),
        );
        let with = |o: Overrides| {
            resolve(Overrides {
                config: Some(config.clone()),
                ..o
            })
        };
        let prod = with(Overrides::default()).unwrap();
        assert_eq!(prod.server, "https://10.0.0.5:8080");
        assert_eq!(prod.options.token.as_deref(), Some("orc_fromfile"));
        assert_eq!(prod.options.ca_pem.as_deref(), Some(&b"PEM"[..]));
        let dev = with(Overrides {
            context: Some("dev".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            (dev.server.as_str(), dev.options.token.as_deref()),
            ("http://10.0.0.6:8080", Some("orc_dev"))
        );
        let flagged = with(Overrides {
            server: Some("http://h:1".into()),
            token: Some("orc_flag".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(flagged.server, "http://h:1");
        assert_eq!(flagged.options.token.as_deref(), Some("orc_flag"));
        let err = with(Overrides {
            context: Some("nope".into()),
            ..Overrides::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("prod, dev"),
            "{err}"
        );
    }

    #[test]
    fn no_file_means_the_default_server() {
        let dir = tempfile::tempdir().unwrap();
        let none = resolve(Overrides {
            config: None,
            ..Overrides::default()
        });
        // The default path may exist on a developer's machine; an explicit missing one fails.
        drop(none);
        let missing = resolve(Overrides {
            config: Some(dir.path().join("absent.yaml")),
            ..Overrides::default()
        });
        assert!(missing.unwrap_err().to_string().contains("absent.yaml"));
        let bad = write(dir.path(), "bad.yaml", "servers: 3\n");
        assert!(resolve(Overrides {
            config: Some(bad),
            ..Overrides::default()
        })
        .is_err());
        let empty = write(dir.path(), "empty.yaml", "servers: []\n");
        let target = resolve(Overrides {
            config: Some(empty),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(target.server, DEFAULT_SERVER);
        assert!(target.options.token.is_none());
    }
}
