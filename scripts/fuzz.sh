#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of fuzz/ for SECONDS each (default 600), or until
# 1,000,000 executions, whichever comes first; exits non-zero if any target crashed (a panic,
# an escape from the unpacker's root, a timeout, an allocation past the limits).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets: manifest image_reference page_token layer_unpack layer_entries (see
# docs/security.md, "Fuzzing"). Each run starts from the committed corpus (fuzz/corpus/TARGET)
# and the seeds (fuzz/seeds/TARGET); new inputs go to TARGET_DIR/corpus-new/TARGET, or into
# fuzz/corpus/TARGET itself with FUZZ_UPDATE_CORPUS=1 (then minimize it: see fuzz/README.md).
# Crashes are saved in fuzz/artifacts/TARGET/ (reproduce: cargo fuzz run TARGET FILE).
#
# Builds: a run of 60 s or more per target builds in release with AddressSanitizer (a cold
# build takes about 10 minutes on 2 cores); a shorter run, the smoke test of scripts/test.sh,
# builds in the dev profile without sanitizer (FUZZ_MODE=asan or FUZZ_MODE=quick chooses).
# The target dir is ${CARGO_TARGET_DIR:-target}/fuzz. cargo-fuzz is installed if missing; it
# needs nightly-only flags, which the stable toolchain accepts with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

seconds="${1:-600}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || fail "SECONDS must be a positive number, got '$seconds'"
shift $(( $# > 0 ? 1 : 0 ))
all_targets=(manifest image_reference page_token layer_unpack layer_entries)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || fail "unknown target '$t' (targets: ${all_targets[*]})"
done

mode="${FUZZ_MODE:-}"
if [ -z "$mode" ]; then
  if [ "$seconds" -ge 60 ]; then mode=asan; else mode=quick; fi
fi
case "$mode" in
  asan) build_flags=(--release --debug-assertions --sanitizer address) ;;
  quick) build_flags=(--dev --sanitizer none) ;;
  *) fail "FUZZ_MODE must be asan or quick, got '$mode'" ;;
esac

target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac

# --- prerequisites ------------------------------------------------------------------------------
command -v cargo >/dev/null || fail "cargo not found: install Rust with https://rustup.rs"
# libfuzzer-sys compiles libFuzzer (C++).
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null ||
  fail "no C++ compiler: libFuzzer needs one (apt-get install g++)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# --- build --------------------------------------------------------------------------------------
logs="$target_dir/logs"
mkdir -p "$logs"
say "building the fuzz targets ($mode) in $target_dir"
start=$SECONDS
build() {
  cargo fuzz build "${build_flags[@]}" --target-dir "$target_dir" "$@" >>"$logs/build.log" 2>&1 || {
    tail -n 40 "$logs/build.log" >&2
    fail "building the fuzz targets failed (log: $logs/build.log)"
  }
}
: >"$logs/build.log"
if [ "${#targets[@]}" -eq "${#all_targets[@]}" ]; then
  build
else
  for t in "${targets[@]}"; do build "$t"; done
fi
say "built in $(( SECONDS - start )) s"

# --- runs ---------------------------------------------------------------------------------------
# The unpacker targets work in /tmp/orchestrator-fuzz (fuzz_targets/common/jail.rs): remove the
# work directories of processes that are gone.
clean_jails() {
  local d
  for d in /tmp/orchestrator-fuzz/work-*; do
    [ -d "$d" ] || continue
    kill -0 "${d##*/work-}" 2>/dev/null || rm -rf "$d"
  done
}

failed=()
summary=()
for t in "${targets[@]}"; do
  if [ "${FUZZ_UPDATE_CORPUS:-}" = 1 ]; then
    out="fuzz/corpus/$t"
  else
    out="$target_dir/corpus-new/$t"
  fi
  mkdir -p "$out" "fuzz/corpus/$t"
  dirs=("$out")
  [ "$out" = "fuzz/corpus/$t" ] || dirs+=("fuzz/corpus/$t")
  [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
  say "fuzzing $t for ${seconds} s (or 1,000,000 runs)"
  set +e
  # One process (no -jobs: libFuzzer would fork workers). -malloc_limit_mb fails any single
  # allocation past 512 MiB (with ASan), -rss_limit_mb the process past 2 GiB.
  cargo fuzz run "${build_flags[@]}" --target-dir "$target_dir" "$t" "${dirs[@]}" -- \
    -runs=1000000 -max_total_time="$seconds" -timeout=30 \
    -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 >"$logs/$t.log" 2>&1
  rc=$?
  set -e
  clean_jails
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$logs/$t.log" | tail -1)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    printf '%s\n' "--- the end of $logs/$t.log:" >&2
    tail -n 40 "$logs/$t.log" >&2
    summary+=("$(printf '%-16s FAILED (exit %s), log %s' "$t" "$rc" "$logs/$t.log")")
  else
    summary+=("$(printf '%-16s ok: %s runs in %s s, committed corpus %s files' "$t" "${runs:-?}" "${took:-?}" "$files")")
  fi
done

say "summary ($mode, ${seconds} s per target)"
printf '    %s\n' "${summary[@]}"
[ "${#failed[@]}" -eq 0 ] || fail "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)"
say "no crash"
