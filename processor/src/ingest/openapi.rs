//! The ingest API's OpenAPI 3.1 document, served at [`OPENAPI_PATH`]
//! without credentials (it tells nothing a Segment SDK's docs do not).
//!
//! Written by hand rather than derived, because what decides whether a
//! message is stored is more than its Rust type: a `userId` *or* an
//! `anonymousId`, length limits that apply only to the kinds that are
//! stored, `properties.session_id` read only when `context.sessionId` is
//! empty, and a batch answered 200 when it holds *at least one* valid
//! message (`contains`). The schemas say exactly that, so a client
//! generated from them, or schemathesis (`scripts/schemathesis.sh`),
//! agrees with the server on what is refused. The limits come from the
//! same constants the mapping uses. What a schema cannot say (a
//! `timestamp` at most a day ahead of its arrival, the serialized sizes)
//! the descriptions do.

use activity_tracker::limits;
use serde_json::{Value, json};

use super::limits::{MAX_EVENT_BYTES, MAX_REQUEST_BYTES};
use super::mapping::Kind;

/// Where the ingest listener serves the document.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert("/v1/batch".to_owned(), batch_path());
    for kind in [
        Kind::Track,
        Kind::Page,
        Kind::Screen,
        Kind::Identify,
        Kind::Group,
        Kind::Alias,
    ] {
        paths.insert(format!("/v1/{}", kind.name()), single_path(kind));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "activity-processor ingest API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The Segment tracking API's shape: unmodified Segment and RudderStack SDKs send \
                 here by changing only their host (docs/ingest.md has every rule). Every path \
                 also answers with a trailing slash. A request is at most {MAX_REQUEST_BYTES} \
                 bytes and an event at most {MAX_EVENT_BYTES} bytes of JSON, both measured \
                 after `Content-Encoding: gzip` is undone (413 / `event_too_large`); an event's \
                 `details` (its properties and the added keys) at most {} bytes \
                 (`properties_too_large`). The write key goes as the HTTP Basic user name with \
                 an empty password, or as `writeKey` in the body.",
                limits::DETAILS_MAX_BYTES
            ),
        },
        "security": [{ "writeKey": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "One of INGEST_WRITE_KEYS as the user name, the password empty.",
                }
            },
            "schemas": schemas(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before sending again.",
                    "required": true,
                    "schema": { "type": "integer", "minimum": 1 },
                }
            },
            "responses": responses(),
        },
    })
}

fn batch_path() -> Value {
    json!({
        "post": {
            "operationId": "batch",
            "summary": "Several calls in one request, as the SDKs send them",
            "description": "Stores the valid messages (one stream entry, written before the \
                answer) and lists the others by index in `rejected`. 200 when at least one \
                message is valid; 400 when none is, with every one listed.",
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Batch" } } },
            },
            "responses": operation_responses(),
        }
    })
}

fn single_path(kind: Kind) -> Value {
    let name = kind.name();
    let (summary, schema) = match kind {
        Kind::Track => ("Records one action (`event`) as an activity", "Track"),
        Kind::Page => ("Records a page view (action `page_view`)", "Page"),
        Kind::Screen => ("Records a screen view (action `screen_view`)", "Screen"),
        Kind::Identify => ("Accepted and counted, not stored", "Identify"),
        Kind::Group => ("Accepted and counted, not stored", "Group"),
        Kind::Alias => ("Accepted and counted, not stored", "Alias"),
    };
    json!({
        "post": {
            "operationId": name,
            "summary": summary,
            "description": format!(
                "One `{name}` call. Its `type`, if any, is not read: the path names the call."
            ),
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": {
                    "allOf": [
                        { "$ref": format!("#/components/schemas/{schema}") },
                        { "$ref": "#/components/schemas/SingleBody" },
                    ]
                } } },
            },
            "responses": operation_responses(),
        }
    })
}

fn operation_responses() -> Value {
    json!({
        "200": {
            "description": "Written to the stream (durable) or, for identify, group and alias, counted.",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } },
        },
        "400": { "$ref": "#/components/responses/BadRequest" },
        "401": { "$ref": "#/components/responses/Unauthorized" },
        "408": { "$ref": "#/components/responses/Timeout" },
        "413": { "$ref": "#/components/responses/TooLarge" },
        "415": { "$ref": "#/components/responses/UnsupportedEncoding" },
        "429": { "$ref": "#/components/responses/RateLimited" },
        "503": { "$ref": "#/components/responses/Unavailable" },
    })
}

fn responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        })
    };
    let mut unauthorized = error("No write key, or not one of INGEST_WRITE_KEYS.");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": { "required": true, "schema": { "type": "string" } }
    });
    let mut rate_limited = error("The source is over INGEST_RATE_LIMIT events a second.");
    rate_limited["headers"] =
        json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } });
    let mut unavailable = error(
        "Nothing was accepted: Redis cannot be written, or the stream's backlog is over \
         INGEST_MAX_BACKLOG. The SDKs retry.",
    );
    unavailable["headers"] =
        json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } });
    json!({
        "BadRequest": error(
            "Not JSON, not a message or batch, an empty batch, or (with `rejected`) no valid message."
        ),
        "Unauthorized": unauthorized,
        "Timeout": error("The request was not read or answered in time."),
        "TooLarge": error("The request is over the size limit (after decompression)."),
        "UnsupportedEncoding": error("A `Content-Encoding` other than gzip or identity."),
        "RateLimited": rate_limited,
        "Unavailable": unavailable,
    })
}

/// Non-empty text or a number: what makes an id present.
fn present_id() -> Value {
    json!({ "anyOf": [{ "type": "string", "minLength": 1 }, { "type": "number" }] })
}

/// The characters Rust's `str::trim` removes (Unicode `White_Space`),
/// spelled out because a regex's `\s` differs from it between dialects.
const NOT_WHITE_SPACE: &str = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

fn schemas() -> Value {
    let id = json!({ "type": ["string", "number", "null"] });
    let read_fields = json!({
        "type": { "type": ["string", "null"] },
        "event": { "type": ["string", "null"] },
        "userId": id,
        "anonymousId": id,
        "messageId": id,
        "timestamp": { "type": ["string", "null"] },
        "properties": { "type": ["object", "null"] },
        "context": {
            "type": ["object", "null"],
            "properties": {
                "userAgent": { "type": ["string", "null"] },
                "sessionId": id,
                "ip": { "description": "Used only for the sources in INGEST_TRUSTED_IP_SOURCES." },
            },
        },
        "name": {},
        "category": {},
    });
    let stored_fields = json!({
        "userId": {
            "type": ["string", "number", "null"],
            "maxLength": limits::USER_ID_MAX_CHARS,
            "description": "The activity's user_id; an empty one counts as absent.",
        },
        "anonymousId": {
            "type": ["string", "number", "null"],
            "description": "Kept in details.anonymous_id.",
        },
        "messageId": {
            "type": ["string", "number", "null"],
            "description": "The activity's id: itself when a UUID, else a UUID v5 of \
                `<source>:<messageId>` (docs/ingest.md). A retry with the same one is stored once.",
        },
        "timestamp": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "RFC 3339 with an offset; the activity's created_at as sent. \
                More than a day after the request's arrival: rejected (`timestamp_in_future`). \
                Absent: the arrival time.",
        },
        "properties": {
            "type": ["object", "null"],
            "description": "The activity's details; resource_type and resource_id, when \
                strings, are lifted into their columns.",
            "properties": {
                "resource_type": { "maxLength": limits::RESOURCE_TYPE_MAX_CHARS },
                "resource_id": { "maxLength": limits::RESOURCE_ID_MAX_CHARS },
            },
        },
        "context": {
            "type": ["object", "null"],
            "properties": {
                "userAgent": { "type": ["string", "null"], "maxLength": limits::USER_AGENT_MAX_CHARS },
                "sessionId": { "type": ["string", "number", "null"], "maxLength": limits::SESSION_ID_MAX_CHARS },
            },
        },
    });
    // `properties.session_id` is the session only when `context.sessionId`
    // is absent or empty, and is checked only then.
    let session_rule = json!({
        "anyOf": [
            { "required": ["context"], "properties": { "context": {
                "type": "object", "required": ["sessionId"], "properties": { "sessionId": present_id() },
            } } },
            { "properties": { "properties": { "anyOf": [
                { "type": "null" },
                { "type": "object", "properties": { "session_id": {
                    "type": ["string", "number", "null"], "maxLength": limits::SESSION_ID_MAX_CHARS,
                } } },
            ] } } },
        ]
    });
    let has_user = json!({
        "anyOf": [
            { "required": ["userId"], "properties": { "userId": present_id() } },
            { "required": ["anonymousId"], "properties": { "anonymousId": present_id() } },
        ],
        "description": "A `userId` or an `anonymousId` (neither: `missing_user`).",
    });
    let message = json!({
        "type": "object",
        "description": "What every call needs: the fields read have these types, and a user.",
        "properties": read_fields,
        "allOf": [has_user],
    });
    let stored = json!({
        "description": "A call that is stored: the limits of the columns it fills.",
        "allOf": [
            { "$ref": "#/components/schemas/Message" },
            { "properties": stored_fields },
            session_rule,
        ],
    });
    let track = json!({
        "description": "A `track` call: one activity whose action is `event`.",
        "allOf": [
            { "$ref": "#/components/schemas/Stored" },
            {
                "required": ["event"],
                "properties": { "event": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits::ACTION_MAX_CHARS,
                    "pattern": NOT_WHITE_SPACE,
                    "description": "The action; not only white space.",
                } },
            },
        ],
    });
    let page = json!({
        "description": "A page view: action `page_view`, `name` and `category` in details.",
        "allOf": [{ "$ref": "#/components/schemas/Stored" }],
    });
    let screen = json!({
        "description": "A screen view: action `screen_view`, `name` and `category` in details.",
        "allOf": [{ "$ref": "#/components/schemas/Stored" }],
    });
    let not_stored = |kind: &str| {
        json!({
            "description": format!("A `{kind}` call: accepted and counted, not stored."),
            "allOf": [{ "$ref": "#/components/schemas/Message" }],
        })
    };
    let item = |kind: Kind, schema: &str| {
        json!({
            "allOf": [
                { "$ref": format!("#/components/schemas/{schema}") },
                { "required": ["type"], "properties": { "type": { "const": kind.name() } } },
            ]
        })
    };
    json!({
        "Message": message,
        "Stored": stored,
        "Track": track,
        "Page": page,
        "Screen": screen,
        "Identify": not_stored("identify"),
        "Group": not_stored("group"),
        "Alias": not_stored("alias"),
        "SingleBody": {
            "type": "object",
            "properties": { "writeKey": { "type": ["string", "null"] } },
        },
        "BatchItem": {
            "description": "A valid message of a batch: its `type` names the call.",
            "anyOf": [
                item(Kind::Track, "Track"),
                item(Kind::Page, "Page"),
                item(Kind::Screen, "Screen"),
                item(Kind::Identify, "Identify"),
                item(Kind::Group, "Group"),
                item(Kind::Alias, "Alias"),
            ],
        },
        "Batch": {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "minItems": 1,
                    "description": "Any items; those that are not a valid message are \
                        rejected by index, the others stored. At least one must be valid.",
                    "contains": { "$ref": "#/components/schemas/BatchItem" },
                },
                "writeKey": { "type": ["string", "null"] },
                "sentAt": { "description": "Not read (it changes on each retry)." },
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["success", "accepted", "not_stored", "rejected"],
            "properties": {
                "success": { "const": true },
                "accepted": { "type": "integer", "minimum": 0, "description": "Messages written to the stream." },
                "not_stored": { "type": "integer", "minimum": 0, "description": "identify, group and alias calls." },
                "rejected": { "type": "array", "items": { "$ref": "#/components/schemas/Rejected" } },
            },
        },
        "Rejected": {
            "type": "object",
            "required": ["index", "reason", "message"],
            "properties": {
                "index": { "type": "integer", "minimum": 0, "description": "Its place in `batch` (0 for a single call)." },
                "reason": { "type": "string", "description": "A stable code, e.g. missing_user, timestamp_in_future." },
                "message": { "type": "string" },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "A stable code." },
                "message": { "type": "string" },
                "rejected": { "type": "array", "items": { "$ref": "#/components/schemas/Rejected" } },
            },
        },
    })
}
