#!/usr/bin/env bash
# Makes (once) a virtualenv holding the Segment Python SDK the ingest
# tests send with, pinned, and prints the path of its python. The venv
# lives under the cargo target directory (CARGO_TARGET_DIR, else the
# workspace's target/), so `cargo clean` removes it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/segment-venv"
requirements="$root/tests/python/segment-requirements.txt"
# Made again when the pinned list changes.
stamp="$venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
mkdir -p "$target"
# Tests running at once wait for the one making the venv.
exec 9>"$target/segment-venv.lock"
flock 9
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$requirements" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
