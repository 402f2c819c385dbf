#!/usr/bin/env python3
"""Cluster benchmarks with real daemons on one etcd (simulated runtime), like the test kit's
TestCluster: leader kill -> new leader and a change reconciled, node loss -> replicas Running
elsewhere (with gossip, the default, or lease-only), false failure detections under CPU load,
and RSS of the daemons of a 3-node cluster idle and with 10,000 instances.

Usage (after `cargo build --release -p orchestratord`; etcd on the PATH or $ORCHESTRATOR_ETCD):
  bench/cluster.py failover --ttl 2 --runs 3
  bench/cluster.py node-kill --runs 10 [--ttl 5] [--no-gossip]
  bench/cluster.py false-positives --minutes 10 [--burn 2]
  bench/cluster.py rss [--instances 10000]
The release binary is taken from $CARGO_TARGET_DIR (default target)/release/orchestratord.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
DAEMON = os.path.join(TARGET, "release", "orchestratord")
ETCD = os.environ.get("ORCHESTRATOR_ETCD") or shutil.which("etcd")
TOKEN = "bench-cluster-token"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, ttl, gossip=True):
        self.dir = tempfile.mkdtemp(prefix="cluster-bench-")
        self.ttl = ttl
        self.gossip = gossip
        self.procs = {}
        self.ports = {}
        cport, pport = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        self.etcd = subprocess.Popen(
            [ETCD, "--name=n1", f"--data-dir={self.dir}/etcd",
             f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
             f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
             f"--initial-cluster=n1={peer}", "--max-txn-ops=128"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/etcd.log", "w"))
        deadline = time.time() + 10
        while True:
            try:
                urllib.request.urlopen(self.etcd_url + "/health", timeout=1).read()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def start(self, node):
        port = free_port()
        log = open(f"{self.dir}/{node}.log", "w")
        self.procs[node] = subprocess.Popen(
            [DAEMON, "--listen", f"127.0.0.1:{port}", "--data-dir", f"{self.dir}/{node}",
             "--runtime", "simulated", "--node-name", node,
             "--cpu-millicores", "100000000", "--memory-mb", "100000000",
             "--etcd", self.etcd_url, "--etcd-prefix", "bench", "--cluster-token", TOKEN,
             "--lease-ttl", str(self.ttl)] + ([] if self.gossip else ["--no-gossip"]),
            stdout=log, stderr=log)
        self.ports[node] = port

    def get(self, node, path, timeout=2):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.ports[node]}{path}", timeout=timeout) as r:
                return json.load(r)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def send(self, node, method, path, body):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ports[node]}{path}", method=method,
            data=json.dumps(body).encode(), headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def leader(self, via):
        info = self.get(via, "/api/v1/cluster")
        try:
            return info["membership"]["leader"]["node"]
        except (TypeError, KeyError):
            return None

    def running(self, via, exclude=None):
        """Running instances (as daemon `via` answers), not counting those on `exclude`."""
        count, path = 0, "/api/v1/instances?limit=1000"
        while True:
            page = self.get(via, path)
            if page is None:
                return None
            for i in page["items"]:
                if i["status"] == "Running" and i["node_id"] != exclude:
                    count += 1
            token = page.get("continue")
            if not token:
                return count
            path = f"/api/v1/instances?limit=1000&continue={token}"

    def kill9(self, node):
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()
        del self.procs[node]

    def rss(self, node):
        with open(f"/proc/{self.procs[node].pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def close(self):
        for p in list(self.procs.values()) + [self.etcd]:
            p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait(what, check, timeout=60, every=0.02):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(every)


def web(replicas, cpu=500, memory=64):
    return {"name": "web", "replicas": replicas, "placement": "spread",
            "containers": [{"name": "web", "image": "example/web:1",
                            "resources": {"cpu_millicores": cpu, "memory_mb": memory}}]}


def three(ttl, gossip=True):
    c = Cluster(ttl, gossip)
    for n in ("n1", "n2", "n3"):
        c.start(n)
    for n in ("n1", "n2", "n3"):
        wait(f"{n} names a leader", lambda n=n: c.leader(n))

    def all_ready():
        info = c.get("n1", "/api/v1/cluster")
        return info and sum(m["status"] == "Ready" for m in info["membership"]["members"]) == 3
    wait("3 members Ready", all_ready)
    return c


def failover_once(ttl):
    c = three(ttl)
    try:
        c.send("n1", "POST", "/api/v1/workloads", web(6))
        wait("6 Running", lambda: c.running("n1") == 6)
        leader = c.leader("n1")
        survivors = [n for n in ("n1", "n2", "n3") if n != leader]
        via = survivors[0]
        # Leader kill: time to a new leader, and to a change made right after the kill (scale 6
        # -> 9) reconciled, with the dead leader's replicas replaced: 9 Running on survivors.
        t0 = time.monotonic()
        c.kill9(leader)
        c.send(via, "POST", "/api/v1/workloads/web/scale", {"replicas": 9})
        new = wait("a new leader", lambda: (lambda l: l if l and l != leader else None)(c.leader(via)))
        t_leader = time.monotonic() - t0
        wait("9 Running on the survivors", lambda: c.running(via, exclude=leader) == 9, every=0.02)
        t_reconciled = time.monotonic() - t0
        # Node loss: kill -9 a non-leader with replicas; time until all 9 Running on the last one.
        victim = next(n for n in survivors if n != new)
        t1 = time.monotonic()
        c.kill9(victim)
        wait("9 Running on the last node",
             lambda: c.running(new, exclude=victim) == 9 and c.running(new) == 9)
        t_node = time.monotonic() - t1
        return t_leader, t_reconciled, t_node
    finally:
        c.close()


def node_loss_once(ttl, gossip=True, settle=False):
    """A non-leader killed while the leader lives (the leader's loop is warm). With `settle`,
    after the new leader's grace for missing members (TTL + 2 s): a kill within it is counted
    only at its end, which would hide what gossip or the lease detect."""
    c = three(ttl, gossip)
    try:
        if settle:
            time.sleep(ttl + 2)
        c.send("n1", "POST", "/api/v1/workloads", web(6))
        wait("6 Running", lambda: c.running("n1") == 6)
        leader = c.leader("n1")
        victim = next(n for n in ("n1", "n2", "n3") if n != leader)
        t0 = time.monotonic()
        c.kill9(victim)
        wait("6 Running on the two others", lambda: c.running(leader, exclude=victim) == 6)
        return time.monotonic() - t0
    finally:
        c.close()


def summary(name, values):
    return (f"{name}: median {statistics.median(values):.2f} s, range {min(values):.2f} - "
            f"{max(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")


def failover(args):
    leader, reconciled, node = [], [], []
    for run in range(args.runs):
        a, b, _ = failover_once(args.ttl)
        n = node_loss_once(args.ttl)
        print(f"run {run + 1} (TTL {args.ttl} s): new leader named {a:.2f} s, scale reconciled "
              f"{b:.2f} s; node loss -> 6 Running elsewhere {n:.2f} s", flush=True)
        leader.append(a)
        reconciled.append(b)
        node.append(n)
    print(summary(f"TTL {args.ttl} s, leader kill -> new leader named", leader))
    print(summary(f"TTL {args.ttl} s, leader kill -> scale 6->9 reconciled, 9 Running on survivors", reconciled))
    print(summary(f"TTL {args.ttl} s, node kill -> 6 replicas Running on the others", node))


def node_kill(args):
    times = []
    layer = "lease only" if args.no_gossip else "gossip"
    for run in range(args.runs):
        t = node_loss_once(args.ttl, gossip=not args.no_gossip, settle=True)
        print(f"run {run + 1} ({layer}, TTL {args.ttl} s): node kill -> 6 Running elsewhere {t:.2f} s",
              flush=True)
        times.append(t)
    print(summary(f"{layer}, TTL {args.ttl} s, node kill -> its replicas Running elsewhere", times))


def false_positives(args):
    """A 3-node cluster with 6 replicas while `burn` processes keep every core busy: any member
    seen not Ready, any replica moved, or any node taken Down in a log is a false detection."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burn)]
    c = three(args.ttl)
    try:
        c.send("n1", "POST", "/api/v1/workloads", web(6))
        wait("6 Running", lambda: c.running("n1") == 6)

        def placement():
            page = c.get("n1", "/api/v1/instances?limit=1000")
            return sorted((i["id"], i["node_id"], i["status"]) for i in page["items"]) if page else None
        before = wait("the placement", placement)
        not_ready, polls = 0, 0
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            for n in ("n1", "n2", "n3"):
                info = c.get(n, "/api/v1/cluster", timeout=5)
                polls += 1
                if info is None:
                    continue
                bad = [m["node"] for m in info["membership"]["members"] if m["status"] != "Ready"]
                if bad:
                    not_ready += 1
                    print(f"{time.strftime('%H:%M:%S')} {n} sees {bad} not Ready", flush=True)
            time.sleep(0.2)
        after = wait("the placement", placement)
        logs = ""
        for n in ("n1", "n2", "n3"):
            with open(f"{c.dir}/{n}.log") as f:
                logs += f.read()
        downs = logs.count("node down: deleting its assignments")
        moved = before != after
        print(f"{args.minutes} min, {args.burn} busy-loop processes on {os.cpu_count()} cores: "
              f"{polls} membership polls, {not_ready} saw a member not Ready; "
              f"nodes fenced as Down in the logs: {downs}; replicas moved: {'yes' if moved else 'no'}")
    finally:
        c.close()
        for b in burners:
            b.kill()
            b.wait()


def rss(args):
    c = three(args.ttl)
    try:
        leader = c.leader("n1")
        follower = next(n for n in ("n1", "n2", "n3") if n != leader)
        time.sleep(3)
        for n in (leader, follower):
            r, h = c.rss(n)
            print(f"idle: {n} ({'leader' if n == leader else 'follower'}) RSS {r:.1f} MB (peak {h:.1f} MB)")
        per, total = 500, args.instances
        t0 = time.monotonic()
        for w in range(total // per):
            body = web(per, cpu=1, memory=1)
            body["name"] = f"w{w:03d}"
            c.send(leader, "POST", "/api/v1/workloads", body)
        wait(f"{total} Running", lambda: c.running(leader) == total, timeout=600, every=1)
        print(f"{total} instances Running over 3 nodes after {time.monotonic() - t0:.1f} s")
        for label in ("all Running", "after 5 s settled"):
            if label != "all Running":
                time.sleep(5)
            for n in (leader, follower):
                r, h = c.rss(n)
                print(f"{label}: {n} ({'leader' if n == leader else 'follower'}) RSS {r:.1f} MB (peak {h:.1f} MB)")
    finally:
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("failover")
    f.add_argument("--ttl", type=int, default=2)
    f.add_argument("--runs", type=int, default=3)
    k = sub.add_parser("node-kill")
    k.add_argument("--ttl", type=int, default=5)
    k.add_argument("--runs", type=int, default=10)
    k.add_argument("--no-gossip", action="store_true")
    fp = sub.add_parser("false-positives")
    fp.add_argument("--ttl", type=int, default=5)
    fp.add_argument("--minutes", type=float, default=10)
    fp.add_argument("--burn", type=int, default=os.cpu_count())
    r = sub.add_parser("rss")
    r.add_argument("--ttl", type=int, default=2)
    r.add_argument("--instances", type=int, default=10_000)
    args = p.parse_args()
    if not ETCD or not os.path.exists(DAEMON):
        sys.exit(f"needs etcd ({ETCD}) and {DAEMON} (cargo build --release -p orchestratord)")
    {"failover": failover, "node-kill": node_kill, "false-positives": false_positives,
     "rss": rss}[args.what.replace("_", "-")](args)


if __name__ == "__main__":
    main()
