#!/usr/bin/env bash
# Where PostgreSQL's time goes while a command runs (docs/benchmarks.md,
# "Processor: end-to-end latency and memory"): sets
# log_min_duration_statement = 0 on the server of DATABASE_URL (ALTER
# SYSTEM, reset at the end), runs the command, then sums the durations the
# server logged meanwhile by statement (its first 70 characters), largest
# first. Durations are wall time inside the server, waits included.
#
#   bench/pg_statement_times.sh bench/processor_throughput.sh 1000000 1000 1
#
# Needs a superuser connection and the server's log file: PG_LOG, by default
# the local Debian cluster's /var/log/postgresql/postgresql-*-main.log.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n 1)}
[[ -r "$LOG" ]] || { echo "cannot read the server log $LOG (set PG_LOG)" >&2; exit 1; }

set_logging() {
    psql -X -q "$URL" -c "ALTER SYSTEM $1" -c "SELECT pg_reload_conf()" >/dev/null
}
START=$(wc -l <"$LOG")
set_logging "SET log_min_duration_statement = 0"
trap 'set_logging "RESET log_min_duration_statement"' EXIT

"$@"

tail -n +"$((START + 1))" "$LOG" | python3 -c '
import collections, re, sys
total, count = collections.Counter(), collections.Counter()
for line in sys.stdin:
    m = re.search(r"duration: ([\d.]+) ms\s+(statement|execute [^:]*|parse [^:]*|bind [^:]*):\s*(.*)", line)
    if not m:
        continue
    kind = m.group(2).split()[0]
    key = ("" if kind in ("statement", "execute") else f"({kind}) ") + " ".join(m.group(3).split())[:70]
    total[key] += float(m.group(1))
    count[key] += 1
print("  seconds   count  statement")
for key, ms in total.most_common(25):
    print(f"{ms / 1000:9.2f} {count[key]:7d}  {key}")
'
