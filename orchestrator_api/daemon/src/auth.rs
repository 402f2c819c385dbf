//! The API token file (`--tokens FILE`): read and checked at start-up, read again on SIGHUP.
//! A file that does not read or check keeps the tokens in force (and says why in the log), so
//! a typo in an edit never opens the API nor locks everyone out.

use anyhow::{bail, Context, Result};
use orchestrator_api::Tokens;
use orchestrator_shared_types::auth::TokenFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Reads and checks the token file at `path`.
pub fn read_tokens(path: &Path) -> Result<TokenFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the tokens file {}", path.display()))?;
    let file: TokenFile = serde_norway::from_str(&text)
        .with_context(|| format!("parsing the tokens file {}", path.display()))?;
    let problems = file.problems();
    if !problems.is_empty() {
        bail!(
            "the tokens file {} is invalid: {}",
            path.display(),
            problems.join("; ")
        );
    }
    if file.tokens.is_empty() {
        tracing::warn!(file = %path.display(), "the tokens file lists no token: every API request will be refused");
    }
    Ok(file)
}

/// Reloads `tokens` from `path` on every SIGHUP, until `stop` completes.
pub async fn reload_on_sighup(
    path: PathBuf,
    tokens: Arc<Tokens>,
    stop: impl std::future::Future<Output = ()>,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: tokens will not be reloaded");
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            received = hup.recv() => {
                if received.is_none() {
                    return;
                }
                match read_tokens(&path) {
                    Ok(file) => {
                        tokens.replace(&file);
                        tracing::info!(file = %path.display(), tokens = tokens.len(), "API tokens reloaded");
                    }
                    Err(e) => tracing::error!(error = format!("{e:#}"), "API tokens NOT reloaded: the previous ones stay in force"),
                }
            }
        }
    }
}
