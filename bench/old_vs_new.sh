#!/usr/bin/env bash
# One benchmark, alternated between an older commit and this checkout in
# one run, so that a change is measured against the commit before it on
# the same (noisy) machine at the same time (docs/benchmarks.md).
#
#   bench/old_vs_new.sh OLD ROUNDS BENCH [ARGS...]
#
# OLD is a commit (checked out once as a git worktree under
# target/old-vs-new/<commit>, with a target directory of its own, so the
# first run builds it) or the path of a checkout already there. BENCH is a
# script of bench/ (writer_vs_copy.sh, processor_throughput.sh, ...) that
# both checkouts have; ARGS are passed to it. Runs old, new, old, new, ...
# ROUNDS times each and prints every run's output under a header naming
# the side and the round; the figures are read from those lines.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 3 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
OLD="$1"
ROUNDS="$2"
BENCH="$3"
shift 3

if [ -d "$OLD" ]; then
  old_dir="$(cd "$OLD" && pwd)"
else
  commit="$(git rev-parse --short "$OLD")"
  old_dir="$PWD/target/old-vs-new/$commit"
  if [ ! -d "$old_dir" ]; then
    git worktree add --detach "$old_dir" "$commit" >/dev/null
  fi
fi
new_dir="$PWD"
[ -x "$old_dir/bench/$BENCH" ] || { echo "$old_dir has no bench/$BENCH" >&2; exit 2; }

echo "old: $old_dir ($(git -C "$old_dir" rev-parse --short HEAD))"
echo "new: $new_dir ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', with uncommitted changes'))"
for round in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    dir="$old_dir"
    [ "$side" = new ] && dir="$new_dir"
    echo "=== $side, round $round: bench/$BENCH $*"
    "$dir/bench/$BENCH" "$@"
  done
done
