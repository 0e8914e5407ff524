#!/usr/bin/env bash
# Makes (once) a virtualenv holding the Segment Python SDK the ingest
# tests send with, pinned, and prints the path of its python. The venv
# lives under the cargo target directory (CARGO_TARGET_DIR, else the
# workspace's target/), so `cargo clean` removes it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/segment-venv"
stamp="$venv/.segment-analytics-python-2.4.0"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "segment-analytics-python==2.4.0" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
