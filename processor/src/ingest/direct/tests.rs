//! The direct way against `mapping::map`, message by message: wherever
//! the direct way answers, its answer (the line, or the call not stored)
//! is the one `mapping` gives; and the scanner's split of a body is the
//! one `serde_json` makes. Messages are hand-written (what SDKs send) and
//! generated from a fixed seed, hostile parts included: escapes, NUL,
//! lone surrogates, numbers beyond `f64`, keys twice, wrong types, deep
//! nesting, white space everywhere.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::ingest::BatchBody;
use crate::ingest::mapping::Mapped;
use crate::ingest::scan;

fn facts(trusted: bool) -> RequestFacts<'static> {
    RequestFacts {
        source: "web",
        trusts_context_ip: trusted,
        peer_ip: Some("198.51.100.7".parse().unwrap()),
        received_at: "2026-12-02T12:00:00.123456789Z".parse().unwrap(),
    }
}

/// What a message became, as comparable text.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Line(String),
    NotStored(&'static str),
}

/// The line with its id blanked when it is a fresh UUID v7 (a message
/// without `messageId` gets a new one each time it is mapped).
fn comparable(line: &str) -> String {
    const ID: std::ops::Range<usize> = 13..49;
    let id = uuid::Uuid::parse_str(&line[ID]).expect("a line starts with its id");
    if id.get_version_num() == 7 {
        format!("{}<v7>{}", &line[..ID.start], &line[ID.end..])
    } else {
        line.to_owned()
    }
}

fn reference(raw: &str, kind: Option<Kind>, facts: &RequestFacts<'_>) -> Option<Outcome> {
    match mapping::map(raw, kind, facts) {
        Ok(Mapped::Stored(activity)) => Some(Outcome::Line(comparable(&activity.to_wire_json()))),
        Ok(Mapped::NotStored(kind)) => Some(Outcome::NotStored(kind.name())),
        Err(_) => None,
    }
}

/// The direct way's answer, `None` when it leaves the message to
/// `mapping`.
fn direct(raw: &str, kind: Option<Kind>, facts: &RequestFacts<'_>) -> Option<Outcome> {
    let mut batch = WireBatch::new();
    let mut scratch = Scratch::default();
    let answer = map(
        raw,
        Message::read(raw).as_mut(),
        kind,
        facts,
        &mut batch,
        &mut scratch,
    );
    match answer {
        Some(Direct::Stored) => {
            assert_eq!(batch.len(), 1);
            let line = std::str::from_utf8(batch.as_bytes()).unwrap();
            Some(Outcome::Line(comparable(line)))
        }
        Some(Direct::NotStored(kind)) => {
            assert!(batch.is_empty());
            Some(Outcome::NotStored(kind.name()))
        }
        None => {
            assert!(
                batch.is_empty(),
                "nothing is written for a message left to mapping"
            );
            None
        }
    }
}

/// Checks one message both ways (as a batch item and as each path's
/// single call, trusted source or not); returns whether the direct way
/// answered as a batch item.
fn check(raw: &str) -> bool {
    let mut answered = false;
    for kind in [
        None,
        Some(Kind::Track),
        Some(Kind::Page),
        Some(Kind::Screen),
        Some(Kind::Identify),
    ] {
        for trusted in [false, true] {
            let facts = facts(trusted);
            let ours = direct(raw, kind, &facts);
            if ours.is_some() {
                assert_eq!(ours, reference(raw, kind, &facts), "{raw} ({kind:?})");
                answered |= kind.is_none();
            }
        }
    }
    answered
}

/// What SDKs send: each must take the direct way and match.
#[test]
fn messages_as_sdks_send_them_take_the_direct_way() {
    let messages = [
        // The benchmark's shape (serde_json compact, keys sorted).
        r#"{"context":{"library":{"name":"analytics-python","version":"2.4.0"},"sessionId":"sess-1","userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},"event":"case_view","messageId":"019ac1d2-7f3a-7c41-9d2e-5b0c6a8e4f10","properties":{"latency_ms":12,"method":"POST","resource_id":"case-1","resource_type":"case","route":"/api/cases/{id}","status":200},"timestamp":"2026-12-02T11:59:59.123456789+00:00","type":"track","userId":"user-1"}"#,
        // The Python SDK's shape: white space, ASCII escapes, its own keys.
        r#"{"integrations": {}, "anonymousId": null, "properties": {"amount": 12.5, "label": "caf\u00e9 \u2013 \ud83d\ude00", "nested": {"b": [1, 2.0, {"z": null}], "a": true}}, "timestamp": "2026-12-02T11:00:00.000001+00:00", "context": {"library": {"name": "analytics-python", "version": "2.3.3"}, "ip": "203.0.113.9"}, "userId": "u-\"quoted\"", "type": "track", "event": "Order Completed", "messageId": "ajs-1", "sentAt": "2026-12-02T11:00:01+00:00"}"#,
        // Identify, page and screen as the SDKs send them.
        r#"{"type": "identify", "userId": "u", "traits": {"email": "a@b.c", "x": 1e400}}"#,
        r#"{"type":"page","anonymousId":"a-1","name":"Home","category":null,"properties":{"url":"/","name":"overridden"}}"#,
        r#"{"type":"screen","userId":42,"name":{"deep":[1,"x"]},"category":7,"properties":null,"context":null}"#,
        // Ids as numbers; a session in the properties; an empty agent.
        r#"{"type":"track","event":"login","userId":-17,"anonymousId":"","properties":{"session_id":99},"context":{"userAgent":""}}"#,
        r#"{"type":"track","event":"x","userId":"u","properties":{"session_id":"","resource_type":5,"resource_id":"r"},"context":{"sessionId":""}}"#,
        // Keys twice in the properties: the last kept, as in a map.
        r#"{"type":"track","event":"x","userId":"u","properties":{"k":1,"k":2,"resource_id":"a","resource_id":"b","source":"forged","anonymous_id":"forged"},"anonymousId":"anon"}"#,
        // NUL and control characters, written as escapes.
        r#"{"type":"track","event":"nul\u0000event","userId":"u\u0000","properties":{"k\u0000":"v\u001f\n"},"context":{"userAgent":"ua\t","ip":"  203.0.113.5 "}}"#,
        // An unknown member with what `serde_json` would refuse in a value
        // it reads: skipped unread, as serde skips it.
        r#"{"type":"track","event":"x","userId":"u","extra":{"n":1e400,"s":"\ud800"}}"#,
        // A message id that is not a UUID, and one that is (upper case).
        r#"{"type":"track","event":"x","userId":"u","messageId":"not-a-uuid"}"#,
        r#"{"type":"track","event":"x","userId":"u","messageId":"0B6A2A8E-9D0F-4C53-A0F8-6A1E9A4F1B11"}"#,
        r#"{"type":"track","event":"x","userId":"u","messageId":12345}"#,
        // Timestamps: offsets, no fraction, padded.
        r#"{"type":"track","event":"x","userId":"u","timestamp":" 2026-12-01T10:00:00-05:30 "}"#,
        r#"{"type":"track","event":"x","userId":"u","timestamp":"2026-12-03T12:00:00.123456Z"}"#,
        r#"{"type":"track","event":"x","userId":"u","timestamp":null}"#,
    ];
    for raw in messages {
        assert!(check(raw), "the direct way left it to mapping: {raw}");
    }
    // With white space around it (a single call's body).
    assert!(check(&format!(" \n{}\t", messages[0])));
}

/// Messages the direct way leaves to `mapping` (and so answers as it
/// does); each also checked both ways.
#[test]
fn unusual_and_rejected_messages_are_left_to_mapping() {
    let messages = [
        // Rejections.
        r#"{"type":"track","event":"x"}"#,
        r#"{"type":"nope","userId":"u"}"#,
        r#"{"userId":"u"}"#,
        r#"{"type":"track","userId":"u"}"#,
        r#"{"type":"track","userId":"u","event":"  "}"#,
        r#"{"type":"track","userId":"u","event":"x","timestamp":"yesterday"}"#,
        r#"{"type":"track","userId":"u","event":"x","timestamp":"2026-12-03T12:00:01Z"}"#,
        r#"{"type":"track","userId":"u","event":"x","properties":{"session_id":true}}"#,
        r#"{"type":"track","userId":"u","event":"x","properties":{"resource_type":"ttttttttttttttttttttttttttttttttttttttttttttttttttt"}}"#,
        // What serde_json refuses in a message.
        r#"{"type":"track","userId":"u","event":"x","properties":{"n":1e400}}"#,
        r#"{"type":"track","userId":"u","event":"x","properties":{"s":"\udc00"}}"#,
        r#"{"type":"track","userId":"u","event":"x","name":-1e999}"#,
        r#"{"type":"track","userId":"u","event":"x","context":{"ip":1e400}}"#,
        r#"{"type":"track","userId":"u","event":"x","context":{"ip":"\ud800"}}"#,
        r#"{"type":"identify","userId":"u","properties":{"n":1e400}}"#,
        r#"{"type":"track","userId":"u","event":"x","userId":"v"}"#,
        r#"{"type":"track","userId":"u","event":"x","context":{"userAgent":"a","userAgent":"b"}}"#,
        r#"{"type":"track","userId":true,"event":"x"}"#,
        r#"{"type":"track","userId":"u","event":7}"#,
        r#"{"type":"track","userId":"u","event":"x","properties":[1]}"#,
        r#"{"type":"track","userId":"u","event":"x","context":"ctx"}"#,
        r#"["track","x","u"]"#,
        "7",
        // Read otherwise, or not plainly.
        r#"{"t\u0079pe":"track","userId":"u","event":"x"}"#,
        r#"{"type":"track","userId":1.5,"event":"x"}"#,
        r#"{"type":"track","userId":"u","event":"x","properties":{"session_id":2.5}}"#,
        r#"{"type":"track","userId":-0,"event":"x"}"#,
    ];
    for raw in messages {
        assert!(!check(raw), "the direct way answered: {raw}");
    }
}

#[test]
fn an_event_over_the_size_limit_is_left_to_mapping() {
    let raw = format!(
        r#"{{"type":"track","userId":"u","event":"x","properties":{{"blob":"{}"}}}}"#,
        "b".repeat(MAX_EVENT_BYTES)
    );
    assert!(!check(&raw));
    // Details over their limit, the event not over its own.
    let raw = format!(
        r#"{{"type":"track","userId":"u","event":"x","properties":{{"blob":"{}"}}}}"#,
        "b".repeat(20 * 1024)
    );
    assert!(!check(&raw));
}

// Generated messages.

const STRINGS: &[&str] = &[
    r#""""#,
    r#""plain""#,
    r#""case""#,
    r#""  ""#,
    r#""é 日本 😀""#,
    r#""esc \" \\ \/ \b \f \n \r \t""#,
    r#""\u0000""#,
    r#""nul\u0000in""#,
    r#""\u00e9\u00E9""#,
    r#""\ud83d\ude00""#,
    r#""\ud800""#,
    r#""\udc00x""#,
    r#""\u2028\u001f""#,
    r#""203.0.113.1""#,
    r#"" ::ffff:192.0.2.1 ""#,
    r#""0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11""#,
    r#""2026-12-01T10:00:00.123456789+02:00""#,
    r#""2026-12-02T12:00:00Z""#,
    r#""2026-12-04T00:00:00Z""#,
    r#""track""#,
    r#""page""#,
    r#""login""#,
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-7",
    "1.5",
    "-0.0",
    "1e2",
    "1E+2",
    "2.5e-3",
    "1e15",
    "1e16",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "0.30000000000000004",
];

const KEYS: &[&str] = &[
    "resource_type",
    "resource_id",
    "session_id",
    "source",
    "anonymous_id",
    "name",
    "category",
    "amount",
    "k",
    "",
    "é",
    "a\\u0000",
    "\\u0073ource",
    "Z",
];

struct Generator {
    rng: StdRng,
    /// Mostly fields of the right type and values serde_json reads, so
    /// that most messages are stored and their lines compared.
    tame: bool,
}

/// What a tame generator leaves out: values serde_json refuses.
fn hostile(json: &str) -> bool {
    json.contains("400") || json.contains("\\ud800") || json.contains("\\udc00")
}

impl Generator {
    fn ws(&mut self) -> &'static str {
        match self.rng.random_range(0..10) {
            0 => " ",
            1 => "\n\t ",
            _ => "",
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        loop {
            let picked = from[self.rng.random_range(0..from.len())];
            if !(self.tame && hostile(picked)) {
                return picked;
            }
        }
    }

    fn long_string(&mut self) -> String {
        let n = *[50, 51, 100, 101, 255, 256, 500, 501]
            .get(self.rng.random_range(0..8))
            .unwrap();
        let unit = if self.rng.random_bool(0.5) { "a" } else { "é" };
        format!("\"{}\"", unit.repeat(n))
    }

    fn value(&mut self, depth: usize) -> String {
        match self.rng.random_range(0..if depth > 3 { 6 } else { 9 }) {
            0 => "null".into(),
            1 => self.pick(&["true", "false"]).into(),
            2 | 3 => self.pick(NUMBERS).into(),
            4 | 5 => self.pick(STRINGS).into(),
            6 => self.long_string(),
            7 => {
                let items: Vec<String> = (0..self.rng.random_range(0..4))
                    .map(|_| self.value(depth + 1))
                    .collect();
                format!("[{}]", items.join(&format!(",{}", self.ws())))
            }
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: usize) -> String {
        let members: Vec<String> = (0..self.rng.random_range(0..6))
            .map(|_| {
                let key = self.pick(KEYS);
                let (ws1, ws2) = (self.ws(), self.ws());
                format!("\"{key}\"{ws1}:{ws2}{}", self.value(depth))
            })
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// A value for a message field: mostly of the right type.
    fn field(&mut self, good: &[&str]) -> String {
        match self.rng.random_range(0..if self.tame { 40 } else { 10 }) {
            0 => self.value(1),
            1 => "null".into(),
            // The first two of `good` are stored, the others maybe not.
            _ if self.tame => self.pick(&good[..2]).into(),
            _ => self.pick(good).into(),
        }
    }

    fn context(&mut self) -> String {
        let mut members = Vec::new();
        for _ in 0..self.rng.random_range(0..5) {
            let member = match self.rng.random_range(0..5) {
                0 => format!(
                    r#""userAgent":{}"#,
                    self.field(&[r#""UA/1""#, r#""""#, r#""ua \u0000""#])
                ),
                1 => format!(
                    r#""sessionId":{}"#,
                    self.field(&[r#""s-1""#, "42", r#""""#, "1.5"])
                ),
                2 => format!(
                    r#""ip":{}"#,
                    self.field(&[r#""203.0.113.1""#, r#"" ::1 ""#, r#""not an ip""#])
                ),
                3 => format!(r#""library":{}"#, self.value(1)),
                _ => format!(r#""userAgent":{}"#, self.long_string()),
            };
            let key = member.split(':').next().unwrap_or_default().to_owned();
            if self.tame && members.iter().any(|m: &String| m.starts_with(&key)) {
                continue;
            }
            members.push(member);
        }
        format!("{{{}}}", members.join(","))
    }

    fn message(&mut self) -> String {
        let mut members: Vec<String> = Vec::new();
        let kinds = [
            r#""track""#,
            r#""track""#,
            r#""page""#,
            r#""screen""#,
            r#""identify""#,
            r#""alias""#,
            r#""nope""#,
            r#""tr\u0061ck""#,
        ];
        let fields: [(&str, u32); 12] = [
            ("type", 95),
            ("event", 85),
            ("userId", 80),
            ("anonymousId", 40),
            ("messageId", 60),
            ("timestamp", 60),
            ("properties", 80),
            ("context", 70),
            ("name", 20),
            ("category", 15),
            ("sentAt", 30),
            ("integrations", 10),
        ];
        for (name, percent) in fields {
            if self.rng.random_range(0..100) >= percent {
                continue;
            }
            let value = match name {
                "type" => self.field(&kinds),
                "event" => self.field(&[
                    r#""case_view""#,
                    r#""Order Completed""#,
                    r#""é""#,
                    r#""  ""#,
                ]),
                "userId" | "anonymousId" => {
                    self.field(&[r#""u-1""#, "-7", r#""""#, "42", r#""\u0000u""#])
                }
                "messageId" => self.field(&[
                    r#""0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11""#,
                    r#""ajs-1""#,
                    "12",
                ]),
                "timestamp" => self.field(&[
                    r#""2026-12-01T10:00:00.123456789+02:00""#,
                    r#""2026-12-02T12:00:00Z""#,
                    r#""2026-12-03T12:00:00.123457Z""#,
                    r#""2026-12-09T00:00:00Z""#,
                    r#""yesterday""#,
                ]),
                "properties" => {
                    if !self.tame && self.rng.random_range(0..10) == 0 {
                        self.value(1)
                    } else {
                        self.object(1)
                    }
                }
                "context" => {
                    if !self.tame && self.rng.random_range(0..10) == 0 {
                        self.value(1)
                    } else {
                        self.context()
                    }
                }
                _ => self.value(1),
            };
            let (ws1, ws2) = (self.ws(), self.ws());
            members.push(format!("\"{name}\"{ws1}:{ws2}{value}"));
        }
        // A field twice, now and then.
        if !self.tame && !members.is_empty() && self.rng.random_range(0..20) == 0 {
            let again = members[self.rng.random_range(0..members.len())].clone();
            members.push(again);
        }
        // Shuffled: serde reads the fields in any order.
        for i in (1..members.len()).rev() {
            members.swap(i, self.rng.random_range(0..=i));
        }
        let ws = self.ws();
        format!("{ws}{{{}}}", members.join(&format!(",{ws}")))
    }
}

#[test]
fn generated_messages_give_what_mapping_gives() {
    for (seed, tame, least) in [(20261203, false, 10), (15, true, 50)] {
        let mut generator = Generator {
            rng: StdRng::seed_from_u64(seed),
            tame,
        };
        let total = 20_000;
        let mut answered = 0;
        for _ in 0..total {
            let raw = generator.message();
            answered += usize::from(check(&raw));
        }
        // The test must not pass by the direct way answering nothing.
        assert!(
            answered * 100 > total * least,
            "only {answered} of {total} answered directly (tame: {tame})"
        );
    }
}

#[test]
fn a_deep_value_is_left_to_mapping() {
    let deep = format!(
        r#"{{"type":"track","userId":"u","event":"x","properties":{{"d":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(!check(&deep));
    let deep_unknown = format!(
        r#"{{"type":"track","userId":"u","event":"x","other":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(!check(&deep_unknown));
}

// Whole bodies: the scanner's split against serde_json's.

fn check_body(body: &str) -> bool {
    let Some(ours) = scan::batch(body, Message::read_at) else {
        return false;
    };
    let theirs: BatchBody<'_> = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("the scanner read a body serde_json refuses ({e}): {body}"));
    let our_events: Vec<&str> = ours.events.iter().map(|(raw, _)| *raw).collect();
    let their_events: Vec<&str> = theirs.batch.iter().map(|raw| raw.get()).collect();
    assert_eq!(our_events, their_events, "{body}");
    assert_eq!(
        ours.write_key.map(str::to_owned),
        theirs.write_key,
        "{body}"
    );
    // A message read in the scanner's pass is the one read alone.
    for (raw, message) in &ours.events {
        assert_eq!(
            format!("{message:?}"),
            format!("{:?}", Message::read(raw)),
            "{raw}"
        );
    }
    true
}

#[test]
fn generated_bodies_split_as_serde_json_splits_them() {
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(7),
        tame: false,
    };
    let mut read = 0;
    for round in 0..3000 {
        let mut members = Vec::new();
        let items: Vec<String> = (0..generator.rng.random_range(0..5))
            .map(|_| {
                if generator.rng.random_range(0..5) == 0 {
                    generator.value(1)
                } else {
                    generator.message()
                }
            })
            .collect();
        let ws = generator.ws();
        members.push(format!(
            r#""batch"{ws}:{ws}[{ws}{}{ws}]"#,
            items.join(&format!("{ws},{ws}"))
        ));
        match generator.rng.random_range(0..8) {
            0 => members.push(r#""writeKey":"key-1""#.into()),
            1 => members.push(r#""writeKey":null"#.into()),
            2 => members.push(r#""writeKey":"k\u0065y""#.into()),
            3 => members.push(format!(r#""sentAt":{}"#, generator.value(1))),
            4 => members.push(r#""batch":[]"#.into()),
            _ => {}
        }
        if round % 2 == 0 {
            members.reverse();
        }
        let mut body = format!("{ws}{{{}}}{ws}", members.join(","));
        if generator.rng.random_range(0..30) == 0 {
            // Broken: cut short.
            let mut cut = body.len() / 2;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        if check_body(&body) {
            read += 1;
        } else if serde_json::from_str::<BatchBody<'_>>(&body).is_ok() {
            // Left to serde_json only for what the scanner does not read:
            // here, the write key written with an escape.
            assert!(body.contains(r#""k\u0065y""#), "{body}");
        }
    }
    assert!(read > 1000, "only {read} bodies read by the scanner");
}
