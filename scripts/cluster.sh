#!/usr/bin/env bash
# A local multi-node cluster on this machine: etcd on loopback and N orchestratord members sharing
# it, each with its own port, data dir, youki state, cgroup parent and host-port range (what
# separate machines would have). Real containers through youki, as the quick start.
#
#   ./scripts/cluster.sh up [N]      set up (youki, registry, etcd, protoc), build, start etcd and N
#                                    members (default 3) on 127.0.0.1:8081.., deploy examples/apps.yaml
#   ./scripts/cluster.sh status      cluster info and the instances, from member 1
#   ./scripts/cluster.sh kill I      kill -9 member I (gossip finds it dead: its replicas move within ~2 s)
#   ./scripts/cluster.sh start I     start member I again (it rejoins; its stale containers go)
#   ./scripts/cluster.sh down        delete the workloads, stop the members and etcd, remove the state
#
# State lives in .orchestrator/cluster/ (etcd data, one data dir and log per member). Needs root
# (apt, cgroups). Members gossip (a killed one is noticed in about 1.5 s) and use --lease-ttl 3.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

state=.orchestrator/cluster
etcd_port="${ORCHESTRATOR_ETCD_PORT:-23790}"
etcd_url="http://127.0.0.1:${etcd_port}"
token_file="$state/cluster-token"
target="${CARGO_TARGET_DIR:-target}/release"
cli="$target/orchestrator-cli"
export ORCHESTRATOR_SERVER=http://127.0.0.1:8081

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
member_count() { cat "$state/members" 2>/dev/null || echo 3; }

start_member() {
  local i=$1 port=$((8080 + $1))
  local first=$((20000 + ($1 - 1) * 1000))
  mkdir -p "$state/n$i"
  alive "$state/n$i.pid" && { say "member $i already runs (pid $(cat "$state/n$i.pid"))"; return; }
  # shellcheck disable=SC1091
  . "${ORCHESTRATOR_OCI_DIR:-/var/lib/orchestrator-oci}/env"
  nohup "$target/orchestratord" --etcd "$etcd_url" --cluster-token "$(cat "$token_file")" \
    --lease-ttl 3 --listen "127.0.0.1:$port" --node-name "n$i" --data-dir "$state/n$i" \
    --cgroup-parent "orchestrator-n$i" --dynamic-ports "$first-$((first + 999))" \
    --runtime-binary "$ORCHESTRATOR_YOUKI" >"$state/n$i.log" 2>&1 &
  echo $! >"$state/n$i.pid"
  for _ in $(seq 1 100); do
    "$cli" --server "http://127.0.0.1:$port" cluster info >/dev/null 2>&1 && break
    alive "$state/n$i.pid" || { tail -20 "$state/n$i.log" >&2; fail "member $i exited; its log is above"; }
    sleep 0.1
  done
  say "member $i (node n$i) on http://127.0.0.1:$port, log $state/n$i.log"
}

case "${1:-up}" in
  up)
    n="${2:-3}"
    say "setting up youki, the local registry, etcd and protoc"
    ./scripts/setup-oci.sh
    ./scripts/setup-cluster.sh
    say "building orchestratord and orchestrator-cli (release)"
    cargo build --release --locked -p orchestratord --bin orchestratord -p orchestrator_cli --bin orchestrator-cli
    mkdir -p "$state"
    echo "$n" >"$state/members"
    [ -f "$token_file" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$token_file"
    if alive "$state/etcd.pid"; then
      say "etcd already runs on $etcd_url"
    else
      say "starting etcd on $etcd_url"
      nohup "${ORCHESTRATOR_ETCD:-etcd}" --name local --data-dir "$state/etcd" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "http://127.0.0.1:$((etcd_port + 10))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 10))" \
        --initial-cluster "local=http://127.0.0.1:$((etcd_port + 10))" \
        --auto-compaction-retention 1h >"$state/etcd.log" 2>&1 &
      echo $! >"$state/etcd.pid"
      for _ in $(seq 1 50); do
        curl -fsS "$etcd_url/health" >/dev/null 2>&1 && break
        sleep 0.1
      done
    fi
    for i in $(seq 1 "$n"); do start_member "$i"; done
    "$cli" workload apply -f examples/apps.yaml --wait --timeout 120s
    "$cli" cluster info
    "$cli" instance list -o wide
    say "try: ./scripts/cluster.sh kill 2; sleep 3; ./scripts/cluster.sh status"
    ;;
  status)
    "$cli" cluster info
    "$cli" instance list -o wide
    ;;
  kill)
    i="${2:?which member}"
    alive "$state/n$i.pid" || fail "member $i is not running"
    kill -9 "$(cat "$state/n$i.pid")"
    say "killed member $i; its replicas move to the others once gossip finds it dead (~1.5 s), and its watchdog kills its own containers once it is gone for the lease TTL (3 s)"
    ;;
  start)
    start_member "${2:?which member}"
    ;;
  down)
    if alive "$state/n1.pid"; then
      for w in $("$cli" workload list -o json | jq -r '.items[].workload.name'); do
        "$cli" workload delete "$w"
      done
      say "waiting for the containers to stop"
      for _ in $(seq 1 300); do
        [ "$("$cli" instance list -o json | jq '.items | length')" = 0 ] && break
        sleep 0.1
      done
    fi
    for i in $(seq 1 "$(member_count)"); do
      if alive "$state/n$i.pid"; then kill -TERM "$(cat "$state/n$i.pid")"; fi
    done
    for i in $(seq 1 "$(member_count)"); do
      for _ in $(seq 1 100); do alive "$state/n$i.pid" || break; sleep 0.1; done
    done
    if alive "$state/etcd.pid"; then kill -TERM "$(cat "$state/etcd.pid")"; sleep 0.5; fi
    # The members' parent cgroups, empty now (cgroup v1: one per hierarchy; v2: one).
    for i in $(seq 1 "$(member_count)"); do
      for dir in /sys/fs/cgroup/*/"orchestrator-n$i" /sys/fs/cgroup/"orchestrator-n$i"; do
        [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
      done
    done
    rm -rf "$state"
    say "cluster removed"
    ;;
  *)
    fail "usage: $0 up [N] | status | kill I | start I | down"
    ;;
esac
