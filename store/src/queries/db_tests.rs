//! The rollups against the raw rows, and the queries against plain SQL
//! over the raw rows, on a fresh database each (real PostgreSQL).

use std::collections::BTreeMap;

use crate::rollups::{self, rebuild_rollups};
use crate::writer::{InsertMethod, ONE_STATEMENT_MAX_ROWS, write_batch, write_batch_with};
use chrono::{Datelike, NaiveDate, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

use super::*;
use crate::testing::{assert_rollups_match_raw, random_activities, window_start};

/// Writes `events` in random batches, re-sending random earlier events
/// (redelivery) and repeating some inside a batch, folding the pending
/// per-user counts now and then (and leaving some unfolded at the end).
/// Each batch goes through a random insert method, every one of them (and
/// now and then a batch large enough for [`InsertMethod::Auto`] to take
/// `COPY`): each sends its rows another way, and the rollups must agree.
async fn write_randomly(pool: &PgPool, events: &[activity_tracker::Activity], seed: u64) {
    const METHODS: [InsertMethod; 5] = [
        InsertMethod::OneStatement,
        InsertMethod::CopyOptimistic,
        InsertMethod::Unnest,
        InsertMethod::CopyTempTable,
        InsertMethod::Auto,
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut at = 0;
    while at < events.len() {
        let size = if rng.random_range(0..8) == 0 {
            rng.random_range(ONE_STATEMENT_MAX_ROWS + 1..ONE_STATEMENT_MAX_ROWS + 40)
        } else {
            rng.random_range(1..40)
        };
        let size = size.min(events.len() - at);
        let mut batch = events[at..at + size].to_vec();
        for _ in 0..rng.random_range(0..4) {
            batch.push(events[rng.random_range(0..at + size)].clone());
        }
        let method = METHODS[rng.random_range(0..METHODS.len())];
        write_batch_with(pool, &batch, method)
            .await
            .expect("batch written");
        if rng.random_range(0..6) == 0 {
            rollups::fold_pending(pool)
                .await
                .expect("pending counts folded");
        }
        at += size;
    }
}

#[sqlx::test]
async fn rollups_agree_with_the_raw_rows_after_random_batches(pool: PgPool) {
    let events = random_activities(1, 600, 40, 25);
    write_randomly(&pool, &events, 2).await;
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 600);
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn concurrent_writers_neither_deadlock_nor_lose_counts(pool: PgPool) {
    let events = random_activities(3, 1200, 10, 8);
    let mut tasks = Vec::new();
    for (i, chunk) in events.chunks(300).enumerate() {
        let pool = pool.clone();
        let mut chunk = chunk.to_vec();
        // Every writer also re-sends a slice of the others' events.
        chunk.extend_from_slice(&events[(i * 37) % 900..(i * 37) % 900 + 100]);
        tasks.push(tokio::spawn(async move {
            write_randomly(&pool, &chunk, i as u64).await;
        }));
    }
    // And a background folder, as each processor runs one, folding while
    // the writers write.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let folder = {
        let pool = pool.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut folded = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                folded += rollups::try_fold_pending(&pool)
                    .await
                    .expect("fold")
                    .unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            folded
        })
    };
    for t in tasks {
        t.await.expect("writer finished");
    }
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let folded = folder.await.expect("folder finished without error");
    assert!(folded > 0, "the folder folded while the writers wrote");
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn per_user_counts_wait_in_pending_until_folded(pool: PgPool) {
    let events = random_activities(12, 200, 3, 10);
    write_batch(&pool, &events).await.unwrap();
    let pending = || async {
        let (rows, n): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), sum(n)::int8 FROM activity_rollup_pending")
                .fetch_one(&pool)
                .await
                .unwrap();
        (rows, n.unwrap_or(0))
    };
    let with_user = events.iter().filter(|e| e.user_id.is_some()).count() as i64;
    let (rows, n) = pending().await;
    assert!(rows > 0 && rows <= with_user);
    assert_eq!(n, with_user, "one count per stored row with a user");
    let (folded,): (i64,) = sqlx::query_as("SELECT count(*) FROM activity_rollup_user_daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(folded, 0, "nothing folded by the writer");

    assert_eq!(rollups::fold_pending(&pool).await.unwrap(), rows as u64);
    assert_eq!(pending().await, (0, 0));
    assert_eq!(rollups::fold_pending(&pool).await.unwrap(), 0);
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn retention_drops_keep_rollups_exact(pool: PgPool) {
    let now = Utc::now();
    let first_of_month = now
        .date_naive()
        .with_day(1)
        .expect("day 1 exists")
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    crate::schema::ensure_partitions(&pool, first_of_month - TimeDelta::days(80), 4)
        .await
        .unwrap();
    write_randomly(&pool, &random_activities(4, 500, 75, 20), 5).await;
    assert_rollups_match_raw(&pool).await;
    // Retention as of the 2nd of this month, keeping one day: every earlier
    // month goes.
    let dropped =
        crate::schema::drop_expired_partitions(&pool, first_of_month + TimeDelta::days(1), 1)
            .await
            .unwrap();
    assert!(!dropped.is_empty());
    let (oldest,): (Option<chrono::DateTime<Utc>>,) =
        sqlx::query_as("SELECT min(created_at) FROM user_activity_logs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(oldest.is_none_or(|o| o >= first_of_month));
    assert_rollups_match_raw(&pool).await;
    // And writing goes on exactly after the drop.
    write_randomly(&pool, &random_activities(6, 200, 3, 20), 7).await;
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn rebuild_brings_rows_written_outside_the_writer_in(pool: PgPool) {
    write_randomly(&pool, &random_activities(8, 300, 20, 10), 9).await;
    // A backfill straight into the table, bypassing the rollups.
    sqlx::query(
        "INSERT INTO user_activity_logs (id, user_id, action, created_at)
         SELECT gen_random_uuid(), 'backfill-' || (g % 7), 'legacy_action',
                now() - (g || ' hours')::interval
         FROM generate_series(1, 200) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let since = Utc::now().date_naive() - TimeDelta::days(10);
    let outcome = rebuild_rollups(&pool, Some(since)).await.unwrap();
    assert!(outcome.rows > 0);
    assert_rollups_match_raw(&pool).await;

    // Rows removed by hand (a restore of an older copy): users whose last
    // rows went fall back to their older ones.
    sqlx::query(
        "DELETE FROM user_activity_logs
         WHERE user_id IN ('user-1', 'user-2') AND created_at >= $1",
    )
    .bind(since.and_time(chrono::NaiveTime::MIN).and_utc())
    .execute(&pool)
    .await
    .unwrap();
    rebuild_rollups(&pool, Some(since)).await.unwrap();
    assert_rollups_match_raw(&pool).await;

    // Rows before `since` are only picked up by a full rebuild.
    sqlx::query(
        "INSERT INTO user_activity_logs (id, user_id, action, created_at)
         VALUES (gen_random_uuid(), 'old-timer', 'login', now() - interval '15 days')",
    )
    .execute(&pool)
    .await
    .unwrap();
    rebuild_rollups(&pool, None).await.unwrap();
    assert_rollups_match_raw(&pool).await;
    // A rebuild of an exact state changes nothing; new writes stay exact.
    rebuild_rollups(&pool, Some(since)).await.unwrap();
    write_randomly(&pool, &random_activities(10, 100, 2, 10), 11).await;
    assert_rollups_match_raw(&pool).await;
}

/// `(count, distinct users)` per action over the window, from the raw rows.
async fn raw_actions(pool: &PgPool, days: u32) -> Vec<ActionUsage> {
    let (_, start) = window_start(days);
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT action::text, COUNT(*), COUNT(DISTINCT user_id) FROM user_activity_logs
         WHERE created_at >= $1 GROUP BY action ORDER BY 2 DESC, 1",
    )
    .bind(start)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(action, usage_count, user_count)| ActionUsage {
            action,
            usage_count,
            user_count,
        })
        .collect()
}

#[sqlx::test]
async fn statistics_equal_plain_sql_over_the_raw_rows(pool: PgPool) {
    write_randomly(&pool, &random_activities(12, 800, 12, 30), 13).await;
    for days in [1, 3, 7, 30] {
        let s = get_statistics(&pool, days).await.unwrap();
        let (start_day, start) = window_start(days);
        let (total, users): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_activity_logs WHERE created_at >= $1",
        )
        .bind(start)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            (s.total_activities, s.active_users),
            (total, users),
            "days={days}"
        );
        let (today,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM user_activity_logs WHERE created_at >= $1")
                .bind(window_start(1).1)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(s.today_activities, today);
        let actions = raw_actions(&pool, days).await;
        let breakdown: BTreeMap<String, i64> = actions
            .iter()
            .map(|a| (a.action.clone(), a.usage_count))
            .collect();
        assert_eq!(s.activity_breakdown, breakdown);
        assert_eq!(
            s.top_actions,
            actions.into_iter().take(TOP_ACTIONS).collect::<Vec<_>>()
        );
        let daily: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
            "SELECT d::date, COUNT(l.id), COUNT(DISTINCT l.user_id)
             FROM generate_series($1::date, (now() AT TIME ZONE 'UTC')::date, '1 day') d
             LEFT JOIN user_activity_logs l ON (l.created_at AT TIME ZONE 'UTC')::date = d::date
             GROUP BY d ORDER BY d",
        )
        .bind(start_day)
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: Vec<(NaiveDate, i64, i64)> = s
            .daily
            .iter()
            .map(|d| (d.date, d.count, d.active_users))
            .collect();
        assert_eq!(got, daily, "days={days}");
        let hourly: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT EXTRACT(HOUR FROM created_at AT TIME ZONE 'UTC')::int4, COUNT(*)
             FROM user_activity_logs WHERE created_at >= $1 GROUP BY 1",
        )
        .bind(start)
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut expected = vec![0i64; 24];
        for (h, n) in hourly {
            expected[h as usize] = n;
        }
        assert_eq!(s.hourly, expected, "days={days}");
    }
}

#[sqlx::test]
async fn top_users_and_actions_equal_the_original_queries(pool: PgPool) {
    write_randomly(&pool, &random_activities(14, 900, 35, 40), 15).await;
    for days in [1, 7, 30] {
        assert_eq!(
            get_action_usage(&pool, days).await.unwrap().actions,
            raw_actions(&pool, days).await
        );
        let (_, start) = window_start(days);
        let expected: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT user_id, COUNT(*) AS activity_count, COUNT(DISTINCT action)
             FROM user_activity_logs WHERE created_at >= $1 AND user_id IS NOT NULL
             GROUP BY user_id ORDER BY activity_count DESC, user_id LIMIT 10",
        )
        .bind(start)
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: Vec<(String, i64, i64)> = get_top_users(&pool, days, 10)
            .await
            .unwrap()
            .users
            .into_iter()
            .map(|u| (u.user_id, u.activity_count, u.action_types))
            .collect();
        assert_eq!(got, expected, "days={days}");
    }
}

#[sqlx::test]
async fn user_stats_pages_and_path_equal_the_raw_rows(pool: PgPool) {
    write_randomly(&pool, &random_activities(16, 700, 40, 5), 17).await;
    let user = "user-3";
    let (_, start) = window_start(30);
    let s = get_user_activity_stats(&pool, user, 30).await.unwrap();
    let (total, first, last): (
        i64,
        Option<chrono::DateTime<Utc>>,
        Option<chrono::DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM user_activity_logs
             WHERE user_id = $1 AND created_at >= $2",
    )
    .bind(user)
    .bind(start)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(total > 60, "enough rows to page through");
    assert_eq!(
        (s.total_activities, s.first_seen, s.last_seen),
        (total, first, last)
    );
    assert_eq!(s.activity_breakdown.values().sum::<i64>(), total);
    let ips: Vec<(String, i64)> = sqlx::query_as(
        "SELECT host(ip_address), COUNT(*) FROM user_activity_logs
         WHERE user_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(user)
    .bind(start)
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<(String, i64)> = s
        .ip_addresses
        .iter()
        .map(|i| (i.ip_address.clone(), i.count))
        .collect();
    assert_eq!(got, ips);

    // Paging with the cursor walks every row once, newest first.
    let expected: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2
         ORDER BY created_at DESC, id DESC",
    )
    .bind(user)
    .bind(start)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = get_user_activity_stats_page(
            &pool,
            user,
            30,
            RecentPage {
                limit: Some(7),
                cursor: cursor.take(),
            },
        )
        .await
        .unwrap();
        assert!(page.recent.len() <= 7);
        seen.extend(page.recent.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    // The path: LAG over the window, the last `limit` steps.
    let expected: Vec<(String, chrono::DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT action::text, created_at, prev FROM (
             SELECT action, created_at, id,
                    LAG(action::text) OVER (ORDER BY created_at, id) AS prev
             FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2) x
         ORDER BY created_at DESC, id DESC LIMIT 10",
    )
    .bind(user)
    .bind(window_start(7).1)
    .fetch_all(&pool)
    .await
    .unwrap();
    let path = get_user_path(&pool, user, 7, 10).await.unwrap();
    let got: Vec<(String, chrono::DateTime<Utc>, Option<String>)> = path
        .steps
        .iter()
        .rev()
        .map(|s| (s.action.clone(), s.created_at, s.prev_action.clone()))
        .collect();
    assert_eq!(got, expected);
    assert!(path.truncated);
}

#[sqlx::test]
async fn empty_ranges_give_zeros(pool: PgPool) {
    let s = get_statistics(&pool, 7).await.unwrap();
    assert_eq!(
        (s.total_activities, s.today_activities, s.active_users),
        (0, 0, 0)
    );
    assert_eq!(s.daily.len(), 7);
    assert!(s.daily.iter().all(|d| d.count == 0 && d.active_users == 0));
    assert_eq!(s.hourly, vec![0; 24]);
    assert!(get_action_usage(&pool, 7).await.unwrap().actions.is_empty());
    assert!(get_top_users(&pool, 30, 10).await.unwrap().users.is_empty());
    let u = get_user_activity_stats(&pool, "nobody", 30).await.unwrap();
    assert_eq!(
        (u.total_activities, u.first_seen, u.next_cursor),
        (0, None, None)
    );
    assert!(
        get_user_path(&pool, "nobody", 1, 200)
            .await
            .unwrap()
            .steps
            .is_empty()
    );
    let t = get_activity_totals(&pool).await.unwrap();
    assert_eq!(
        (t.today_activities, t.total_activities, t.active_users_today),
        (0, 0, 0)
    );
}

#[sqlx::test]
async fn top_users_by_threshold_equal_the_plain_aggregate(pool: PgPool) {
    // A long tail and a few heavy users, so that shallow reads settle by the
    // threshold and deeper ones are needed too.
    let mut events = random_activities(30, 1500, 20, 200);
    for (k, heavy) in [(0, 120), (1, 60), (2, 60), (3, 30)] {
        for mut a in random_activities(31 + k, heavy, 20, 1) {
            a.user_id = Some(format!("heavy-{k}"));
            events.push(a);
        }
    }
    write_randomly(&pool, &events, 32).await;
    // What get_top_users does before reading.
    rollups::fold_pending(&pool).await.unwrap();
    for days in [1, 5, 30] {
        let w = Window::last_days(days).unwrap();
        for limit in [1, 2, 4, 10, 50] {
            let expected: Vec<(String, i64)> = sqlx::query_as(
                "SELECT user_id, COUNT(*) AS c FROM user_activity_logs
                 WHERE created_at >= $1 AND user_id IS NOT NULL
                 GROUP BY user_id ORDER BY c DESC, user_id LIMIT $2",
            )
            .bind(w.start)
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await
            .unwrap();
            for first_depth in [1, 2, 3, 64] {
                let got = top_user_counts(&pool, &w, limit, first_depth)
                    .await
                    .unwrap();
                assert_eq!(
                    got, expected,
                    "days={days} limit={limit} depth={first_depth}"
                );
            }
        }
    }
}
