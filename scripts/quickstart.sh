#!/usr/bin/env bash
# One command from a fresh checkout to a running single-node cluster with an example workload.
#
#   ./scripts/quickstart.sh          set up youki + a local registry, build, start orchestratord in the
#                                    background, deploy examples/web.yaml and examples/apps.yaml
#   ./scripts/quickstart.sh stop     stop the daemon started here (SIGTERM: drains and persists; the
#                                    containers keep running and are adopted by the next start)
#   ./scripts/quickstart.sh down     delete every workload (their containers stop and are removed),
#                                    then stop the daemon
#
# Idempotent: run it again and it reuses the running daemon and re-applies the examples.
# REAL containers: scripts/setup-oci.sh installs youki (cargo install, ~7 min the first time), starts
# Debian's docker-registry on 127.0.0.1:5000 and pushes a busybox image the examples pull. Needs root
# (apt, cgroups). State lives in .orchestrator/ (data dir, log, pid). The API listens on
# 127.0.0.1:${ORCHESTRATOR_PORT:-8080}.
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

if [ "${1:-}" = down ]; then
  target_dir="${CARGO_TARGET_DIR:-target}/release"
  if running && [ -x "$target_dir/orchestrator-cli" ]; then
    cli="$target_dir/orchestrator-cli"
    for w in $("$cli" workload list -o json | jq -r '.items[].workload.name'); do
      "$cli" workload delete "$w"
    done
    say "waiting for the containers to stop"
    for _ in $(seq 1 300); do
      [ "$("$cli" instance list -o json | jq '.items | length')" = 0 ] && break
      sleep 0.1
    done
  fi
  set -- stop
fi

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

say "setting up youki, the local registry and the example image"
./scripts/setup-oci.sh
# shellcheck disable=SC1091
. "${ORCHESTRATOR_OCI_DIR:-/var/lib/orchestrator-oci}/env"

say "setting up etcd and protoc (the cluster store)"
./scripts/setup-cluster.sh

say "building orchestratord and orchestrator-cli (release)"
cargo build --release --locked -p orchestratord --bin orchestratord -p orchestrator_cli --bin orchestrator-cli
target="${CARGO_TARGET_DIR:-target}/release"
cli="$target/orchestrator-cli"

mkdir -p "$state"
if running; then
  say "orchestratord already running (pid $(cat "$pidfile")) on $server"
else
  say "starting orchestratord on $server (data dir $state/data, log $state/orchestratord.log)"
  nohup "$target/orchestratord" --listen "127.0.0.1:${port}" --data-dir "$state/data" \
    --runtime-binary "$ORCHESTRATOR_YOUKI" >"$state/orchestratord.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    "$cli" cluster info >/dev/null 2>&1 && break
    running || { cat "$state/orchestratord.log" >&2; fail "orchestratord exited; its log is above"; }
    sleep 0.1
  done
  "$cli" cluster info >/dev/null || fail "orchestratord did not answer on $server; see $state/orchestratord.log"
fi

say "deploying examples/web.yaml and examples/apps.yaml (real containers, image pulled from $ORCHESTRATOR_TEST_REGISTRY)"
"$cli" workload apply -f examples/web.yaml --wait --timeout 120s
"$cli" workload apply -f examples/apps.yaml --wait --timeout 120s
"$cli" workload list
"$cli" instance list --workload web -o wide
web_port=$("$cli" instance list --workload web -o json | sed -n 's/.*"host_port": \([0-9]*\).*/\1/p' | head -1)
say "GET http://127.0.0.1:$web_port/ (a web replica, on its dynamic host port):"
curl -fsS "http://127.0.0.1:$web_port/"
echo
say "the cluster is up. Try:"
cat <<HELP
    export ORCHESTRATOR_SERVER=$server
    $cli workload describe web
    $cli instance logs \$($cli instance list --workload api -o json | sed -n 's/.*"id": "\(api-[^"]*\)".*/\1/p' | head -1) -f
    $cli workload describe api
    $cli workload scale api --replicas 8 --wait
    $cli events --workload api
    $cli workload create -f examples/invalid.yaml     # every problem, with its field path
    $cli node describe \$($cli node list -o json | sed -n 's/.*"id": "\\(.*\\)".*/\\1/p' | head -1)
    ./scripts/quickstart.sh stop      # containers keep running; \`down\` deletes the workloads first
HELP
