#!/usr/bin/env bash
# Sets up this machine for REAL containers: the youki runtime (with cgroup support), a local image
# registry, a test image in it and a busybox rootfs for runtime tests. Debian/Ubuntu, run as root.
#
#   ./scripts/setup-oci.sh          install / start / build whatever is missing, verify, print a summary
#   ./scripts/setup-oci.sh stop     stop the registry started here
#
# Idempotent; safe to run again (a second run only checks, and runs one trivial container).
# Everything listens on 127.0.0.1. State lives in ${ORCHESTRATOR_OCI_DIR:-/var/lib/orchestrator-oci}:
#   busybox-rootfs/      plain rootfs directory (busybox-static plus applet symlinks) for runtime tests
#   busybox-oci/         OCI image layout the test image was built in (tag 1)
#   registry/            config.yml, data/ (storage), registry.log, registry.pid
#   env                  shell exports of the paths and references below, for tests to source
#
# Nothing is ever skipped: whatever is missing and cannot be installed fails the run, with or without
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

state="${ORCHESTRATOR_OCI_DIR:-/var/lib/orchestrator-oci}"
registry_addr=127.0.0.1:5000
registry_url="http://$registry_addr"
image_repo=demo/busybox
image_tag=1
image_ref="$registry_addr/$image_repo:$image_tag"
youki_version=0.7.0
rootfs="$state/busybox-rootfs"
layout="$state/busybox-oci"
regdir="$state/registry"
regpid="$regdir/registry.pid"
check_parent=orchestrator-setup-check   # cgroup parent of the verification container

registry_running() { [ -f "$regpid" ] && kill -0 "$(cat "$regpid")" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  if registry_running; then
    say "stopping the registry (pid $(cat "$regpid"))"
    kill -TERM "$(cat "$regpid")"
    for _ in $(seq 1 50); do registry_running || break; sleep 0.1; done
    rm -f "$regpid"
  else
    say "no registry started by this script is running"
  fi
  exit 0
fi
[ $# -eq 0 ] || fail "usage: $0 [stop]"

[ "$(id -u)" = 0 ] || fail "run as root: installing packages, youki and creating cgroups need it"
mkdir -p "$state"

# --- 1. packages ----------------------------------------------------------------------------------
# libseccomp-dev + pkg-config: to build youki with seccomp; busybox-static: the test rootfs;
# umoci + skopeo: build and push the test image; docker-registry: the local registry; jq: edit config.json;
# libssl-dev (+ pkg-config): the system OpenSSL that registry pulls over HTTPS link to (reqwest native-tls).
packages=(libseccomp-dev pkg-config busybox-static umoci skopeo docker-registry jq curl libssl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || fail "apt-get not found; install these packages: ${missing[*]}"
  say "installing packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# --- 2. youki -------------------------------------------------------------------------------------
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$cargo_bin:"*) ;; *) export PATH="$PATH:$cargo_bin" ;; esac
# youki panics when its stdout closes early (`| head`): capture its whole output first.
version_of() {
  local out
  out=$("$1" --version 2>/dev/null) || return 0
  sed -n 's/^youki version:\{0,1\} *\([^ ]*\).*/\1/p' <<<"$out" | head -1
}
find_youki() {
  youki=""
  for candidate in "$(command -v youki || true)" "$cargo_bin/youki"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(version_of "$candidate")" = "$youki_version" ]; then
      youki="$candidate"
      return 0
    fi
  done
  return 1
}
install_youki() {
  command -v cargo >/dev/null || fail "cargo not found: install Rust with https://rustup.rs (or run scripts/quickstart.sh)"
  command -v cc >/dev/null || fail "no C compiler (cc): apt-get install gcc"
  say "building youki $youki_version with cgroup v1/v2, systemd and seccomp support (about 6.5 min)"
  # A plain `cargo install youki` has NO cgroup support ("v1 cgroup feature is required").
  cargo install youki --version "$youki_version" --locked --features v1,v2,systemd,seccomp "$@"
  # Prefer the binary just built over another youki $youki_version earlier on PATH.
  if [ "$(version_of "$cargo_bin/youki")" = "$youki_version" ]; then
    youki="$cargo_bin/youki"
  else
    find_youki || fail "youki $youki_version is still not found after cargo install (looked on PATH and in $cargo_bin)"
  fi
}
find_youki || install_youki

# Verification: create, start and delete a trivial container from the busybox rootfs (below), in a
# cgroup under /$check_parent, and check its output.
make_rootfs() {
  local busybox=/bin/busybox
  [ -x "$busybox" ] || fail "$busybox not found (Debian package busybox-static)"
  # ldd succeeds only on dynamic executables; the rootfs has no libraries.
  if ldd "$busybox" >/dev/null 2>&1; then fail "$busybox is not statically linked (is busybox-static installed?)"; fi
  if [ -x "$rootfs/bin/busybox" ] && cmp -s "$busybox" "$rootfs/bin/busybox"; then
    return 0
  fi
  say "creating the busybox rootfs in $rootfs"
  local tmp="$rootfs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,etc,root,var/www}
  chmod 1777 "$tmp/tmp"
  cp "$busybox" "$tmp/bin/busybox"
  local applets
  applets="$("$busybox" --list)"
  for a in sh sleep echo true false httpd cat ls env id hostname ps kill mkdir rm touch wget nc printf test; do
    if grep -qx "$a" <<<"$applets"; then ln -s busybox "$tmp/bin/$a"; fi
  done
  for a in sh sleep echo true httpd cat ls; do
    [ -L "$tmp/bin/$a" ] || fail "busybox has no '$a' applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
  rm -rf "$rootfs"
  mv "$tmp" "$rootfs"
}
make_rootfs

cgroup_cleanup() {
  local d
  for d in /sys/fs/cgroup/*/"$check_parent" /sys/fs/cgroup/"$check_parent"; do
    [ -d "$d" ] || continue
    find "$d" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
}

# Runs in a subshell (its EXIT trap cleans up); prints what went wrong and returns non-zero on failure.
verify_youki() (
  dir="$(mktemp -d /tmp/orchestrator-oci-check.XXXXXX)"
  id="orchestrator-setup-check-$$"
  # shellcheck disable=SC2064
  trap "'$youki' delete --force '$id' >/dev/null 2>&1 || true; cgroup_cleanup; rm -rf '$dir'" EXIT
  mkdir -p "$dir/bundle"
  (cd "$dir/bundle" && "$youki" spec >/dev/null) || { echo "youki spec failed"; return 1; }
  jq --arg root "$rootfs" --arg cg "/$check_parent/$id" \
    '.process.terminal = false | .process.args = ["echo", "orchestrator-setup-check-ok"]
     | .root = {path: $root, readonly: true} | .linux.cgroupsPath = $cg' \
    "$dir/bundle/config.json" >"$dir/config.json" || { echo "cannot edit config.json with jq"; return 1; }
  mv "$dir/config.json" "$dir/bundle/config.json"
  if ! "$youki" --log "$dir/youki.log" --log-format json create --bundle "$dir/bundle" "$id" \
      </dev/null >"$dir/stdout" 2>"$dir/stderr"; then
    echo "youki create failed:"; cat "$dir/stderr" "$dir/youki.log" 2>/dev/null; return 1
  fi
  "$youki" start "$id" >/dev/null 2>>"$dir/stderr" || { echo "youki start failed:"; cat "$dir/stderr" "$dir/youki.log"; return 1; }
  status=""
  for _ in $(seq 1 100); do
    status="$("$youki" state "$id" 2>/dev/null | jq -r .status 2>/dev/null || true)"
    [ "$status" = stopped ] && break
    sleep 0.05
  done
  [ "$status" = stopped ] || { echo "the container did not stop (status '$status')"; return 1; }
  "$youki" delete "$id" 2>>"$dir/stderr" || { echo "youki delete failed:"; cat "$dir/stderr"; return 1; }
  out="$(cat "$dir/stdout")"
  [ "$out" = orchestrator-setup-check-ok ] || { echo "unexpected container output: '$out'"; cat "$dir/stderr"; return 1; }
)

say "checking youki ($youki): create + start + delete a busybox container"
# youki now and then fails to seal /proc/self/exe (EBUSY) when another youki runs at that moment;
# the runtime's wrapper repeats such a run, and so does this check (up to 3 tries).
verify_youki_retrying() {
  local report
  for _ in 1 2 3; do
    if report="$(verify_youki 2>&1)"; then return 0; fi
    grep -q 'failed to seal /proc/self/exe' <<<"$report" || break
    sleep 0.2
  done
  echo "$report"
  return 1
}
if ! report="$(verify_youki_retrying 2>&1)"; then
  if grep -q 'cgroup feature is required' <<<"$report"; then
    # A youki 0.7.0 built without the cgroup features: rebuild it with them.
    say "youki at $youki has no cgroup support; rebuilding it"
    install_youki --force
    report="$(verify_youki_retrying 2>&1)" || fail "youki $youki cannot run a container: $report"
  else
    fail "youki $youki cannot run a container: $report"
  fi
fi

# --- 3. local registry ----------------------------------------------------------------------------
registry_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$registry_url/v2/")" = 200 ]; }
if registry_answers; then
  if registry_running; then say "registry already running (pid $(cat "$regpid")) on $registry_url"
  else say "a registry already answers on $registry_url (not started by this script)"; fi
else
  if ss -Hltn "sport = :${registry_addr##*:}" 2>/dev/null | grep -q .; then
    fail "something listens on $registry_addr but does not answer $registry_url/v2/ like a registry"
  fi
  command -v docker-registry >/dev/null || fail "docker-registry not found (Debian package docker-registry)"
  mkdir -p "$regdir/data"
  cat >"$regdir/config.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $regdir/data
  delete:
    enabled: true
http:
  addr: $registry_addr
YAML
  say "starting the registry on $registry_url (storage $regdir/data, log $regdir/registry.log)"
  nohup setsid docker-registry serve "$regdir/config.yml" >>"$regdir/registry.log" 2>&1 </dev/null &
  echo $! >"$regpid"
  for _ in $(seq 1 100); do
    registry_answers && break
    registry_running || { tail -n 20 "$regdir/registry.log" >&2; fail "the registry exited; the end of its log is above"; }
    sleep 0.1
  done
  registry_answers || fail "the registry does not answer on $registry_url/v2/; see $regdir/registry.log"
  # Record the pid of the process that actually listens (setsid forks when it leads a process group).
  listener="$(ss -Hltnp "sport = :${registry_addr##*:}" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)"
  [ -n "$listener" ] && echo "$listener" >"$regpid"
fi

# --- 4. test image --------------------------------------------------------------------------------
manifest_types='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# Tag `nocmd`: the same image without a command, for the "no command" bad-input tests.
tag_present() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Accept: $manifest_types" \
    "$registry_url/v2/$image_repo/manifests/$1")" = 200 ]
}
image_present() { tag_present "$image_tag" && tag_present nocmd; }
if image_present; then
  say "image $image_ref already in the registry"
else
  if [ ! -f "$layout/index.json" ] || ! umoci stat --image "$layout:nocmd" >/dev/null 2>&1; then
    say "building the image in the OCI layout $layout"
    tmp="$layout.tmp.$$"
    rm -rf "$tmp"
    umoci init --layout "$tmp"
    umoci new --image "$tmp:$image_tag"
    umoci insert --image "$tmp:$image_tag" "$rootfs" /
    umoci config --image "$tmp:$image_tag" --config.cmd sh --config.workingdir / \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --author orchestrator-setup-oci
    umoci config --image "$tmp:$image_tag" --tag nocmd --clear=config.cmd
    umoci gc --layout "$tmp"
    rm -rf "$layout"
    mv "$tmp" "$layout"
  fi
  say "pushing $image_ref"
  policy=()
  [ -f /etc/containers/policy.json ] || policy=(--insecure-policy)
  skopeo "${policy[@]}" copy --quiet --dest-tls-verify=false "oci:$layout:$image_tag" "docker://$image_ref"
  skopeo "${policy[@]}" copy --quiet --dest-tls-verify=false "oci:$layout:nocmd" "docker://$registry_addr/$image_repo:nocmd"
  image_present || fail "pushed $image_ref but the registry does not serve its manifest"
fi

# --- 5. summary -----------------------------------------------------------------------------------
env_text="export ORCHESTRATOR_YOUKI=$youki
export ORCHESTRATOR_TEST_REGISTRY=$registry_addr
export ORCHESTRATOR_TEST_IMAGE=$image_ref
export ORCHESTRATOR_TEST_ROOTFS=$rootfs"
[ "$(cat "$state/env" 2>/dev/null)" = "$env_text" ] || printf '%s\n' "$env_text" >"$state/env"

say "ready"
cat <<SUMMARY
    youki:     $youki (youki version: $(version_of "$youki"))
    registry:  $registry_url (state $regdir)
    image:     $image_ref (OCI layout $layout)
    rootfs:    $rootfs
    env file:  $state/env   (source it for ORCHESTRATOR_YOUKI, _TEST_REGISTRY, _TEST_IMAGE, _TEST_ROOTFS)
SUMMARY
