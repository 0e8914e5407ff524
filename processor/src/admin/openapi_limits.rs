//! The bounds the handlers check, stated in the OpenAPI document's
//! parameter schemas, so that generated clients and schema-driven testers
//! (schemathesis) know which values are valid: `days` 1..=366, each
//! `limit`'s range, user id lengths, the cursor's shape. The numbers are
//! the store's own constants, so the document cannot drift from the checks.

use activity_store::{alerts, queries};
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{OpenApi, RefOr, Schema};

use super::PREFIX;

/// What one parameter accepts.
enum Limit {
    /// An integer in `min..=max` (all fit `int32`).
    Integer { min: u32, max: u32 },
    /// Text of `min..=max` characters (`max`: none).
    Text { min: usize, max: Option<usize> },
    /// A `next_cursor`: 48 hex digits.
    Cursor,
    /// A UUID (an alert's id).
    Uuid,
    /// An IANA time-zone name the server knows.
    TimeZone,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// The limits of `parameter` on the route `path` (without [`PREFIX`]).
fn limit(path: &str, parameter: &str) -> Option<Limit> {
    let days = Limit::Integer {
        min: 1,
        max: queries::MAX_DAYS,
    };
    let user_id = Limit::Text {
        min: 1,
        max: Some(queries::MAX_USER_ID_CHARS),
    };
    Some(match (path, parameter) {
        (_, "days") => days,
        ("/user/{user_id}", "limit") => Limit::Integer {
            min: 1,
            max: queries::MAX_RECENT_LIMIT,
        },
        ("/user/{user_id}/path", "limit") => Limit::Integer {
            min: 1,
            max: queries::MAX_PATH_LIMIT,
        },
        ("/top-users", "limit") => Limit::Integer {
            min: 1,
            max: queries::MAX_TOP_USERS,
        },
        ("/alerts", "limit") => Limit::Integer {
            min: 1,
            max: alerts::MAX_ALERT_LIMIT,
        },
        (_, "cursor") => Limit::Cursor,
        ("/alerts/{id}" | "/alerts/{id}/acknowledge", "id") => Limit::Uuid,
        ("/user/{user_id}/profile", "tz") => Limit::TimeZone,
        ("/alerts", "status") => Limit::OneOf(&["open", "acknowledged"]),
        ("/alerts", "rule") => Limit::Text {
            min: 1,
            max: Some(100),
        },
        // Erasure and export look the user up as the writer stores it
        // (truncated to 255 characters), so any length but zero is valid.
        ("/user/{user_id}/export", "user_id") => Limit::Text { min: 1, max: None },
        (_, "user_id") => user_id,
        ("/user/{user_id}/export", "format") => Limit::OneOf(&["ndjson", "csv"]),
        ("/user/{user_id}", "mode") => Limit::OneOf(&["delete", "pseudonymize"]),
        _ => return None,
    })
}

/// The shape of the cursors the document promises to take.
pub(super) const CURSOR_PATTERN: &str = "^(0[0-9a-f]{15}|ff[0-9a-f]{14})[0-9a-f]{32}$";

fn schema(limit: Limit) -> Schema {
    let builder = ObjectBuilder::new();
    let builder = match limit {
        Limit::Integer { min, max } => builder
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(min))
            .maximum(Some(max)),
        Limit::Text { min, max } => builder
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(max),
        // Every cursor of a row from 313 AD to year 38,000 (16 hex digits
        // of microseconds since 1970, two's complement, then the id's 32);
        // the server also reads those of rows further out.
        Limit::Cursor => builder
            .schema_type(Type::String)
            .min_length(Some(48))
            .max_length(Some(48))
            .pattern(Some(CURSOR_PATTERN)),
        Limit::Uuid => builder
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        Limit::TimeZone => builder
            .schema_type(Type::String)
            .enum_values(Some(queries::profile::time_zone_names())),
        Limit::OneOf(words) => builder
            .schema_type(Type::String)
            .enum_values(Some(words.iter().copied())),
    };
    Schema::Object(builder.build())
}

fn apply(path: &str, operation: &mut Operation, erase: bool) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(Parameter {
            name, schema: slot, ..
        }) = parameter
        else {
            continue;
        };
        // DELETE user/{user_id} takes any non-empty id, like the export.
        let limit = if erase && name == "user_id" {
            Some(Limit::Text { min: 1, max: None })
        } else {
            limit(path, name)
        };
        if let Some(limit) = limit {
            *slot = Some(RefOr::T(schema(limit)));
        }
    }
}

/// States every parameter's limits in `openapi`.
pub(super) fn state_limits(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let Some(route) = path.strip_prefix(PREFIX) else {
            continue;
        };
        for operation in [&mut item.get, &mut item.post, &mut item.put]
            .into_iter()
            .flatten()
        {
            apply(route, operation, false);
        }
        if let Some(operation) = &mut item.delete {
            apply(route, operation, true);
        }
        // The export answers CSV too (`format=csv`), with the same rows.
        if route == "/user/{user_id}/export"
            && let Some(RefOr::T(ok)) = item
                .get
                .as_mut()
                .and_then(|get| get.responses.responses.get_mut("200"))
            && let Some(ndjson) = ok.content.get("application/x-ndjson").cloned()
        {
            ok.content.insert("text/csv".to_owned(), ndjson);
        }
    }
}
