//! What every fuzz target checks of an event a reader accepted: the row
//! the writer would store is within the contract's limits, holds nothing
//! PostgreSQL refuses or cannot give back, and normalizing it again (after
//! a trip through the wire JSON) changes nothing.

use activity_store::fuzzing::{Row, stored_row};
use activity_store::normalize::MAX_AHEAD;
use activity_store::writer::StoredEvent;
use activity_tracker::{Activity, ActivityType, limits};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The write time given to the writer (the arrival of events that bring none).
pub fn written_at() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_767_323_045_000).expect("a valid time")
}

fn chars(text: &Option<String>) -> usize {
    text.as_deref().map_or(0, |t| t.chars().count())
}

fn no_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => !text.contains('\0'),
        Value::Array(items) => items.iter().all(no_nul),
        Value::Object(map) => map.iter().all(|(k, v)| !k.contains('\0') && no_nul(v)),
        Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        _ => true,
    }
}

/// The row of `event` (which arrived at `arrival`, or at [`written_at`]),
/// checked; returns it with its details parsed.
pub fn check_event<E: StoredEvent>(
    event: &E,
    arrival: Option<DateTime<Utc>>,
) -> (Row, Option<Value>) {
    let row = stored_row(event, written_at()).expect("one event is one row");
    let action_chars = row.action.chars().count();
    assert!(
        (1..=limits::ACTION_MAX_CHARS).contains(&action_chars),
        "{row:?}"
    );
    assert!(chars(&row.user_id) <= limits::USER_ID_MAX_CHARS, "{row:?}");
    assert!(
        chars(&row.resource_type) <= limits::RESOURCE_TYPE_MAX_CHARS,
        "{row:?}"
    );
    assert!(
        chars(&row.resource_id) <= limits::RESOURCE_ID_MAX_CHARS,
        "{row:?}"
    );
    assert!(
        chars(&row.user_agent) <= limits::USER_AGENT_MAX_CHARS,
        "{row:?}"
    );
    assert!(
        chars(&row.session_id) <= limits::SESSION_ID_MAX_CHARS,
        "{row:?}"
    );
    for text in [
        &row.user_id,
        &row.resource_type,
        &row.resource_id,
        &row.user_agent,
        &row.session_id,
    ]
    .into_iter()
    .flatten()
    .chain([&row.action])
    {
        assert!(!text.contains('\0'), "NUL stored: {row:?}");
    }
    let details = row.details.as_deref().map(|text| {
        assert!(
            text.len() <= limits::DETAILS_MAX_BYTES,
            "details of {} bytes",
            text.len()
        );
        // What the read queries do with the column: it must read back.
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("stored details do not read back ({e}): {text}"));
        assert!(value.is_object(), "details not an object: {text}");
        assert!(no_nul(&value), "details PostgreSQL refuses: {text}");
        value
    });
    let arrival = arrival.unwrap_or_else(written_at);
    assert!(
        row.created_at <= arrival + MAX_AHEAD,
        "not clamped: {row:?}"
    );

    // Read back and written again: the same row.
    let mut again = Activity::at(
        ActivityType::custom(&row.action).expect("stored action is valid"),
        row.created_at,
    );
    again.id = row.id;
    again.user_id = row.user_id.clone();
    again.resource_type = row.resource_type.clone();
    again.resource_id = row.resource_id.clone();
    again.user_agent = row.user_agent.clone();
    again.session_id = row.session_id.clone();
    again.ip_address = row.ip_address;
    again.details = details.clone().map(|value| match value {
        Value::Object(map) => map,
        _ => unreachable!("checked above"),
    });
    let wire = again.to_wire_json();
    let reread = Activity::from_wire_json(wire.as_bytes()).unwrap_or_else(|e| {
        panic!("the wire JSON of a stored row does not read back ({e}): {wire}")
    });
    assert_eq!(reread, again, "wire round trip: {wire}");
    let second = stored_row(&reread, arrival).expect("one row");
    let second_details = second
        .details
        .as_deref()
        .map(|t| serde_json::from_str::<Value>(t).unwrap());
    assert_eq!(second_details, details, "normalizing twice changed details");
    assert_eq!(
        Row {
            details: None,
            ..second
        },
        Row {
            details: None,
            ..row.clone()
        },
        "normalizing twice changed the row"
    );
    (row, details)
}
