#!/usr/bin/env bash
# Instructions per event of the ingest server, counted by callgrind (which
# does not move with the machine's noise): `processor/examples/bench_ingest.rs`
# (one round) with the ingest process run under `valgrind --tool=callgrind`,
# once with EVENTS and once with twice as many; the difference of the
# process's totals over EVENTS is the instructions an event costs (user
# space, every thread: HTTP, JSON, the `XADD`), start-up cancelled out.
# Also printed: the same difference for the request handler alone
# (`ingest::handle`, inclusive). Gzip off, then on (the benchmark's two
# ingest runs). The baseline run of each round is not counted.
#
#   bench/ingest_instructions.sh [EVENTS]          (default 10000)
#   PROCESSOR=/path/to/activity-processor bench/ingest_instructions.sh
#       (another build of the processor, e.g. an older commit's)
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${1:-10000}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p activity-processor --bin activity-processor --example bench_ingest
TARGET="${CARGO_TARGET_DIR:-target}"
PROCESSOR="${PROCESSOR:-$TARGET/release/activity-processor}"

DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# The benchmark stops the server with SIGTERM: passed on to valgrind,
# which writes its dump when the server has shut down.
cat >"$DIR/under_callgrind.sh" <<EOF
#!/usr/bin/env bash
valgrind --tool=callgrind --callgrind-out-file="$DIR/dump.\$\$" "$PROCESSOR" "\$@" 2>/dev/null &
child=\$!
trap 'kill -TERM \$child; wait \$child; exit 0' TERM
wait \$child
EOF
chmod +x "$DIR/under_callgrind.sh"

# Prints "<total> <handler>" for each ingest run (gzip off, then on).
totals() {
  rm -f "$DIR"/dump.*
  "$TARGET/release/examples/bench_ingest" --events "$1" --rounds 1 \
    --processor-bin "$DIR/under_callgrind.sh" >/dev/null
  for dump in $(ls -tr "$DIR"/dump.*); do
    total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    handler=$(callgrind_annotate --inclusive=yes "$dump" |
      awk '/ingest::handle::\{\{closure\}\} / && !seen {gsub(",", "", $1); print $1; seen = 1}')
    echo "$total ${handler:-0}"
  done
}

mapfile -t once < <(totals "$EVENTS")
mapfile -t twice < <(totals $((EVENTS * 2)))
for i in 0 1; do
  read -r total1 handler1 <<<"${once[$i]}"
  read -r total2 handler2 <<<"${twice[$i]}"
  name=$([ "$i" = 0 ] && echo "gzip off" || echo "gzip on")
  echo "$name: $(( (total2 - total1) / EVENTS )) instructions an event" \
    "($(( (handler2 - handler1) / EVENTS )) in the request handler)"
done
