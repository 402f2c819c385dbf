#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/ (committed).

Run from anywhere: python3 fuzz/make_seeds.py. Needs only Python 3's standard library (and the
`zstd` command, when present, for a zstd-compressed layer). The seeds are starting points: the
fuzzer mutates them, and what it finds interesting goes to fuzz/corpus/<target>/ (minimized and
committed; scripts/fuzz.sh runs on both).

* manifest: the example manifests (one file per YAML document) and the same in JSON, plus
  hand-written edge cases.
* image_reference: references of every shape the parser knows.
* page_token: a resource selector byte, then a token (valid, re-spelled, of another resource).
* layer_unpack: small tars, most of them malicious: `..`, absolute paths, symbolic links
  leading out of the root (relative, absolute, chained), hard links to a host file, device
  nodes, GNU long names and PAX headers (and ones that declare a huge size, one of them
  1 GiB in a zstd layer), gzip and zstd.
* layer_entries takes structured input (`arbitrary`): it starts from an empty corpus.
"""

import base64
import gzip
import io
import json
import pathlib
import shutil
import subprocess
import tarfile

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
# The jail of the layer targets (fuzz_targets/common/jail.rs): a fixed absolute path outside
# the root, with a file in it, for layers to aim at.
OUTSIDE = "/tmp/orchestrator-fuzz/outside"


def target_dir(name):
    d = SEEDS / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def manifests():
    d = target_dir("manifest")
    n = 0
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in path.read_text().split("\n---\n"):
            (d / f"{path.stem}-{n}.yaml").write_text(doc)
            n += 1
    full = {
        "name": "web",
        "replicas": 3,
        "labels": {"app": "web", "tier": "front.end_1"},
        "node_selector": {"zone": "a"},
        "restart_policy": "OnFailure",
        "placement": "spread",
        "containers": [
            {
                "name": "httpd",
                "image": "127.0.0.1:5000/demo/busybox:1",
                "image_pull_policy": "Always",
                "command": ["sh", "-c", "httpd -f"],
                "args": ["-v"],
                "env": {"GREETING": "hello"},
                "ports": [{"container_port": 8080, "host_port": 0, "protocol": "tcp"}],
                "resources": {"cpu_millicores": 100, "memory_mb": 32},
                "user": "1000:1000",
                "read_only_root": True,
            },
            {"name": "side", "image": "busybox@sha256:" + "a" * 64},
        ],
    }
    minimal = {"name": "w", "replicas": 1, "containers": [{"name": "a", "image": "i"}]}
    invalid = {
        "name": "Bad_Name",
        "replicas": 100000,
        "containers": [
            {"name": "a", "image": "", "ports": [{"container_port": 0}, {"container_port": 0}]},
            {"name": "a", "image": "x:y:z", "resources": {"memory_mb": -1}},
        ],
    }
    for name, doc in [("full", full), ("minimal", minimal), ("invalid", invalid)]:
        (d / f"{name}.json").write_text(json.dumps(doc))
    (d / "flow.yaml").write_text(
        "name: w\nreplicas: 1\ncontainers: [{name: a, image: i, env: {A: &x '1', B: *x}}]\n"
    )
    (d / "anchors.yaml").write_text(
        "a: &a [*a]\nname: w\nreplicas: 0x10\ncontainers:\n  - !tag {name: a, image: i}\n"
    )
    (d / "trailing.json").write_text(json.dumps(minimal) + " trailing")
    (d / "unicode.json").write_text('{"name":"w\\u00e9","replicas":1,"containers":[]}')


def references():
    d = target_dir("image_reference")
    refs = [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:1",
        "registry-1.docker.io/demo/app",
        "ghcr.io/owner/repo/sub:v1.2.3",
        "127.0.0.1:5000/demo/busybox:1",
        "localhost/app",
        "localhost:5000/a/b/c",
        "[::1]:5000/app:tag",
        "example.com:443/ns/app@sha256:" + "0123456789abcdef" * 4,
        "app:tag@sha256:" + "f" * 64,
        "app@sha512:" + "a" * 128,
        "UPPER/case",
        "a/../b",
        "a//b",
        "host:port/app",
        "app:" + "t" * 129,
        "a" * 300,
        "app:tag:tag",
        "sha256:" + "a" * 64,
    ]
    for i, r in enumerate(refs):
        (d / f"ref-{i:02}").write_text(r)


def page_tokens():
    d = target_dir("page_token")
    b64 = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
    tokens = [
        (0, b64("workloads:web")),
        (1, b64("instances:wl-id/inst 1")),
        (2, b64("nodes:n")),
        (3, b64("events:42")),
        (2, "bm9kZXM6bh"),  # "nodes:n" with unused bits set
        (0, b64("nodes:n")),  # another resource's token
        (1, b64("instances:") + "=="),
        (3, "%%"),
        (0x80, "\x05\x00\x00\x00\x00\x00\x00\x00" + b64("workloads:")),
    ]
    for i, (sel, text) in enumerate(tokens):
        (d / f"token-{i:02}").write_bytes(bytes([sel]) + text.encode("latin-1"))


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    # Without the padding to tarfile's 10 KiB record: the two end blocks are enough.
    raw = buf.getvalue()
    end = len(raw)
    while end >= 512 and not any(raw[end - 512:end]):
        end -= 512
    return raw[:end] + bytes(1024)


def member(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.devmajor, info.devminor = dev
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def layers():
    d = target_dir("layer_unpack")
    F, D, S, H = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    cases = {
        "plain": [member("etc", D, mode=0o755), member("etc/passwd", F, b"root:x:0:0::/:/bin/sh\n"),
                  member("bin", S, link="usr/bin"), member("usr/bin/sh", F, b"#!", mode=0o755)],
        "dotdot": [member("../evil", F, b"x")],
        "dotdot-deep": [member("a/../../evil", F, b"x")],
        "absolute": [member("/etc/evil", F, b"x")],
        "slash-root": [member("/", D, mode=0o751), member("./a", F, b"x")],
        "symlink-up": [member("up", S, link="../../.."), member("up/evil", F, b"x")],
        "symlink-abs-outside": [member("o", S, link=OUTSIDE), member("o/evil", F, b"x"),
                                member("o/canary", F, b"overwritten")],
        "symlink-chain": [member("a", S, link="/"), member("b", S, link="a"),
                          member("b" + OUTSIDE + "/evil", F, b"x")],
        "symlink-to-canary": [member("c", S, link=OUTSIDE + "/canary"), member("c", F, b"x")],
        "symlink-loop": [member("l1", S, link="l2"), member("l2", S, link="l1"),
                         member("l1/x", F, b"x")],
        "hardlink-canary": [member("h", H, link=OUTSIDE.lstrip("/") + "/canary")],
        "hardlink-through-symlink": [member("o", S, link=OUTSIDE), member("h", H, link="o/canary")],
        "hardlink-dotdot": [member("f", F, b"x"), member("h", H, link="../outside/canary")],
        "devices": [member("dev/null", tarfile.CHRTYPE, dev=(1, 3)),
                    member("dev/sda", tarfile.BLKTYPE, dev=(8, 0)),
                    member("dev/fifo", tarfile.FIFOTYPE), member("dev/fifo", F, b"x")],
        "whiteouts": [member("a/keep", F, b"k"), member("a/.wh.gone", F),
                      member("a/.wh..wh..opq", F), member("a/.wh..", F)],
        "long-names": [member("d/" + "n" * 200, F, b"x"),
                       member("s", S, link="t" * 300)],
        "modes": [member("setuid", F, b"x", mode=0o4755), member("locked", D, mode=0),
                  member("locked/f", F, b"x", mode=0)],
    }
    for name, members in cases.items():
        (d / f"{name}.tar").write_bytes(tar_bytes(members))
    (d / "pax.tar").write_bytes(tar_bytes(
        [member("p/" + "q" * 150, F, b"pax"), member("l", S, link="../" * 60)],
        fmt=tarfile.PAX_FORMAT))
    (d / "ustar.tar").write_bytes(tar_bytes([member("u/" * 60 + "f", F, b"x")],
                                            fmt=tarfile.USTAR_FORMAT))
    # A GNU long name header that declares 1 GiB but holds a few bytes: the reader must not
    # trust the declared size.
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = 1 << 30
    header = info.tobuf(tarfile.GNU_FORMAT)
    (d / "huge-longname.tar").write_bytes(header + b"name\0" + b"\0" * 507)
    plain = tar_bytes(cases["plain"] + cases["symlink-up"])
    (d / "plain.tar.gz").write_bytes(gzip.compress(plain, mtime=0))
    if shutil.which("zstd"):
        zst = subprocess.run(["zstd", "-q", "-c", "-3"], input=plain, capture_output=True,
                             check=True).stdout
        (d / "plain.tar.zst").write_bytes(zst)
        # A GNU long name of 1 GiB in 33 KB of zstd: before the unpacker bounded the headers
        # before an entry to 1 MiB, it allocated the whole name (libFuzzer: out-of-memory,
        # malloc(536870912) with -malloc_limit_mb=512).
        info = tarfile.TarInfo("././@LongLink")
        info.type = tarfile.GNUTYPE_LONGNAME
        info.size = 1 << 30
        with open(d / "longname-1GiB.tar.zst", "wb") as out:
            zstd = subprocess.Popen(["zstd", "-q", "-19", "-c"], stdin=subprocess.PIPE,
                                    stdout=out)
            zstd.stdin.write(info.tobuf(tarfile.GNU_FORMAT))
            chunk = bytes(1 << 20)
            for _ in range(1 << 10):
                zstd.stdin.write(chunk)
            zstd.stdin.close()
            assert zstd.wait() == 0


if __name__ == "__main__":
    manifests()
    references()
    page_tokens()
    layers()
    for d in sorted(SEEDS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")
