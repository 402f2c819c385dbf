//! `orchestrator-cli`: filled in by the single-node product issue.

fn main() {
    eprintln!("orchestrator-cli: not implemented yet (see issue 3)");
    std::process::exit(2);
}
