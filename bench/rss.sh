#!/usr/bin/env bash
# orchestratord memory: resident set size idle, then with 10,000 instances (simulated runtime).
# Usage: bench/rss.sh   (builds release binaries; prints RSS and peak RSS in MB)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p orchestratord --bin orchestratord -p orchestrator_cli --bin orchestrator-cli
bin="${CARGO_TARGET_DIR:-target}/release"
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ORCHESTRATOR_SERVER="http://127.0.0.1:$port"
"$bin/orchestratord" --listen "127.0.0.1:$port" --data-dir "$dir/data" --runtime simulated \
  --node-name bench --cpu-millicores 100000000 --memory-mb 100000000 2>"$dir/log" &
pid=$!
until "$bin/orchestrator-cli" cluster info >/dev/null 2>&1; do sleep 0.1; done
rss() { awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "RSS %.1f MB (peak %.1f MB)", r/1024, h/1024}' /proc/$pid/status; }
sleep 2
echo "idle, no workloads: $(rss)"

workloads=${WORKLOADS:-20}; replicas=${REPLICAS:-500}
for i in $(seq 1 "$workloads"); do
  printf 'name: w%03d\nreplicas: %d\ncontainers:\n  - name: main\n    image: bench/app:1\n    resources: {cpu_millicores: 1, memory_mb: 1}\n' "$i" "$replicas"
  echo '---'
done | sed '$d' > "$dir/all.yaml"
start=$(date +%s.%N)
"$bin/orchestrator-cli" workload create -f "$dir/all.yaml" --wait --timeout 10m >/dev/null 2>&1
end=$(date +%s.%N)
total=$((workloads * replicas))
running=$("$bin/orchestrator-cli" cluster info -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"].get("Running",0))')
echo "$total instances requested, $running Running after $(echo "$end - $start" | bc) s: $(rss)"
sleep 5
echo "after 5 s settled: $(rss)"
