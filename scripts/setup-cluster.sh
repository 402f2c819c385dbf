#!/usr/bin/env bash
# Sets up this machine for the cluster store: etcd (the server the EtcdStore tests start, and a
# cluster's store) and protoc with Google's well-known protos (descriptor.proto), which the
# etcd-client crate's build needs. Debian/Ubuntu.
#
#   ./scripts/setup-cluster.sh      install whatever is missing, print what is used
#
# Idempotent: when protoc, descriptor.proto and etcd are all there it installs nothing (no root
# needed). Otherwise it installs protobuf-compiler, libprotobuf-dev and etcd-server with apt-get.
# With CI=true, anything it cannot install fails the run; otherwise it warns (the etcd tests then
# print "skipped: etcd not found", but the `etcd` feature still needs protoc to build).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }
missing_or_fail() {
  if [ "${CI:-}" = true ]; then fail "$*"; fi
  say "warning: $*"
}

etcd_bin="${ORCHESTRATOR_ETCD:-$(command -v etcd || true)}"
descriptor=/usr/include/google/protobuf/descriptor.proto

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f "$descriptor" ] || missing+=(libprotobuf-dev)
[ -n "$etcd_bin" ] && [ -x "$etcd_bin" ] || missing+=(etcd-server)

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    missing_or_fail "apt-get not found; install these packages: ${missing[*]}"
  elif [ "$(id -u)" != 0 ]; then
    missing_or_fail "run as root to install ${missing[*]}"
  else
    say "installing packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
      || missing_or_fail "could not install ${missing[*]}"
  fi
fi

# Debian's etcd-server starts no daemon here (no systemd); tests start their own etcd.
etcd_bin="${ORCHESTRATOR_ETCD:-$(command -v etcd || true)}"
command -v protoc >/dev/null && say "protoc: $(protoc --version)"
[ -f "$descriptor" ] && say "well-known protos: $descriptor"
if [ -n "$etcd_bin" ] && [ -x "$etcd_bin" ]; then
  say "etcd: $etcd_bin ($("$etcd_bin" --version 2>/dev/null | head -1))"
fi
