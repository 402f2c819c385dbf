#!/usr/bin/env bash
# One command from a fresh checkout to a running single-node cluster with an example workload.
#
#   ./scripts/quickstart.sh          build, start orchestratord in the background, deploy examples/apps.yaml
#   ./scripts/quickstart.sh stop     stop the daemon started here (SIGTERM: drains and persists)
#
# Idempotent: run it again and it reuses the running daemon and re-applies the example.
# State lives in .orchestrator/ (data dir, log, pid). The API listens on 127.0.0.1:${ORCHESTRATOR_PORT:-8080}.
#
# The containers are SIMULATED for now (--runtime simulated): the youki runtime that runs real
# containers is the next step of the project, and orchestratord refuses to pretend otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

state=.orchestrator
port="${ORCHESTRATOR_PORT:-8080}"
server="http://127.0.0.1:${port}"
pidfile="$state/orchestratord.pid"
export ORCHESTRATOR_SERVER="$server"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  if running; then
    say "stopping orchestratord (pid $(cat "$pidfile"))"
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do running || break; sleep 0.1; done
    rm -f "$pidfile"
  else
    say "orchestratord is not running"
  fi
  exit 0
fi

# --- prerequisites: a Rust toolchain (and a C compiler for some dependencies) -------------------
if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    say "installing Rust with rustup"
    command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if ! command -v cc >/dev/null; then
  command -v apt-get >/dev/null || fail "no C compiler found; install gcc"
  say "installing a C compiler"
  apt-get update -q && apt-get install -y -q gcc
fi

say "building orchestratord and orchestrator-cli (release)"
cargo build --release --locked -p orchestrator_api --bin orchestratord -p orchestrator_cli --bin orchestrator-cli
target="${CARGO_TARGET_DIR:-target}/release"
cli="$target/orchestrator-cli"

mkdir -p "$state"
if running; then
  say "orchestratord already running (pid $(cat "$pidfile")) on $server"
else
  say "starting orchestratord on $server (data dir $state/data, log $state/orchestratord.log)"
  nohup "$target/orchestratord" --listen "127.0.0.1:${port}" --data-dir "$state/data" \
    --runtime simulated >"$state/orchestratord.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    "$cli" cluster info >/dev/null 2>&1 && break
    running || { cat "$state/orchestratord.log" >&2; fail "orchestratord exited; its log is above"; }
    sleep 0.1
  done
  "$cli" cluster info >/dev/null || fail "orchestratord did not answer on $server; see $state/orchestratord.log"
fi

say "deploying examples/apps.yaml"
"$cli" workload apply -f examples/apps.yaml --wait --timeout 60s
"$cli" workload list
echo
say "the cluster is up. Try:"
cat <<HELP
    export ORCHESTRATOR_SERVER=$server
    $cli workload describe api
    $cli workload scale api --replicas 8 --wait
    $cli events --workload api
    $cli workload create -f examples/invalid.yaml     # every problem, with its field path
    $cli node describe \$($cli node list -o json | sed -n 's/.*"id": "\\(.*\\)".*/\\1/p' | head -1)
    ./scripts/quickstart.sh stop
HELP
