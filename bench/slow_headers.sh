#!/usr/bin/env bash
# Half-sent requests against the admin listener: CONNECTIONS connections
# each send the start of a request's headers and then nothing. Prints the
# processor's RSS before, while they are open, and after the header-read
# timeout, and how many the server closed.
#
# Runs the processor (release) against a private Redis and a fresh
# database on the local PostgreSQL, with HTTP_HEADER_READ_TIMEOUT_MS
# (default here 5000).
#
# Usage: bench/slow_headers.sh [CONNECTIONS]      (default 3000)
set -euo pipefail

cd "$(dirname "$0")/.."
CONNECTIONS=${1:-3000}
HEADER_TIMEOUT_MS=${HEADER_TIMEOUT_MS:-5000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB="bench_slow_headers_$$"

source bench/lib/private_redis.sh
cargo build --release -p activity-processor -q
ulimit -n $((CONNECTIONS + 1024))

psql -q "$PG/postgres" -c "CREATE DATABASE $DB"
PROCESSOR_PID=
stop() {
    if [[ -n "$PROCESSOR_PID" ]]; then
        kill -TERM "$PROCESSOR_PID" 2>/dev/null || true
        wait "$PROCESSOR_PID" 2>/dev/null || true
    fi
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" || true
    cleanup
}
trap stop EXIT

ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REDIS_URL="redis://127.0.0.1:$PORT" DATABASE_URL="$PG/$DB" \
    ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" ALERT_RULES=none LOG_LEVEL=warn \
    HTTP_HEADER_READ_TIMEOUT_MS=$HEADER_TIMEOUT_MS \
    target/release/activity-processor serve >"$WORK/processor.log" 2>&1 &
PROCESSOR_PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null && break
    sleep 0.1
done

python3 - "$ADMIN_PORT" "$CONNECTIONS" "$PROCESSOR_PID" "$HEADER_TIMEOUT_MS" <<'EOF'
import socket, sys, time

port, count, pid, timeout_ms = (int(a) for a in sys.argv[1:])

def rss_mb():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

before = rss_mb()
sockets = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/admin/user-activities/queue-status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    sockets.append(s)
time.sleep(1)
held = rss_mb()
time.sleep(timeout_ms / 1000 + 3)
closed = 0
for s in sockets:
    s.settimeout(0.5)
    try:
        if s.recv(1) == b"":
            closed += 1
    except ConnectionResetError:
        closed += 1
    except socket.timeout:
        pass
after = rss_mb()
print(f"{count} half-sent connections: RSS {before:.1f} MB before, "
      f"{held:.1f} MB held (+{held - before:.1f} MB), {after:.1f} MB after the "
      f"{timeout_ms} ms header-read timeout; closed by the server: {closed} of {count}")
EOF
