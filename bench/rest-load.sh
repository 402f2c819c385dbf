#!/usr/bin/env bash
# REST load on loopback against a fresh orchestratord (redb store in a temp dir, simulated runtime).
#
# Two tools:
#   * the open-loop generator `orchestrator_api/daemon/benches/rest_load.rs` at a fixed rate (the target
#     is stated at a rate: p99 <= 10 ms at >= 5,000 req/s with 200 connections);
#   * wrk (closed loop, Debian package) for the saturation throughput of the same mix.
# Usage: [RATE=5000] [CONNECTIONS=200] [DURATION=20] [MIX=1,8,1] [SEEDS=100] bench/rest-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${RATE:-5000}"; conns="${CONNECTIONS:-200}"; duration="${DURATION:-20}"
mix="${MIX:-1,8,1}"; seeds="${SEEDS:-100}"
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
cargo build --release --locked -q -p orchestratord --bin orchestratord -p orchestrator_cli --bin orchestrator-cli
cargo bench --locked -q -p orchestratord --bench rest_load --no-run 2>/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/orchestratord" --listen "127.0.0.1:$port" --data-dir "$dir/data" --runtime simulated \
  --node-name bench --cpu-millicores 100000000 --memory-mb 100000000 --log-format json 2>"$dir/log" &
pid=$!
cli="$bin/orchestrator-cli --server http://127.0.0.1:$port"
until $cli cluster info >/dev/null 2>&1; do sleep 0.1; done
for i in $(seq 0 $((seeds - 1))); do
  printf 'name: seed-%d\nreplicas: 1\ncontainers:\n  - name: main\n    image: bench/app:1\n    resources: {cpu_millicores: 10, memory_mb: 8}\n---\n' "$i"
done | sed '$d' > "$dir/seeds.yaml"
$cli workload create -f "$dir/seeds.yaml" --wait >/dev/null
echo "server pid $pid on 127.0.0.1:$port; $seeds seed workloads; $(nproc) cores shared by server and load generator"

cargo bench --locked -q -p orchestratord --bench rest_load -- --server "127.0.0.1:$port" \
  --rate "$rate" --connections "$conns" --duration "$duration" --mix "$mix" --seeds "$seeds"

echo "wrk -t2 -c$conns -d${duration}s (closed loop, saturation), same mix:"
MIX="$mix" SEEDS="$seeds" wrk -t2 -c"$conns" -d"${duration}s" --timeout 5s --latency -s bench/rest-mix.lua \
  "http://127.0.0.1:$port" | tail -5
echo "server RSS after the runs: $(awk '/^VmRSS/{printf "%.1f MB", $2/1024}' /proc/$pid/status)," \
  "workloads stored: $($cli cluster info -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["workloads"])')"
