//! `completion SHELL`: shell completion scripts generated from the clap definition, so they never
//! drift from the real commands.

use crate::cli::Cli;
use crate::error::CliError;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;

/// `completion` arguments.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell, e.g. bash, zsh, fish.
    pub shell: Shell,
}

/// Prints the completion script of `args.shell`.
pub fn run(args: &CompletionArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // Generated into memory first: clap_complete panics when its writer fails (e.g. `| head`),
    // while a failed write here is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "orchestrator-cli",
        &mut script,
    );
    out.write_all(&script)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_knows_the_commands() {
        let mut out = Vec::new();
        run(&CompletionArgs { shell: Shell::Bash }, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("orchestrator-cli"));
        assert!(script.contains("workload"));
        assert!(script.contains("describe"));
    }
}
