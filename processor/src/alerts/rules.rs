//! The alert rules and their parameters: the built-in defaults, or a TOML
//! file named by `ALERT_RULES` (`none` turns the rules off).
//!
//! Each top-level table of the file is one rule, named by its key; its
//! `kind` is the key itself unless given (`rate`, `failed_then_success`,
//! `new_ip`), so a file may hold several rules of one kind. The file is the
//! whole rule set: a built-in rule it does not list is off.
//!
//! ```
//! use activity_processor::alerts::rules::RuleSet;
//!
//! let rules = RuleSet::from_toml(
//!     r#"
//!     [rate]
//!     threshold = 50
//!     window = "5m"
//!
//!     [payment_burst]
//!     kind = "rate"
//!     threshold = 3
//!     window = "1m"
//!     actions = ["payment", "withdrawal"]
//!     group_by = "ip"
//!     "#,
//! )
//! .unwrap();
//! assert_eq!(rules.rules().len(), 2);
//! let error = RuleSet::from_toml("[rate]\nwindow = \"5 minutes\"").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "rule `rate`, field `window`: a duration is a number and a unit (s, m, h, d), like \"5m\" (got \"5 minutes\")"
//! );
//! ```

use std::fmt;
use std::time::Duration;

use toml::{Table, Value};

/// The value of `ALERT_RULES` that turns the rules off.
pub const RULES_OFF: &str = "none";

/// What a rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The event's `user_id` (events without one do not count).
    User,
    /// The event's client IP (events without one do not count).
    Ip,
}

impl GroupBy {
    /// As stored in `user_activity_alerts.group_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::User => "user",
            GroupBy::Ip => "ip",
        }
    }
}

/// More than `threshold` matching events by one group within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    /// The alert needs more than this many events in a window.
    pub threshold: u32,
    /// The sliding window.
    pub window: Duration,
    /// By user or by IP.
    pub group_by: GroupBy,
    /// Only these actions count; `None`: all.
    pub actions: Option<Vec<String>>,
}

/// `failures` or more failed logins by one group, then a successful login,
/// within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedThenSuccessRule {
    /// Failed logins needed before the success.
    pub failures: u32,
    /// The window the failures and the success fall in.
    pub window: Duration,
    /// By user or by IP.
    pub group_by: GroupBy,
}

/// A user's first activity from an IP (or its network) not seen for that
/// user in the last `lookback_days`; users without activity in that time
/// do not alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIpRule {
    /// How far back an address counts as known.
    pub lookback_days: u32,
    /// IPv4 addresses are compared by this prefix (32: the address; 24:
    /// its /24).
    pub ipv4_prefix: u8,
    /// IPv6 addresses are compared by this prefix (128 or, say, 48).
    pub ipv6_prefix: u8,
}

/// The condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// See [`RateRule`].
    Rate(RateRule),
    /// See [`FailedThenSuccessRule`].
    FailedThenSuccess(FailedThenSuccessRule),
    /// See [`NewIpRule`].
    NewIp(NewIpRule),
}

/// One rule: its name (as alerts show it), its condition, and its cooldown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique within the set; `rule` of its alerts.
    pub name: String,
    /// The condition.
    pub kind: RuleKind,
    /// An episode ends when no matching event came for this long.
    pub cooldown: Duration,
}

impl Rule {
    /// What it counts by (`new_ip`: the user).
    pub fn group_by(&self) -> GroupBy {
        match &self.kind {
            RuleKind::Rate(r) => r.group_by,
            RuleKind::FailedThenSuccess(r) => r.group_by,
            RuleKind::NewIp(_) => GroupBy::User,
        }
    }

    /// How far back from an event its evaluation looks at evaluated
    /// events (zero for rules without a window).
    pub fn window(&self) -> Duration {
        match &self.kind {
            RuleKind::Rate(r) => r.window,
            RuleKind::FailedThenSuccess(r) => r.window,
            RuleKind::NewIp(_) => Duration::ZERO,
        }
    }
}

/// The rules a processor evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

const MINUTE: u64 = 60;

impl RuleSet {
    /// The three built-in rules with their defaults: `rate` (more than 50
    /// activities by one user in 5 minutes, the original design's rule),
    /// `failed_then_success` (5 failed logins then a success within 10
    /// minutes, by user), `new_ip` (an address not seen for the user in 30
    /// days); each cooldown is its window (`new_ip`: 1 hour).
    pub fn builtin() -> Self {
        Self {
            rules: vec![
                default_rule("rate", "rate").expect("the built-in kind"),
                default_rule("failed_then_success", "failed_then_success")
                    .expect("the built-in kind"),
                default_rule("new_ip", "new_ip").expect("the built-in kind"),
            ],
        }
    }

    /// No rules: events are taken from the inbox and not evaluated.
    pub fn none() -> Self {
        Self { rules: Vec::new() }
    }

    /// The rules of a TOML document (see the module's documentation).
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| RulesError {
            rule: None,
            field: None,
            message: format!("not valid TOML: {}", e.message()),
        })?;
        let mut rules = Vec::new();
        for (name, value) in &table {
            let Value::Table(fields) = value else {
                return Err(RulesError::rule(
                    name,
                    "each rule is a table, like [rate] followed by its fields",
                ));
            };
            if let Some(rule) = parse_rule(name, fields)? {
                rules.push(rule);
            }
        }
        Ok(Self { rules })
    }

    /// What `ALERT_RULES` says: unset → [`builtin`](Self::builtin), `none`
    /// → [`none`](Self::none), else the path of a TOML file.
    pub fn from_setting(setting: Option<&str>) -> Result<Self, RulesError> {
        match setting.map(str::trim) {
            None | Some("") => Ok(Self::builtin()),
            Some(RULES_OFF) => Ok(Self::none()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| RulesError {
                    rule: None,
                    field: None,
                    message: format!("cannot read the rule file {path}: {e}"),
                })?;
                Self::from_toml(&text).map_err(|e| e.in_file(path))
            }
        }
    }

    /// The rules: a file's in name order, the built-ins as listed above.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The longest window of any rule: how long evaluated events are kept
    /// for windows to count.
    pub fn longest_window(&self) -> Duration {
        self.rules
            .iter()
            .map(Rule::window)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// A rule file that cannot work: which rule, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    rule: Option<String>,
    field: Option<String>,
    message: String,
}

impl RulesError {
    fn rule(rule: &str, message: impl Into<String>) -> Self {
        Self {
            rule: Some(rule.to_owned()),
            field: None,
            message: message.into(),
        }
    }

    fn field(rule: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            rule: Some(rule.to_owned()),
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    fn in_file(self, path: &str) -> Self {
        Self {
            message: format!("{} (in {path})", self.message),
            ..self
        }
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rule, &self.field) {
            (Some(rule), Some(field)) => write!(f, "rule `{rule}`, field `{field}`: ")?,
            (Some(rule), None) => write!(f, "rule `{rule}`: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RulesError {}

/// A rule of `kind` with every parameter at its default.
fn default_rule(name: &str, kind: &str) -> Option<Rule> {
    let (kind, cooldown) = match kind {
        "rate" => (
            RuleKind::Rate(RateRule {
                threshold: 50,
                window: Duration::from_secs(5 * MINUTE),
                group_by: GroupBy::User,
                actions: None,
            }),
            Duration::from_secs(5 * MINUTE),
        ),
        "failed_then_success" => (
            RuleKind::FailedThenSuccess(FailedThenSuccessRule {
                failures: 5,
                window: Duration::from_secs(10 * MINUTE),
                group_by: GroupBy::User,
            }),
            Duration::from_secs(10 * MINUTE),
        ),
        "new_ip" => (
            RuleKind::NewIp(NewIpRule {
                lookback_days: 30,
                ipv4_prefix: 32,
                ipv6_prefix: 128,
            }),
            Duration::from_secs(60 * MINUTE),
        ),
        _ => return None,
    };
    Some(Rule {
        name: name.to_owned(),
        kind,
        cooldown,
    })
}

const KINDS: &str = "`rate`, `failed_then_success` or `new_ip`";

/// One rule from its table; `None` when `enabled = false`.
fn parse_rule(name: &str, fields: &Table) -> Result<Option<Rule>, RulesError> {
    if name.is_empty() || name.len() > 100 {
        return Err(RulesError::rule(name, "a rule name is 1 to 100 characters"));
    }
    let fields = Fields { rule: name, fields };
    let kind = match fields.get("kind") {
        Some(value) => fields.string("kind", value)?,
        None => name.to_owned(),
    };
    let Some(mut rule) = default_rule(name, &kind) else {
        let message = if fields.get("kind").is_some() {
            format!("unknown kind `{kind}`: expected {KINDS}")
        } else {
            format!("unknown rule: name it {KINDS}, or give its `kind`")
        };
        let field = if fields.get("kind").is_some() {
            "kind"
        } else {
            ""
        };
        return Err(if field.is_empty() {
            RulesError::rule(name, message)
        } else {
            RulesError::field(name, field, message)
        });
    };
    let mut cooldown_given = false;
    for (key, value) in fields.fields {
        match (key.as_str(), &mut rule.kind) {
            ("kind", _) => {}
            ("enabled", _) => {
                if !fields.boolean(key, value)? {
                    return Ok(None);
                }
            }
            ("cooldown", _) => {
                rule.cooldown = fields.duration(key, value)?;
                cooldown_given = true;
            }
            ("threshold", RuleKind::Rate(r)) => r.threshold = fields.count(key, value)?,
            ("window", RuleKind::Rate(r)) => r.window = fields.duration(key, value)?,
            ("group_by", RuleKind::Rate(r)) => r.group_by = fields.group_by(key, value)?,
            ("actions", RuleKind::Rate(r)) => r.actions = Some(fields.actions(key, value)?),
            ("failures", RuleKind::FailedThenSuccess(r)) => {
                r.failures = fields.count(key, value)?
            }
            ("window", RuleKind::FailedThenSuccess(r)) => r.window = fields.duration(key, value)?,
            ("group_by", RuleKind::FailedThenSuccess(r)) => {
                r.group_by = fields.group_by(key, value)?
            }
            ("lookback_days", RuleKind::NewIp(r)) => {
                r.lookback_days = fields.count(key, value)?;
                if r.lookback_days > 3660 {
                    return Err(RulesError::field(name, key, "at most 3660 days"));
                }
            }
            ("ipv4_prefix", RuleKind::NewIp(r)) => r.ipv4_prefix = fields.prefix(key, value, 32)?,
            ("ipv6_prefix", RuleKind::NewIp(r)) => {
                r.ipv6_prefix = fields.prefix(key, value, 128)?
            }
            _ => {
                return Err(RulesError::field(
                    name,
                    key,
                    format!("unknown field for a `{kind}` rule: {}", known_fields(&kind)),
                ));
            }
        }
    }
    if !cooldown_given && rule.window() > Duration::ZERO {
        rule.cooldown = rule.window();
    }
    if rule.cooldown.is_zero() {
        return Err(RulesError::field(
            name,
            "cooldown",
            "must be more than zero",
        ));
    }
    Ok(Some(rule))
}

fn known_fields(kind: &str) -> &'static str {
    match kind {
        "rate" => "expected kind, enabled, threshold, window, group_by, actions or cooldown",
        "failed_then_success" => "expected kind, enabled, failures, window, group_by or cooldown",
        _ => "expected kind, enabled, lookback_days, ipv4_prefix, ipv6_prefix or cooldown",
    }
}

/// A rule's table, with typed getters whose errors name the rule and field.
struct Fields<'a> {
    rule: &'a str,
    fields: &'a Table,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    fn error(&self, key: &str, message: impl Into<String>) -> RulesError {
        RulesError::field(self.rule, key, message)
    }

    fn string(&self, key: &str, value: &Value) -> Result<String, RulesError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.error(key, format!("must be a string (got {value})")))
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<bool, RulesError> {
        value
            .as_bool()
            .ok_or_else(|| self.error(key, format!("must be true or false (got {value})")))
    }

    fn count(&self, key: &str, value: &Value) -> Result<u32, RulesError> {
        value
            .as_integer()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                self.error(
                    key,
                    format!(
                        "must be a whole number from 1 to {} (got {value})",
                        u32::MAX
                    ),
                )
            })
    }

    fn prefix(&self, key: &str, value: &Value, max: u8) -> Result<u8, RulesError> {
        value
            .as_integer()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                self.error(
                    key,
                    format!("must be a prefix length from 1 to {max} (got {value})"),
                )
            })
    }

    fn duration(&self, key: &str, value: &Value) -> Result<Duration, RulesError> {
        let text = value.as_str().unwrap_or_default();
        parse_duration(text).ok_or_else(|| {
            self.error(
                key,
                format!(
                    "a duration is a number and a unit (s, m, h, d), like \"5m\" (got {value})"
                ),
            )
        })
    }

    fn group_by(&self, key: &str, value: &Value) -> Result<GroupBy, RulesError> {
        match value.as_str() {
            Some("user") => Ok(GroupBy::User),
            Some("ip") => Ok(GroupBy::Ip),
            _ => Err(self.error(key, format!("must be \"user\" or \"ip\" (got {value})"))),
        }
    }

    fn actions(&self, key: &str, value: &Value) -> Result<Vec<String>, RulesError> {
        let bad = || {
            self.error(
                key,
                format!("must be a list of action names, like [\"payment\"] (got {value})"),
            )
        };
        let list = value.as_array().ok_or_else(bad)?;
        let actions: Vec<String> = list
            .iter()
            .map(|a| {
                a.as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 100)
                    .map(str::to_owned)
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        if actions.is_empty() {
            return Err(self.error(
                key,
                "must name at least one action (leave it out to count all)",
            ));
        }
        Ok(actions)
    }
}

/// `"90s"`, `"5m"`, `"1h"`, `"30d"`: a positive whole number and a unit,
/// at most a year.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit {
        "s" => 1,
        "m" => MINUTE,
        "h" => 60 * MINUTE,
        "d" => 24 * 60 * MINUTE,
        _ => return None,
    };
    let total = number.checked_mul(seconds)?;
    (total <= 366 * 24 * 3600).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_the_documented_defaults() {
        let rules = RuleSet::builtin();
        let names: Vec<&str> = rules.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rate", "failed_then_success", "new_ip"]);
        let RuleKind::Rate(rate) = &rules.rules()[0].kind else {
            panic!()
        };
        assert_eq!(
            (rate.threshold, rate.window),
            (50, Duration::from_secs(300))
        );
        assert_eq!(rules.longest_window(), Duration::from_secs(600));
        assert_eq!(
            RuleSet::from_setting(Some("none")).unwrap().rules().len(),
            0
        );
        assert_eq!(RuleSet::from_setting(None).unwrap(), rules);
    }

    #[test]
    fn a_file_tunes_disables_and_adds_rules() {
        let rules = RuleSet::from_toml(
            "[rate]\nthreshold = 10\nwindow = \"1m\"\ngroup_by = \"ip\"\n\
             [new_ip]\nenabled = false\n\
             [logins]\nkind = \"failed_then_success\"\nfailures = 3\ncooldown = \"2h\"\n",
        )
        .unwrap();
        assert_eq!(rules.rules().len(), 2);
        let names: Vec<&str> = rules.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["logins", "rate"]);
        let rate = &rules.rules()[1];
        assert_eq!(
            rate.cooldown,
            Duration::from_secs(60),
            "cooldown defaults to the window"
        );
        assert_eq!(rate.group_by(), GroupBy::Ip);
        let logins = &rules.rules()[0];
        assert_eq!(logins.name, "logins");
        assert_eq!(logins.cooldown, Duration::from_secs(7200));
        let RuleKind::FailedThenSuccess(f) = &logins.kind else {
            panic!()
        };
        assert_eq!((f.failures, f.window), (3, Duration::from_secs(600)));
    }

    #[test]
    fn bad_files_name_the_rule_and_the_field() {
        let cases = [
            (
                "[rate]\nthreshold = 0",
                "rule `rate`, field `threshold`: must be a whole number",
            ),
            (
                "[rate]\nthreshhold = 5",
                "rule `rate`, field `threshhold`: unknown field",
            ),
            (
                "[rate]\ngroup_by = \"session\"",
                "rule `rate`, field `group_by`: must be \"user\" or \"ip\"",
            ),
            (
                "[x]\nkind = \"burst\"",
                "rule `x`, field `kind`: unknown kind `burst`",
            ),
            ("[burst]\nthreshold = 5", "rule `burst`: unknown rule"),
            (
                "[new_ip]\nipv4_prefix = 33",
                "rule `new_ip`, field `ipv4_prefix`: must be a prefix length",
            ),
            (
                "[rate]\nactions = []",
                "rule `rate`, field `actions`: must name at least one",
            ),
            (
                "[rate]\nwindow = \"0m\"",
                "rule `rate`, field `window`: a duration",
            ),
            ("rate = 5", "rule `rate`: each rule is a table"),
            ("[rate", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let error = RuleSet::from_toml(text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{text:?} gave {error:?}");
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        for bad in [
            "",
            "5",
            "m",
            "-5m",
            "5 m",
            "5M",
            "1.5h",
            "400d",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
