#!/usr/bin/env bash
# CI smoke run of the distlock-core fuzz targets: builds every target and runs each, one at a
# time, for FUZZ_SECONDS (default 30) from the committed seeds. Any crash, timeout or
# out-of-memory fails the run and prints the reproducer.
#
#   bash fuzz/smoke.sh                   # what CI runs
#   FUZZ_SECONDS=600 bash fuzz/smoke.sh  # the long run (10 minutes per target)
#   FUZZ_TARGETS="reply_bytes" bash fuzz/smoke.sh
#
# Uses `cargo +nightly fuzz` (libFuzzer with AddressSanitizer) when a nightly toolchain is
# installed, else `cargo fuzz … -s none` on the pinned stable toolchain (no sanitizer; the
# core forbids unsafe code, so the invariant checks are what find bugs). FUZZ_SANITIZER
# overrides the sanitizer (address, none, …); FUZZ_TOOLCHAIN=stable forces the stable path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"reply_bytes event_sequence command_encoding cluster_routing"}
work="$root/fuzz/work/smoke"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "smoke.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain=${FUZZ_TOOLCHAIN:-auto}
if [ "$toolchain" = auto ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=nightly; else toolchain=stable; fi
fi
if [ "$toolchain" = nightly ]; then
  fuzz=(cargo +nightly fuzz)
  sanitizer=${FUZZ_SANITIZER:-address}
else
  fuzz=(cargo fuzz)
  sanitizer=${FUZZ_SANITIZER:-none}
fi
echo "smoke.sh: ${fuzz[*]} -s $sanitizer, ${seconds}s per target: $targets"

"${fuzz[@]}" build -s "$sanitizer"

failed=()
for target in $targets; do
  # New inputs go to a scratch directory; the committed seeds are only read.
  corpus="$work/$target"
  artifacts="$root/fuzz/artifacts/$target"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  before=$(ls -A "$artifacts" | sort)
  log="$work/$target.log"
  echo
  echo "=== $target (${seconds}s)"
  set +e
  "${fuzz[@]}" run -s "$sanitizer" "$target" "$corpus" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -dict=fuzz/resp.dict \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  after=$(ls -A "$artifacts" | sort)
  new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
  grep -E '^Done|stat::number_of_executed_units|stat::average_exec_per_sec' "$log" || true
  if [ "$status" -ne 0 ] || [ -n "$new" ]; then
    failed+=("$target")
    echo "!!! $target FAILED (exit $status); full log: $log"
    grep -E -A2 "panicked at" "$log" | head -6 || true
    grep -E "ERROR: libFuzzer|SUMMARY|Test unit written to" "$log" || true
    for f in $new; do
      echo "!!! reproducer: fuzz/artifacts/$target/$f"
      echo "!!!   replay:   ${fuzz[*]} run -s $sanitizer $target fuzz/artifacts/$target/$f"
      echo "!!!   minimise: ${fuzz[*]} tmin -s $sanitizer $target fuzz/artifacts/$target/$f"
    done
  fi
done

echo
if [ ${#failed[@]} -ne 0 ]; then
  echo "smoke.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "smoke.sh: ok (no crash in ${seconds}s per target)"
