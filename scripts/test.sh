#!/usr/bin/env bash
# Sets up what the tests need and runs every test: format check, clippy with warnings as errors,
# and the unit, black-box and scenario tests of the whole workspace.
#
# Idempotent; safe to run again. With CI=true a missing prerequisite fails the run instead of
# being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------------------
command -v cargo >/dev/null || fail "cargo not found: install Rust with https://rustup.rs"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
      say "installing the $component component"
      rustup component add "$component"
    else
      fail "cargo $component is missing and rustup is not available to install it"
    fi
  fi
done
# Builds of C code (none yet in this workspace) need a C compiler; fail early and clearly.
command -v cc >/dev/null || { [ "${CI:-}" = true ] && fail "no C compiler (cc)"; say "warning: no C compiler found"; }

# The MCP tests drive orchestrator-mcp with the official Python `mcp` client, which they install
# (pip, from PyPI) into a venv under the target dir: they need python3 with the venv module.
if ! python3 -m venv --help >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    say "installing python3 and python3-venv"
    apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip
  else
    fail "python3 with the venv module is needed by the MCP tests"
  fi
fi

# --- checks -------------------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

say "cargo test"
cargo test --workspace --all-features --locked

say "all tests passed"
