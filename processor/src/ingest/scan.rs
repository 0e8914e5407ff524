//! A JSON scanner for ingest requests: one pass over a `/v1/batch` body
//! finds each event's text (and so its size) and the `writeKey`, and the
//! same scanner then reads the few fields of a message the mapping needs,
//! all as slices of the request, without building maps or owned strings.
//!
//! Why it exists: reading JSON was most of the ingest's cost per event
//! (the body scanned by `serde_json` for each event's raw text, then each
//! event read again into its fields and a `details` map;
//! `docs/benchmarks.md`, "Ingest"). This scanner is strict: whatever it
//! is not sure to read exactly as `serde_json` does (a key written with
//! escapes, nesting deeper than [`MAX_DEPTH`], a body that is not an
//! object, invalid JSON) it does not read at all, answering `None`, and
//! the request or the event goes the `serde_json` way, which then gives
//! the answer it always gave.

use std::borrow::Cow;

/// The deepest nesting the scanner reads (`serde_json` refuses past 128).
pub(crate) const MAX_DEPTH: usize = 100;

/// What a `/v1/batch` body holds, as the scanner found it.
#[derive(Debug)]
pub(crate) struct Batch<'a, T> {
    /// Each item of `batch`: its JSON text, without the white space
    /// around it (what `serde_json`'s `RawValue` holds), and what the
    /// item's reader made of it.
    pub(crate) events: Vec<(&'a str, Option<T>)>,
    /// `writeKey`, when the body has one (and it is not `null`).
    pub(crate) write_key: Option<&'a str>,
}

/// Reads a `/v1/batch` body: an object with one `batch` array and at most
/// one `writeKey` (a string or `null`), any other member skipped. `None`
/// when the body is anything else, or not plainly so (see the module's
/// text): then `serde_json` reads it.
///
/// Each item is given to `read_item` with the scanner at it, in the same
/// pass: what it reads, it reads past; when it answers `None`, the item is
/// read again from its start, only to check it is valid JSON.
pub(crate) fn batch<'a, T>(
    body: &'a str,
    mut read_item: impl FnMut(&mut Scanner<'a>) -> Option<T>,
) -> Option<Batch<'a, T>> {
    let mut scanner = Scanner::new(body);
    let mut events = None;
    let mut write_key = None;
    let mut seen_write_key = false;
    scanner.ws();
    scanner.object(|key, scanner| {
        match key.plain_bytes()? {
            b"batch" => {
                if events.is_some() {
                    return None;
                }
                let mut items = Vec::with_capacity(128);
                scanner.array(|scanner| {
                    let (start, depth) = (scanner.pos, scanner.depth);
                    let item = read_item(scanner);
                    if item.is_none() {
                        (scanner.pos, scanner.depth) = (start, depth);
                        scanner.skip_value()?;
                    }
                    items.push((&scanner.text[start..scanner.pos], item));
                    Some(())
                })?;
                events = Some(items);
            }
            b"writeKey" => {
                if std::mem::replace(&mut seen_write_key, true) {
                    return None;
                }
                write_key = match scanner.value()? {
                    Json::Null => None,
                    Json::String(key) => Some(key.plain()?),
                    _ => return None,
                };
            }
            _ => scanner.skip_value()?,
        }
        Some(())
    })?;
    scanner.end()?;
    Some(Batch {
        events: events?,
        write_key,
    })
}

/// A JSON string as it is in the text: what is between its quotes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonStr<'a> {
    raw: &'a str,
    /// Whether it holds a `\` escape.
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The text, when it holds no escape: the same as its decoded text.
    pub(crate) fn plain(&self) -> Option<&'a str> {
        (!self.escaped).then_some(self.raw)
    }

    /// The decoded text; `None` for a lone surrogate escape (`\ud800`),
    /// which `serde_json` refuses in a string.
    #[inline]
    pub(crate) fn decode(&self) -> Option<Cow<'a, str>> {
        if !self.escaped {
            return Some(Cow::Borrowed(self.raw));
        }
        self.unescape().map(Cow::Owned)
    }

    /// The decoded text of a string with escapes.
    #[cold]
    fn unescape(&self) -> Option<String> {
        let bytes = self.raw.as_bytes();
        let mut out = String::with_capacity(bytes.len());
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'\\' {
                i += 1;
                continue;
            }
            out.push_str(&self.raw[start..i]);
            let escape = bytes[i + 1];
            i += 2;
            let decoded = match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => {
                    let unit = hex4(&bytes[i..i + 4])?;
                    i += 4;
                    match unit {
                        0xD800..=0xDBFF => {
                            // Only a low surrogate escape may follow.
                            if bytes.get(i..i + 2) != Some(b"\\u") {
                                return None;
                            }
                            let low = hex4(bytes.get(i + 2..i + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            i += 6;
                            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code)?
                        }
                        0xDC00..=0xDFFF => return None,
                        unit => char::from_u32(unit)?,
                    }
                }
            };
            out.push(decoded);
            start = i;
        }
        out.push_str(&self.raw[start..]);
        Some(out)
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let mut value = 0;
    for &digit in digits.get(..4)? {
        value = value * 16 + char::from(digit).to_digit(16)?;
    }
    Some(value)
}

/// An object's key: like a [`JsonStr`], but kept as its place in the
/// text, made a `str` only when asked. Most keys are only compared with
/// the names the mapping reads, as bytes, and each `str` slice checks
/// that its ends are character boundaries (a call, a few dozen
/// instructions, for each of the two dozen keys of a message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonKey<'a> {
    /// The text the key is in.
    text: &'a str,
    /// Its first byte after the opening quote.
    start: usize,
    /// Its closing quote.
    end: usize,
    /// Whether it holds a `\` escape.
    escaped: bool,
}

impl<'a> JsonKey<'a> {
    /// The key's bytes, when it holds no escape (then they are its text).
    #[inline(always)]
    pub(crate) fn plain_bytes(&self) -> Option<&'a [u8]> {
        (!self.escaped).then(|| &self.text.as_bytes()[self.start..self.end])
    }

    /// The key as a string.
    pub(crate) fn string(&self) -> JsonStr<'a> {
        JsonStr {
            raw: &self.text[self.start..self.end],
            escaped: self.escaped,
        }
    }
}

/// One JSON value, as the scanner read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's text.
    Number(&'a str),
    String(JsonStr<'a>),
    Array,
    Object,
}

/// A value read, with its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonValue<'a> {
    /// The value's text (valid JSON, no white space around it).
    pub(crate) text: &'a str,
    pub(crate) json: Json<'a>,
}

/// Whether `number` (valid JSON) is an integer `serde_json` reads as a
/// `u64` or `i64` and so writes back as the same text: digits only, at
/// most 19 of them (18 with a minus sign), and not `-0` (which it reads
/// as the float `-0.0`).
pub(crate) fn plain_integer(number: &str) -> bool {
    let (digits, max) = match number.strip_prefix('-') {
        Some(digits) => (digits, 18),
        None => (number, 19),
    };
    digits.len() <= max
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits == "0" && number.len() == 2)
}

/// The reading position in a JSON text. (Its small steps are inlined
/// where they are used: a call each was a large part of the scan.)
#[derive(Debug)]
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }

    /// The byte at the position.
    #[inline(always)]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips white space (the four bytes JSON allows).
    #[inline(always)]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// White space to the end of the text, and nothing else.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.ws();
        (self.pos == self.bytes.len()).then_some(())
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes.get(self.pos..self.pos + word.len())? == word {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Reads an object (at its `{`), calling `member` with each key and
    /// the scanner at the key's value, which `member` must read.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(JsonKey<'a>, &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.enter(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(key, self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b'}' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads an array (at its `[`), calling `item` with the scanner at each
    /// item, which `item` must read.
    pub(crate) fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.enter(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b']' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn enter(&mut self, open: u8) -> Option<()> {
        self.eat(open)?;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Reads the value at the position.
    pub(crate) fn value(&mut self) -> Option<Json<'a>> {
        Some(match self.peek()? {
            b'"' => Json::String(self.string()?),
            b'{' => {
                self.object(|_, scanner| scanner.skip_value())?;
                Json::Object
            }
            b'[' => {
                self.array(Self::skip_value)?;
                Json::Array
            }
            b'n' => {
                self.literal(b"null")?;
                Json::Null
            }
            b't' => {
                self.literal(b"true")?;
                Json::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Json::Bool(false)
            }
            _ => Json::Number(self.number()?),
        })
    }

    /// Reads the value at the position, with its text.
    pub(crate) fn json_value(&mut self) -> Option<JsonValue<'a>> {
        let start = self.pos;
        let json = self.value()?;
        Some(JsonValue {
            text: &self.text[start..self.pos],
            json,
        })
    }

    /// Reads the value at the position, checking it is valid JSON.
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.value().map(drop)
    }

    /// Reads a string (at its `"`): valid escapes, no control character.
    #[inline(always)]
    fn string(&mut self) -> Option<JsonStr<'a>> {
        let (start, end, escaped) = self.string_span()?;
        Some(JsonStr {
            raw: &self.text[start..end],
            escaped,
        })
    }

    /// Reads an object's key (a string).
    #[inline(always)]
    fn key(&mut self) -> Option<JsonKey<'a>> {
        let (start, end, escaped) = self.string_span()?;
        Some(JsonKey {
            text: self.text,
            start,
            end,
            escaped,
        })
    }

    /// Reads a string (at its `"`), giving where its text starts and ends
    /// and whether it holds an escape.
    #[inline(always)]
    fn string_span(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.skip_plain_string_bytes();
            match self.peek()? {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Some((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            hex4(self.bytes.get(self.pos + 1..self.pos + 5)?)?;
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// Moves past the bytes of a string that are neither `"`, `\` nor a
    /// control character: eight at a time (the first such byte of a word
    /// found from its mask), then one at a time near the text's end.
    #[inline(always)]
    fn skip_plain_string_bytes(&mut self) {
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let special = special_bytes(word);
            if special != 0 {
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(&byte) = self.bytes.get(self.pos) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    /// Reads a number: JSON's grammar exactly (no leading zero, digits
    /// after a `.` and an exponent).
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some(&self.text[start..self.pos])
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `word` (read little-endian) that is `"`,
/// `\` or a control character: exact up to the first such byte (a borrow
/// can mark bytes after it, never before), which is all that is used.
fn special_bytes(word: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item reader reading nothing.
    fn skip(_: &mut Scanner<'_>) -> Option<()> {
        None
    }

    #[test]
    fn a_batch_is_split_into_its_events() {
        let body = r#" {"sentAt": {"x": [1, "]"]}, "batch" : [ {"a":1} , [2,3],"s\"",-0.5e+3 ,null],
                     "writeKey":"k"} "#;
        // Numbers read by the item reader, the rest read again.
        let batch = batch(body, |scanner| match scanner.value()? {
            Json::Number(number) => Some(number),
            _ => None,
        })
        .unwrap();
        let events: Vec<_> = batch.events.iter().map(|(raw, _)| *raw).collect();
        assert_eq!(
            events,
            [r#"{"a":1}"#, "[2,3]", r#""s\"""#, "-0.5e+3", "null"]
        );
        assert_eq!(batch.events[3].1, Some("-0.5e+3"));
        assert_eq!(batch.events[1].1, None);
        assert_eq!(batch.write_key, Some("k"));
        assert!(self::batch(r#"{"batch":[],"writeKey":null}"#, skip).is_some());
    }

    #[test]
    fn bodies_the_scanner_leaves_to_serde() {
        for body in [
            r#"{"batch":[1],"batch":[2]}"#,
            r#"{"batch":[1],"writeKey":"a","writeKey":"b"}"#,
            r#"{"b\u0061tch":[1]}"#,
            r#"{"batch":[1],"writeKey":"\u0041"}"#,
            r#"{"batch":[1],"writeKey":7}"#,
            r#"{"batch":{}}"#,
            r#"{"batch":[1]} x"#,
            r#"{"batch":[01]}"#,
            r#"{"batch":[1.]}"#,
            r#"{"batch":[1e]}"#,
            r#"{"batch":["a	b"]}"#,
            r#"{"batch":["\x"]}"#,
            r#"{"batch":["\u12"]}"#,
            r#"{"batch":[1,]}"#,
            r#"{"batch":[tru]}"#,
            r#"{"writeKey":"k"}"#,
            r#"[[1],"k"]"#,
            "",
        ] {
            assert!(batch(body, skip).is_none(), "{body}");
        }
        let deep = format!(
            r#"{{"batch":[{}{}]}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(batch(&deep, skip).is_none());
        // An item its reader refuses, invalid further on.
        assert!(batch(r#"{"batch":[[1,}]}"#, |_| None::<()>).is_none());
    }

    #[test]
    fn the_first_special_byte_of_a_word_is_found() {
        for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for at in 0..8 {
                for filler in [b'a', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                    let mut word = [filler; 8];
                    word[at] = special;
                    // And more after it, which must not move the first.
                    if at < 7 {
                        word[7] = b'"';
                    }
                    let mask = special_bytes(u64::from_le_bytes(word));
                    assert_eq!(mask.trailing_zeros() / 8, at as u32, "{word:?}");
                }
            }
        }
        assert_eq!(special_bytes(u64::from_le_bytes(*b"abcdefgh")), 0);
        assert_eq!(
            special_bytes(u64::from_le_bytes([
                0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff, 0x21, 0x5d
            ])),
            0
        );
    }

    #[test]
    fn strings_decode_as_serde_json_decodes_them() {
        for text in [
            r#""plain""#,
            r#""\"\\\/\b\f\n\r\t""#,
            r#""\u00e9\u0000\u001F""#,
            r#""\ud83d\ude00 and \uD83D\uDE00""#,
        ] {
            let mut scanner = Scanner::new(text);
            let Some(Json::String(string)) = scanner.value() else {
                panic!("{text}")
            };
            let ours = string.decode().unwrap();
            assert_eq!(ours, serde_json::from_str::<String>(text).unwrap());
        }
        for lone in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
        ] {
            let mut scanner = Scanner::new(lone);
            let Some(Json::String(string)) = scanner.value() else {
                panic!("{lone}")
            };
            assert!(string.decode().is_none(), "{lone}");
            assert!(serde_json::from_str::<String>(lone).is_err());
        }
    }

    #[test]
    fn plain_integers_are_those_serde_json_writes_back_unchanged() {
        for (number, plain) in [
            ("0", true),
            ("7", true),
            ("-7", true),
            ("1234567890123456789", true),
            ("-123456789012345678", true),
            ("-0", false),
            ("12345678901234567890", false),
            // An i64 still, but left to serde_json: the rule stays simple.
            ("-1234567890123456789", false),
            ("1.5", false),
            ("1e2", false),
        ] {
            assert_eq!(plain_integer(number), plain, "{number}");
            if plain {
                let value: serde_json::Value = serde_json::from_str(number).unwrap();
                assert!(value.is_u64() || value.is_i64());
                assert_eq!(value.to_string(), number);
            }
        }
    }
}
