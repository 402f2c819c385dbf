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
# Builds of C code need a C compiler (openssl-sys runs it to probe the system OpenSSL, whose
# headers, libssl-dev, scripts/setup-oci.sh installs below); fail early and clearly.
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

# Multi-host tests on this machine (orchestrator_testkit::netns, tests cluster_netns and the kit's
# netns): network namespaces, veths and a bridge (iproute2), a FORWARD rule (iptables) and
# `nsenter` (util-linux). They need root; without it they are skipped (a failure under CI=true).
missing_pkgs=()
command -v ip >/dev/null || missing_pkgs+=(iproute2)
command -v iptables >/dev/null || missing_pkgs+=(iptables)
command -v nsenter >/dev/null || missing_pkgs+=(util-linux)
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    say "installing ${missing_pkgs[*]}"
    apt-get update -q && apt-get install -y -q "${missing_pkgs[@]}"
  else
    fail "the netns tests need ${missing_pkgs[*]}"
  fi
fi

# Real containers: youki 0.7.0 with cgroup support, busybox-static, the local registry and the test
# image (scripts/setup-oci.sh is idempotent; the first run builds youki, ~7 min). The OCI runtime
# tests use youki from its env file. A registry this run had to start is stopped at the end.
oci_state="${ORCHESTRATOR_OCI_DIR:-/var/lib/orchestrator-oci}"
registry_was_up=false
curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && registry_was_up=true
say "setting up youki, the local registry and the test image"
./scripts/setup-oci.sh
if [ "$registry_was_up" = false ]; then
  trap './scripts/setup-oci.sh stop >/dev/null 2>&1 || true' EXIT
fi
# shellcheck disable=SC1091
. "$oci_state/env"
export YOUKI="$ORCHESTRATOR_YOUKI"

# The cluster store: etcd for the EtcdStore tests, protoc for the etcd-client build (the
# `etcd` feature, which --all-features builds). Idempotent; installs only what is missing.
say "setting up etcd and protoc"
./scripts/setup-cluster.sh

# --- checks -------------------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

say "cargo test"
cargo test --workspace --all-features --locked

# The fuzz targets (fuzz/, cargo-fuzz): replays every committed corpus input and fuzzes 10 s per
# target (a dev build without sanitizer; the long ASan runs are `./scripts/fuzz.sh 600`).
say "fuzzing (smoke run, 10 s per target)"
./scripts/fuzz.sh 10

say "all tests passed"
