#!/usr/bin/env bash
# Index choice for user_activity_logs.created_at: BRIN vs btree vs none.
#
# Loads the same N rows (default 1,000,000; first argument) into three
# identical partitioned tables that differ only by the index on created_at,
# in a scratch database dropped at the end; prints the load time of each and
# the time of the admin API's time-range queries, as ratios against the
# table without a created_at index (the baseline, measured in the same run).
#
#   bench/index_choice.sh [N]
#
# Needs psql and a PostgreSQL reachable with DATABASE_URL (default: the
# local server). The rows are v7-like (time-ordered ids) and arrive in
# created_at order over 60 days, as the processor writes them.
set -euo pipefail

N="${1:-1000000}"
BASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="bench_index_$(date +%s)_$$"
ADMIN_URL="$BASE_URL"
SCRATCH_URL="${BASE_URL%/*}/$DB"

psql -q -X "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
trap 'psql -q -X "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT

run() { psql -X -q -At -v ON_ERROR_STOP=1 "$SCRATCH_URL" "$@"; }

run <<SQL
CREATE FUNCTION make_table(name text, time_index text) RETURNS void AS \$\$
DECLARE m date;
BEGIN
  EXECUTE format('CREATE TABLE %I (
    id UUID NOT NULL, user_id TEXT NULL, action VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50), resource_id VARCHAR(255), details JSONB,
    ip_address INET, user_agent VARCHAR(500), session_id VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (id, created_at)
  ) PARTITION BY RANGE (created_at)', name);
  EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', name || '_default', name);
  FOR m IN SELECT generate_series(date_trunc('month', now() - interval '70 days'),
                                  date_trunc('month', now() + interval '40 days'),
                                  interval '1 month')::date LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
      name || '_p' || to_char(m, 'YYYY_MM'), name, m, (m + interval '1 month')::date);
  END LOOP;
  EXECUTE format('CREATE INDEX ON %I (user_id, created_at)', name);
  EXECUTE format('CREATE INDEX ON %I (action, created_at)', name);
  IF time_index = 'brin' THEN
    EXECUTE format('CREATE INDEX ON %I USING BRIN (created_at)', name);
  ELSIF time_index = 'btree' THEN
    EXECUTE format('CREATE INDEX ON %I (created_at)', name);
  END IF;
END \$\$ LANGUAGE plpgsql;

-- Loads n rows in chunks of 1000 (the writer's batches), returns ms.
CREATE FUNCTION load(name text, n int) RETURNS float AS \$\$
DECLARE t0 timestamptz := clock_timestamp(); lo int := 0; span float := 60 * 86400;
BEGIN
  WHILE lo < n LOOP
    EXECUTE format(\$q\$
      INSERT INTO %I
      SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
              || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
             'user-' || (i::bigint * 7919 %% 5000), a[1 + i %% 8], 'case', 'case-' || (i %% 100000),
             jsonb_build_object('method', 'POST', 'route', '/api/cases/{id}', 'status', 200,
                                'latency_ms', i %% 300),
             ('10.' || (i %% 250) || '.' || (i / 250 %% 250) || '.7')::inet,
             'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
             'sess-' || (i * 31 %% 20000), ts
      FROM (SELECT i, md5(i::text) AS h,
                   now() - make_interval(secs => %s * (1 - i::float / %s)) AS ts,
                   ARRAY['login','case_view','case_update','case_create','payment_create',
                         'document_generate','logout','profile_update'] AS a
            FROM generate_series(%s, %s) AS i) s
      ON CONFLICT DO NOTHING\$q\$, name, span, n, lo, least(lo + 1000, n) - 1);
    lo := lo + 1000;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END \$\$ LANGUAGE plpgsql;

-- Mean ms of a query over reps runs.
CREATE FUNCTION q_ms(q text, reps int) RETURNS float AS \$\$
DECLARE t0 timestamptz;
BEGIN
  EXECUTE q;  -- warm the cache
  t0 := clock_timestamp();
  FOR i IN 1..reps LOOP EXECUTE q; END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000 / reps;
END \$\$ LANGUAGE plpgsql;

DO \$\$ BEGIN
  PERFORM make_table('t_none', 'none');
  PERFORM make_table('t_brin', 'brin');
  PERFORM make_table('t_btree', 'btree');
END \$\$;
SQL

declare -A LOAD
for t in none brin btree; do
  LOAD[$t]=$(run -c "SELECT round(load('t_$t', $N)::numeric, 0)")
  run -c "VACUUM ANALYZE t_$t"
done

size() { run -c "SELECT (coalesce(sum(pg_relation_size(i.indexrelid)), 0) / 1024)::bigint FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid JOIN pg_class p ON p.oid = h.inhparent JOIN pg_class c ON c.oid = i.indexrelid WHERE p.relname = 't_$1' AND c.relname LIKE '%created_at_idx' AND c.relname NOT LIKE '%user_id%' AND c.relname NOT LIKE '%action%'"; }

echo "rows: $N (chunks of 1000, all indexes of the contract + the created_at index under test)"
printf '%-6s %12s %10s %14s\n' index load_ms vs_none created_at_kib
for t in none brin btree; do
  printf '%-6s %12s %10s %14s\n' "$t" "${LOAD[$t]}" \
    "$(awk -v a="${LOAD[$t]}" -v b="${LOAD[none]}" 'BEGIN{printf "%.3f", a/b}')" "$(size $t)"
done

declare -A QUERIES=(
  [last_hour_count]="SELECT count(*) FROM %s WHERE created_at >= now() - interval '1 hour'"
  [one_day_by_action]="SELECT action, count(*) FROM %s WHERE created_at >= now() - interval '3 days' AND created_at < now() - interval '2 days' GROUP BY action"
  [statistics_7_days]="SELECT action, count(*), count(DISTINCT user_id) FROM %s WHERE created_at >= now() - interval '7 days' GROUP BY action"
)
echo
printf '%-20s %10s %10s %10s %10s %10s\n' query none_ms brin_ms btree_ms brin/none btree/none
for q in last_hour_count one_day_by_action statistics_7_days; do
  declare -A MS=()
  for t in none brin btree; do
    sql=$(printf "${QUERIES[$q]}" "t_$t")
    MS[$t]=$(run -c "SELECT round(q_ms(\$q\$$sql\$q\$, 5)::numeric, 2)")
  done
  printf '%-20s %10s %10s %10s %10s %10s\n' "$q" "${MS[none]}" "${MS[brin]}" "${MS[btree]}" \
    "$(awk -v a="${MS[brin]}" -v b="${MS[none]}" 'BEGIN{printf "%.3f", a/b}')" \
    "$(awk -v a="${MS[btree]}" -v b="${MS[none]}" 'BEGIN{printf "%.3f", a/b}')"
done
