#!/usr/bin/env bash
# Schemathesis (property-based testing from the OpenAPI documents) against
# the admin API and the ingest API, with their default checks; exits
# non-zero on any failure.
#
#   scripts/schemathesis.sh [extra `st run` options...]
#
# APIS names which to test (default "admin ingest"). With ADMIN_URL (e.g.
# http://127.0.0.1:8080) and ADMIN_TOKEN, and INGEST_URL (e.g.
# http://127.0.0.1:8081) and INGEST_WRITE_KEY, set, it tests that running
# processor. Without, it starts one of its own: a scratch database and
# stream (a few events written to it), free ports, an admin token, a write
# key, all removed at the end. Installs the pinned schemathesis into a
# virtualenv under the target directory. Not part of .ci/run (it takes
# minutes); see docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
TARGET="${CARGO_TARGET_DIR:-target}"
VENV="$TARGET/schemathesis-venv"
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

PG_SERVER="${PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

APIS="${APIS:-admin ingest}"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [ -z "${ADMIN_URL:-}" ] && [ -z "${INGEST_URL:-}" ]; then
  cargo build -q -p activity-processor
  DB="schemathesis_$$"
  STREAM_KEY="schemathesis:$$"
  PORT="$(free_port)"
  INGEST_PORT="$(free_port)"
  ADMIN_TOKEN="schemathesis-admin-token-$$-$RANDOM$RANDOM"
  INGEST_WRITE_KEY="schemathesis-write-key-$$-$RANDOM$RANDOM"
  ADMIN_URL="http://127.0.0.1:$PORT"
  INGEST_URL="http://127.0.0.1:$INGEST_PORT"
  psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE $DB"
  LOG="$TARGET/schemathesis-processor.log"
  # The consumer runs too, so what the ingest accepts is stored and the
  # backlog stays under INGEST_MAX_BACKLOG (over it, the ingest answers 503).
  REDIS_URL="$REDIS_URL" DATABASE_URL="$PG_SERVER/$DB" STREAM_KEY="$STREAM_KEY" \
    ADMIN_LISTEN="127.0.0.1:$PORT" ADMIN_TOKENS="$ADMIN_TOKEN" ADMIN_PRIVACY_TOKENS="$ADMIN_TOKEN" \
    INGEST_LISTEN="127.0.0.1:$INGEST_PORT" INGEST_WRITE_KEYS="schemathesis=$INGEST_WRITE_KEY" \
    PSEUDONYM_KEY="schemathesis-pseudonym-key-0123456789" LOG_LEVEL=warn \
    "$TARGET/debug/activity-processor" serve >"$LOG" 2>&1 &
  PROCESSOR=$!
  cleanup() {
    kill "$PROCESSOR" 2>/dev/null || true
    wait "$PROCESSOR" 2>/dev/null || true
    redis-cli -u "$REDIS_URL" DEL "$STREAM_KEY" "$STREAM_KEY:dead" >/dev/null || true
    psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $DB" || true
  }
  trap cleanup EXIT
  for _ in $(seq 1 100); do
    curl -fsS "$ADMIN_URL/readyz" >/dev/null 2>&1 && curl -fsS "$INGEST_URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$PROCESSOR" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.2
  done
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for user in user-1 user-2 "user 3"; do
    for action in login case_view withdrawal_request; do
      redis-cli -u "$REDIS_URL" XADD "$STREAM_KEY" '*' data \
        "{\"v\":1,\"action\":\"$action\",\"user_id\":\"$user\",\"created_at\":\"$now\",\"ip_address\":\"192.0.2.7\",\"details\":{\"amount\":1e400}}" >/dev/null
    done
  done
fi
run_admin() {
  : "${ADMIN_URL:?set ADMIN_URL (and ADMIN_TOKEN) to test a running admin API}"
  : "${ADMIN_TOKEN:?set ADMIN_TOKEN with ADMIN_URL}"
  # Every default check, use_after_free included: after `DELETE
  # user/{user_id}` the user's endpoints answer 404 while the user is held
  # on the erasure list (which needs PSEUDONYM_KEY, set above for the
  # scratch processor; set it on a processor you point ADMIN_URL at).
  "$VENV/bin/st" run "$ADMIN_URL/api/v1/admin/openapi.json" \
    --url "$ADMIN_URL" \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --max-examples "${MAX_EXAMPLES:-50}" \
    --seed "${SEED:-20}" \
    "$@"
}

run_ingest() {
  : "${INGEST_URL:?set INGEST_URL (and INGEST_WRITE_KEY) to test a running ingest API}"
  : "${INGEST_WRITE_KEY:?set INGEST_WRITE_KEY with INGEST_URL}"
  # Every default check. The hooks give `timestamp` values the server must
  # take (at most a day ahead of now), which a schema cannot state.
  PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$VENV/bin/st" run "$INGEST_URL/v1/openapi.json" \
    --url "$INGEST_URL" \
    --header "Authorization: Basic $(printf '%s:' "$INGEST_WRITE_KEY" | base64 -w0)" \
    --max-examples "${MAX_EXAMPLES:-50}" \
    --seed "${SEED:-20}" \
    "$@"
}

status=0
for api in $APIS; do
  case "$api" in
    admin) run_admin "$@" || status=1 ;;
    ingest) run_ingest "$@" || status=1 ;;
    *) echo "APIS: unknown API $api (use admin, ingest)" >&2; exit 2 ;;
  esac
done
exit "$status"
