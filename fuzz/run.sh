#!/usr/bin/env bash
# Runs the fuzz targets (libFuzzer through cargo-fuzz) on this machine's
# stable toolchain: cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1
# allows. Installs the pinned cargo-fuzz when it is missing.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 600); TARGETs default to all. Corpora go to
# fuzz/corpus/<target> (not committed), crashes to fuzz/artifacts/<target>.
# Not run by .ci/run: too long for CI. Results: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(v1_event v2_entry legacy_list spool_record cursor client_ip)
fi

TOOLS=${FUZZ_TOOLS_DIR:-${CARGO_TARGET_DIR:-../target}/fuzz-tools}
export PATH="$TOOLS/bin:$PATH"
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi

export RUSTC_BOOTSTRAP=1
TARGET_DIR=${CARGO_TARGET_DIR:-../target}/fuzz
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target: ${SECONDS_PER_TARGET}s"
  # One process fuzzing in place (libFuzzer's default: what -jobs=1
  # -workers=1 amounts to, without its log file in the current directory,
  # which two targets run at once would share).
  cargo fuzz run --target-dir "$TARGET_DIR" "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1
done
