//! The body of a webhook delivery: the Standard Webhooks envelope
//! (`type`, `timestamp`, `data`) around the alert as the admin API shows
//! it, plus the link to it.
//!
//! ```
//! use activity_processor::webhook::payload::{EVENT_TYPE, body};
//! # use uuid::Uuid;
//! # let at = chrono::Utc::now();
//! # let alert = activity_store::alerts::Alert {
//! #     id: Uuid::now_v7(), rule: "rate".into(), group_kind: "user".into(),
//! #     group_value: "u1".into(), user_id: Some("u1".into()), ip_address: None,
//! #     first_event_id: Uuid::now_v7(), first_event_at: at, last_event_id: Uuid::now_v7(),
//! #     last_event_at: at, count: 12, status: "open".into(), acknowledged_at: None,
//! #     created_at: at,
//! # };
//! let json = body(&alert, "https://admin.example.com/api/v1/admin/user-activities/alerts/x");
//! let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
//! assert_eq!(value["type"], EVENT_TYPE);
//! assert_eq!(value["data"]["rule"], "rate");
//! assert!(value["data"]["admin_url"].as_str().unwrap().starts_with("https://"));
//! ```

use activity_store::alerts::Alert;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// The `type` of every delivery: an alert was raised.
pub const EVENT_TYPE: &str = "alert.raised";

/// The envelope.
#[derive(Serialize)]
struct Envelope<'a> {
    /// [`EVENT_TYPE`].
    r#type: &'static str,
    /// When the alert was raised, RFC 3339 UTC.
    timestamp: String,
    /// The alert and its link.
    data: Data<'a>,
}

/// `data`: the alert's own fields, and `admin_url`.
#[derive(Serialize)]
struct Data<'a> {
    /// Serialized as `activity_store::alerts::Alert` is everywhere.
    #[serde(flatten)]
    alert: &'a Alert,
    /// Where an admin sees (and acknowledges) the alert.
    admin_url: &'a str,
}

/// The JSON body for `alert`, linking to `admin_url`. The `timestamp` is
/// when the alert was raised, so it is the same on every attempt; the
/// alert itself is read afresh for each (its `count` and `status` may
/// have moved).
pub fn body(alert: &Alert, admin_url: &str) -> Vec<u8> {
    let envelope = Envelope {
        r#type: EVENT_TYPE,
        timestamp: rfc3339(alert.created_at),
        data: Data { alert, admin_url },
    };
    serde_json::to_vec(&envelope).expect("an alert serializes: strings, numbers and UUIDs only")
}

/// `at` in RFC 3339 UTC, written as the alert's own times are (`Z`, the
/// fraction of a second only as long as needed).
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use uuid::Uuid;

    fn alert() -> Alert {
        let at = "2024-07-01T10:00:00Z".parse().unwrap();
        Alert {
            id: Uuid::from_u128(1),
            rule: "new_ip".into(),
            group_kind: "user".into(),
            group_value: "u-7".into(),
            user_id: Some("u-7".into()),
            ip_address: Some("203.0.113.9".into()),
            first_event_id: Uuid::from_u128(2),
            first_event_at: at,
            last_event_id: Uuid::from_u128(3),
            last_event_at: at,
            count: 1,
            status: "open".into(),
            acknowledged_at: None,
            created_at: "2024-07-01T10:00:01.250Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_body_is_the_envelope_around_the_alert_and_its_link() {
        let alert = alert();
        let value: Value = serde_json::from_slice(&body(&alert, "http://x/a")).unwrap();
        let mut data = serde_json::to_value(&alert).unwrap();
        data["admin_url"] = json!("http://x/a");
        assert_eq!(
            value,
            json!({
                "type": "alert.raised",
                "timestamp": "2024-07-01T10:00:01.250Z",
                "data": data,
            })
        );
        assert_eq!(value["timestamp"], value["data"]["created_at"]);
        assert_eq!(value["data"]["ip_address"], "203.0.113.9");
        assert_eq!(value["data"]["id"], Uuid::from_u128(1).to_string());
    }
}
