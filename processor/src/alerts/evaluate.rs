//! One evaluation pass: take the oldest rows of the inbox, evaluate every
//! rule on them in event-time order, and record what they change (window
//! events, new alerts and their webhook deliveries, growing episodes) in
//! the transaction that deletes them from the inbox.
//!
//! One pass runs at a time across all processors: a pass first takes a
//! transaction-level advisory lock, and a processor that does not get it
//! leaves the work to the one that has it. So the window counts and the
//! episodes, which live in PostgreSQL, are read and written by one
//! evaluator at a time, whichever processor stored the events; a processor
//! that dies mid-pass rolls its pass back and the next one takes the rows
//! again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::rules::{GroupBy, NewIpRule, Rule, RuleKind, RuleSet};

/// Key of the advisory lock of an evaluation pass ("uactalrt").
pub const EVALUATOR_LOCK_KEY: i64 = 0x7561_6374_616c_7274;

/// One row of `user_activity_alert_inbox`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct InboxEvent {
    event_id: Uuid,
    created_at: DateTime<Utc>,
    user_id: Option<String>,
    action: String,
    ip_address: Option<IpNet>,
    status: Option<String>,
    received_at: DateTime<Utc>,
}

impl InboxEvent {
    fn group(&self, by: GroupBy) -> Option<String> {
        match by {
            GroupBy::User => self.user_id.clone(),
            GroupBy::Ip => self.ip_address.map(|ip| ip.addr().to_string()),
        }
    }

    fn http_status(&self) -> Option<u16> {
        self.status.as_deref()?.trim().parse().ok()
    }

    /// A `login` answered 4xx, or the app's `login_failed`.
    fn is_failed_login(&self) -> bool {
        self.action == "login_failed"
            || (self.action == "login" && matches!(self.http_status(), Some(400..=499)))
    }

    /// A `login` not answered with an error (or without a status).
    fn is_successful_login(&self) -> bool {
        self.action == "login" && !matches!(self.http_status(), Some(400..=599))
    }
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// Inbox rows taken per pass.
    pub batch_limit: i64,
    /// Events stored this long after their `created_at` (or dated this far
    /// ahead) are not evaluated.
    pub max_lateness: Duration,
    /// A delivery row is made for each new alert and each of these URLs.
    pub webhook_urls: Vec<String>,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Another processor's pass held the lock: nothing was taken.
    pub locked_elsewhere: bool,
    /// Inbox rows taken (and deleted).
    pub taken: usize,
    /// Of those, evaluated.
    pub evaluated: usize,
    /// Of those, too late (or too early) to evaluate.
    pub late: usize,
    /// The rules of the alerts raised, one entry per alert.
    pub raised: Vec<String>,
}

/// An episode of a rule for a group, as the pass sees and changes it.
#[derive(Debug, Clone)]
struct Episode {
    id: Uuid,
    first_at: DateTime<Utc>,
    last_id: Uuid,
    last_at: DateTime<Utc>,
    count: i64,
    user_id: Option<String>,
    ip: Option<IpNet>,
    first_id: Uuid,
    is_new: bool,
    changed: bool,
}

impl Episode {
    fn is_open_at(&self, at: DateTime<Utc>, cooldown: TimeDelta) -> bool {
        at <= self.last_at + cooldown && at + cooldown >= self.first_at
    }

    fn add(&mut self, event: &InboxEvent) {
        self.count += 1;
        if event.created_at >= self.last_at {
            self.last_at = event.created_at;
            self.last_id = event.event_id;
        }
        self.changed = true;
    }

    fn start(event: &InboxEvent, count: i64) -> Self {
        Self {
            id: Uuid::now_v7(),
            first_at: event.created_at,
            first_id: event.event_id,
            last_id: event.event_id,
            last_at: event.created_at,
            count,
            user_id: event.user_id.clone(),
            ip: event.ip_address,
            is_new: true,
            changed: true,
        }
    }
}

/// The events of a group in a rule's window, by time: those evaluated
/// before this pass (from `user_activity_alert_window`) and this pass's so
/// far.
#[derive(Debug, Default)]
struct WindowTimes(Vec<(DateTime<Utc>, Uuid)>);

impl WindowTimes {
    fn insert(&mut self, at: DateTime<Utc>, id: Uuid) {
        let i = self.0.partition_point(|(t, _)| *t <= at);
        self.0.insert(i, (at, id));
    }

    /// Times in `(from, to]`.
    fn count_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.0.partition_point(|(t, _)| *t <= to) - self.0.partition_point(|(t, _)| *t <= from)
    }

    /// The events after `at` already evaluated (stored before this one,
    /// though later: two processors, or a spool, deliver out of order)
    /// that an episode starting at `at` takes in, as it would have had they
    /// come in order: each within `cooldown` of the one before. Their
    /// number and the last of them.
    fn chained_after(
        &self,
        at: DateTime<Utc>,
        cooldown: TimeDelta,
    ) -> (usize, Option<(DateTime<Utc>, Uuid)>) {
        let mut last = at;
        let mut chained = (0, None);
        for &(t, id) in &self.0[self.0.partition_point(|(t, _)| *t <= at)..] {
            if t > last + cooldown {
                break;
            }
            last = t;
            chained = (chained.0 + 1, Some((t, id)));
        }
        chained
    }
}

/// What the rules decided for the pass's events, to be written.
#[derive(Debug, Default)]
struct Changes {
    window_rows: Vec<(String, String, DateTime<Utc>, Uuid)>,
    episodes: Vec<(String, GroupBy, String, Episode)>,
}

/// Takes up to `settings.batch_limit` inbox rows and evaluates them, all in
/// one transaction. Without rules, the rows are only taken.
pub async fn evaluate_pass(
    pool: &PgPool,
    rules: &RuleSet,
    settings: &PassSettings,
) -> Result<PassOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(EVALUATOR_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(PassOutcome {
            locked_elsewhere: true,
            ..PassOutcome::default()
        });
    }
    let mut events: Vec<InboxEvent> = sqlx::query_as(
        "DELETE FROM user_activity_alert_inbox
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM user_activity_alert_inbox LIMIT $1))
         RETURNING event_id, created_at, user_id, action::text, ip_address, status, received_at",
    )
    .bind(settings.batch_limit)
    .fetch_all(&mut *tx)
    .await?;
    let taken = events.len();
    let lateness = TimeDelta::from_std(settings.max_lateness).unwrap_or(TimeDelta::MAX);
    events.retain(|e| (e.received_at - e.created_at).abs() <= lateness);
    events.sort_by_key(|e| (e.created_at, e.event_id));
    let mut outcome = PassOutcome {
        taken,
        evaluated: events.len(),
        late: taken - events.len(),
        ..PassOutcome::default()
    };
    if events.is_empty() || rules.rules().is_empty() {
        tx.commit().await?;
        return Ok(outcome);
    }

    let mut changes = Changes::default();
    for rule in rules.rules() {
        evaluate_rule(&mut tx, rule, &events, &mut changes).await?;
    }
    outcome.raised = write_changes(&mut tx, changes, &settings.webhook_urls).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Evaluates one rule over the pass's events (sorted by time), adding to
/// `changes`.
async fn evaluate_rule(
    conn: &mut PgConnection,
    rule: &Rule,
    events: &[InboxEvent],
    changes: &mut Changes,
) -> Result<(), sqlx::Error> {
    let by = rule.group_by();
    let cooldown = TimeDelta::from_std(rule.cooldown).unwrap_or(TimeDelta::MAX);
    let window = TimeDelta::from_std(rule.window()).unwrap_or(TimeDelta::MAX);
    // The events this rule looks at, with their group.
    let relevant: Vec<(&InboxEvent, String)> = events
        .iter()
        .filter(|e| match &rule.kind {
            RuleKind::Rate(r) => r
                .actions
                .as_ref()
                .is_none_or(|actions| actions.contains(&e.action)),
            RuleKind::FailedThenSuccess(_) => e.is_failed_login() || e.is_successful_login(),
            RuleKind::NewIp(_) => e.ip_address.is_some(),
        })
        .filter_map(|e| e.group(by).map(|g| (e, g)))
        .collect();
    if relevant.is_empty() {
        return Ok(());
    }
    let mut groups: Vec<String> = relevant.iter().map(|(_, g)| g.clone()).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut episodes = load_episodes(conn, rule, by, &groups).await?;
    let first_at = relevant[0].0.created_at;
    let last_at = relevant[relevant.len() - 1].0.created_at;
    let mut windows = if window > TimeDelta::zero() {
        // Up to a cooldown past the pass's last event: what an episode
        // starting in this pass takes in of the events evaluated before.
        load_windows(
            conn,
            &rule.name,
            &groups,
            first_at - window,
            last_at + cooldown,
        )
        .await?
    } else {
        HashMap::new()
    };
    let new_ips = match &rule.kind {
        RuleKind::NewIp(r) => new_ip_events(conn, r, &relevant).await?,
        _ => Vec::new(),
    };

    for (i, (event, group)) in relevant.iter().enumerate() {
        let at = event.created_at;
        let open = episodes
            .get(group)
            .is_some_and(|ep| ep.is_open_at(at, cooldown));
        let starts = match &rule.kind {
            RuleKind::Rate(r) => {
                let times = windows.entry(group.clone()).or_default();
                times.insert(at, event.event_id);
                changes
                    .window_rows
                    .push((rule.name.clone(), group.clone(), at, event.event_id));
                let count = times.count_in(at - window, at);
                if !open && count > r.threshold as usize {
                    let mut episode = Episode::start(event, count as i64);
                    let (later, last) = times.chained_after(at, cooldown);
                    episode.count += later as i64;
                    if let Some((last_at, last_id)) = last {
                        episode.last_at = last_at;
                        episode.last_id = last_id;
                    }
                    Some(episode)
                } else {
                    None
                }
            }
            RuleKind::FailedThenSuccess(r) => {
                let times = windows.entry(group.clone()).or_default();
                if event.is_failed_login() {
                    times.insert(at, event.event_id);
                    changes.window_rows.push((
                        rule.name.clone(),
                        group.clone(),
                        at,
                        event.event_id,
                    ));
                    // A failure counts in an open episode; it does not start one.
                    if open {
                        episodes.get_mut(group).expect("open").add(event);
                    }
                    continue;
                }
                // A success: the failures strictly before it in the window.
                let failures = times.count_in(at - window, at - TimeDelta::microseconds(1));
                (!open && failures >= r.failures as usize)
                    .then(|| Episode::start(event, failures as i64 + 1))
            }
            RuleKind::NewIp(_) => {
                if !new_ips[i] {
                    continue;
                }
                (!open).then(|| Episode::start(event, 1))
            }
        };
        match starts {
            Some(episode) => {
                // A new episode replaces the group's ended one (kept as
                // it was written).
                if let Some(old) = episodes.remove(group) {
                    if old.changed {
                        changes
                            .episodes
                            .push((rule.name.clone(), by, group.clone(), old));
                    }
                }
                episodes.insert(group.clone(), episode);
            }
            None if open => episodes.get_mut(group).expect("open").add(event),
            None => {}
        }
    }
    changes.episodes.extend(
        episodes
            .into_iter()
            .filter(|(_, ep)| ep.changed)
            .map(|(group, ep)| (rule.name.clone(), by, group, ep)),
    );
    Ok(())
}

/// The newest episode of `rule` for each of `groups`.
async fn load_episodes(
    conn: &mut PgConnection,
    rule: &Rule,
    by: GroupBy,
    groups: &[String],
) -> Result<HashMap<String, Episode>, sqlx::Error> {
    type Row = (
        String,
        Uuid,
        DateTime<Utc>,
        Uuid,
        Uuid,
        DateTime<Utc>,
        i64,
        Option<String>,
        Option<IpNet>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT DISTINCT ON (group_value) group_value, id, first_event_at, first_event_id,
                last_event_id, last_event_at, count, user_id, ip_address
         FROM user_activity_alerts
         WHERE rule = $1 AND group_kind = $2 AND group_value = ANY($3)
         ORDER BY group_value, last_event_at DESC",
    )
    .bind(&rule.name)
    .bind(by.as_str())
    .bind(groups)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(group, id, first_at, first_id, last_id, last_at, count, user_id, ip)| {
                let episode = Episode {
                    id,
                    first_at,
                    first_id,
                    last_id,
                    last_at,
                    count,
                    user_id,
                    ip,
                    is_new: false,
                    changed: false,
                };
                (group, episode)
            },
        )
        .collect())
}

/// The evaluated window events of `rule` for `groups` in `(from, to]`.
async fn load_windows(
    conn: &mut PgConnection,
    rule: &str,
    groups: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<String, WindowTimes>, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT group_value, created_at, event_id FROM user_activity_alert_window
         WHERE rule = $1 AND group_value = ANY($2) AND created_at > $3 AND created_at <= $4
         ORDER BY group_value, created_at",
    )
    .bind(rule)
    .bind(groups)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    let mut windows: HashMap<String, WindowTimes> = HashMap::new();
    for (group, at, id) in rows {
        windows.entry(group).or_default().0.push((at, id));
    }
    Ok(windows)
}

/// For each relevant event, whether it is its user's first from its
/// address (or network) in the lookback, the user having other activity
/// in it. Only the earliest event of each (user, network) in the pass is
/// asked about; later ones of the pass follow it.
async fn new_ip_events(
    conn: &mut PgConnection,
    rule: &NewIpRule,
    relevant: &[(&InboxEvent, String)],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut first_of_pair: HashMap<(&str, IpNet), usize> = HashMap::new();
    let mut asked: Vec<(i32, String, DateTime<Utc>, IpNet)> = Vec::new();
    for (i, (event, user)) in relevant.iter().enumerate() {
        let ip = event.ip_address.expect("relevant events have an address");
        let network = network_of(ip, rule);
        if first_of_pair.insert((user.as_str(), network), i).is_none() {
            asked.push((i as i32, user.clone(), event.created_at, network));
        }
    }
    let mut answers = vec![false; relevant.len()];
    if asked.is_empty() {
        return Ok(answers);
    }
    let rows: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT c.i,
                EXISTS (SELECT 1 FROM user_activity_logs l
                        WHERE l.user_id = c.u AND l.created_at >= c.t - make_interval(days => $5)
                          AND l.created_at < c.t)
                AND NOT EXISTS (SELECT 1 FROM user_activity_logs l
                        WHERE l.user_id = c.u AND l.created_at >= c.t - make_interval(days => $5)
                          AND l.created_at < c.t AND l.ip_address <<= c.n)
         FROM unnest($1::int4[], $2::text[], $3::timestamptz[], $4::inet[]) AS c(i, u, t, n)",
    )
    .bind(asked.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(asked.iter().map(|a| a.1.clone()).collect::<Vec<_>>())
    .bind(asked.iter().map(|a| a.2).collect::<Vec<_>>())
    .bind(asked.iter().map(|a| a.3).collect::<Vec<_>>())
    .bind(i32::try_from(rule.lookback_days).unwrap_or(i32::MAX))
    .fetch_all(conn)
    .await?;
    for (i, is_new) in rows {
        answers[i as usize] = is_new;
    }
    Ok(answers)
}

/// The address cut to the rule's prefix, as a network.
fn network_of(ip: IpNet, rule: &NewIpRule) -> IpNet {
    let prefix = match ip {
        IpNet::V4(_) => rule.ipv4_prefix,
        IpNet::V6(_) => rule.ipv6_prefix,
    };
    IpNet::new(ip.addr(), prefix.min(ip.max_prefix_len()))
        .map(|n| n.trunc())
        .unwrap_or(ip)
}

/// Writes the window events, the new and grown episodes, and a delivery
/// per new alert and URL; returns the rules of the alerts raised.
async fn write_changes(
    conn: &mut PgConnection,
    changes: Changes,
    webhook_urls: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    if !changes.window_rows.is_empty() {
        let (rules, groups, times, ids) = unzip4(changes.window_rows);
        sqlx::query(
            "INSERT INTO user_activity_alert_window (rule, group_value, created_at, event_id)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])",
        )
        .bind(rules)
        .bind(groups)
        .bind(times)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    }
    let (new, grown): (Vec<_>, Vec<_>) = changes.episodes.into_iter().partition(|e| e.3.is_new);
    let mut raised_ids: Vec<Uuid> = Vec::new();
    let mut raised_rules: Vec<String> = Vec::new();
    if !new.is_empty() {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "INSERT INTO user_activity_alerts
                 (id, rule, group_kind, group_value, user_id, ip_address, first_event_id,
                  first_event_at, last_event_id, last_event_at, count)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::inet[], $7::uuid[], $8::timestamptz[], $9::uuid[],
                                  $10::timestamptz[], $11::int8[])
             ON CONFLICT (rule, group_kind, group_value, first_event_at) DO NOTHING
             RETURNING id, rule",
        )
        .bind(new.iter().map(|e| e.3.id).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.0.clone()).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.1.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.2.clone()).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.user_id.clone()).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.ip).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.first_id).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.first_at).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.last_id).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.last_at).collect::<Vec<_>>())
        .bind(new.iter().map(|e| e.3.count).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (id, rule) in rows {
            raised_ids.push(id);
            raised_rules.push(rule);
        }
    }
    if !grown.is_empty() {
        sqlx::query(
            "UPDATE user_activity_alerts a
             SET count = u.count, last_event_id = u.last_id, last_event_at = u.last_at
             FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::timestamptz[])
                  AS u(id, count, last_id, last_at)
             WHERE a.id = u.id",
        )
        .bind(grown.iter().map(|e| e.3.id).collect::<Vec<_>>())
        .bind(grown.iter().map(|e| e.3.count).collect::<Vec<_>>())
        .bind(grown.iter().map(|e| e.3.last_id).collect::<Vec<_>>())
        .bind(grown.iter().map(|e| e.3.last_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !raised_ids.is_empty() && !webhook_urls.is_empty() {
        sqlx::query(
            "INSERT INTO user_activity_alert_deliveries (alert_id, url, webhook_id)
             SELECT a.id, u.url, 'msg_' || replace(a.id::text, '-', '')
             FROM unnest($1::uuid[]) AS a(id) CROSS JOIN unnest($2::text[]) AS u(url)
             WHERE NOT EXISTS (SELECT 1 FROM user_activity_webhook_disabled d WHERE d.url = u.url)
             ON CONFLICT (alert_id, url) DO NOTHING",
        )
        .bind(&raised_ids)
        .bind(webhook_urls)
        .execute(&mut *conn)
        .await?;
    }
    Ok(raised_rules)
}

type Columns4 = (Vec<String>, Vec<String>, Vec<DateTime<Utc>>, Vec<Uuid>);

fn unzip4(rows: Vec<(String, String, DateTime<Utc>, Uuid)>) -> Columns4 {
    let mut columns: Columns4 = Default::default();
    for (a, b, c, d) in rows {
        columns.0.push(a);
        columns.1.push(b);
        columns.2.push(c);
        columns.3.push(d);
    }
    columns
}

/// Deletes window events too old for any evaluation to count: older than
/// the longest window before the oldest event still evaluated.
pub async fn prune_windows(
    pool: &PgPool,
    rules: &RuleSet,
    max_lateness: Duration,
) -> Result<u64, sqlx::Error> {
    let keep = rules.longest_window() + max_lateness;
    let cutoff = Utc::now() - TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
    let done = sqlx::query("DELETE FROM user_activity_alert_window WHERE created_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn window_counts_are_half_open() {
        let mut w = WindowTimes::default();
        for s in [10, 0, 5, 5, 20] {
            w.insert(at(s), Uuid::nil());
        }
        assert_eq!(w.count_in(at(0), at(10)), 3, "(0, 10] holds 5, 5 and 10");
        assert_eq!(w.count_in(at(-1), at(20)), 5);
        assert_eq!(w.count_in(at(20), at(30)), 0);
    }

    #[test]
    fn later_events_chain_within_the_cooldown() {
        let mut w = WindowTimes::default();
        for s in [0, 12, 20, 29, 50, 55] {
            w.insert(at(s), Uuid::from_u128(s as u128));
        }
        let cooldown = TimeDelta::seconds(10);
        // From 5: 12 (7 after), 20, 29; 50 is 21 after 29.
        assert_eq!(
            w.chained_after(at(5), cooldown),
            (3, Some((at(29), Uuid::from_u128(29))))
        );
        assert_eq!(w.chained_after(at(55), cooldown), (0, None));
        assert_eq!(
            w.chained_after(at(30), cooldown),
            (0, None),
            "50 is too far"
        );
    }

    #[test]
    fn login_outcomes_read_the_status() {
        let event = |action: &str, status: Option<&str>| InboxEvent {
            event_id: Uuid::nil(),
            created_at: at(0),
            user_id: None,
            action: action.into(),
            ip_address: None,
            status: status.map(Into::into),
            received_at: at(0),
        };
        assert!(event("login", Some("401")).is_failed_login());
        assert!(event("login_failed", None).is_failed_login());
        assert!(!event("login", Some("200")).is_failed_login());
        assert!(event("login", Some("200")).is_successful_login());
        assert!(event("login", None).is_successful_login());
        assert!(!event("login", Some("503")).is_successful_login());
        assert!(!event("login", Some("503")).is_failed_login());
        assert!(!event("logout", None).is_successful_login());
    }

    #[test]
    fn networks_cut_to_the_prefix() {
        let rule = NewIpRule {
            lookback_days: 30,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        };
        let v4: IpNet = "203.0.113.77/32".parse().unwrap();
        assert_eq!(network_of(v4, &rule).to_string(), "203.0.113.0/24");
        let v6: IpNet = "2001:db8:1:2::5/128".parse().unwrap();
        assert_eq!(network_of(v6, &rule).to_string(), "2001:db8:1::/48");
    }
}
