# Sourced by benchmarks that need a Redis of their own: starts a private
# `redis-server` (no persistence) on a free port, in a fresh temporary
# directory, and stops it and removes the directory on exit.
#
# Sets PORT (the server's port), WORK (the temporary directory, free for the
# benchmark's own files too) and REDIS_PID; installs the EXIT trap.

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
cleanup() {
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
    redis-cli -p "$PORT" PING >/dev/null 2>&1 && break
    sleep 0.1
done
if ! redis-cli -p "$PORT" PING >/dev/null 2>&1; then
    echo "the private redis-server did not start:" >&2
    cat "$WORK/redis.log" >&2
    exit 1
fi
