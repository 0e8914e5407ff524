//! `details` as JSON text that PostgreSQL's `jsonb` takes and that reads
//! back: what the writer stores is what the read queries (serde_json,
//! without arbitrary precision) can parse again.
//!
//! `jsonb` refuses `\u0000` in a string (SQLSTATE 22P05) and a lone
//! surrogate escape (`\ud800`); it takes `1e400` as a `numeric`, which then
//! reads back as 400 digits that serde_json refuses ("number out of
//! range"), so the user's rows could never be read again. The rewrite
//! replaces such escapes with `\ufffd` (U+FFFD) and writes such numbers as
//! strings of their original text. It works on the text, so it needs no
//! parse that would fail on the very numbers it fixes.

use std::fmt::Write as _;

/// What [`scan`] found (and, given somewhere to write, rewrote).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// `\u0000` escapes, in keys or values.
    pub(crate) nul: usize,
    /// Lone surrogate escapes (`\ud800` without its pair, or a second half alone).
    pub(crate) lone_surrogates: usize,
    /// Numbers that are no finite, non-vanishing `f64`: too large (`1e400`),
    /// or so small they read back as zero while they are not (`1e-400`).
    pub(crate) numbers: usize,
}

impl Found {
    /// Whether the text needs the rewrite.
    pub(crate) fn any(&self) -> bool {
        self.nul + self.lone_surrogates + self.numbers > 0
    }
}

/// Looks for what `jsonb` refuses or cannot give back in `text`, a JSON
/// value (as serde_json validated it); with `out`, appends the storable
/// text to it. Text that is not valid JSON is copied as it is.
pub(crate) fn scan(text: &str, mut out: Option<&mut String>) -> Found {
    let bytes = text.as_bytes();
    let mut found = Found::default();
    let mut copied = 0;
    let mut i = 0;
    // Appends the text from `copied` up to `upto`, then `with`.
    let emit = |out: &mut Option<&mut String>, copied: usize, upto: usize, with: &str| {
        if let Some(out) = out.as_deref_mut() {
            out.push_str(&text[copied..upto]);
            out.push_str(with);
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    if bytes.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    let Some(code) = hex4(bytes, i + 2) else {
                        i += 2;
                        continue;
                    };
                    let end = i + 6;
                    if code == 0 {
                        found.nul += 1;
                        emit(&mut out, copied, i, "\\ufffd");
                        copied = end;
                        i = end;
                    } else if (0xD800..0xDC00).contains(&code) {
                        let paired = bytes.get(end) == Some(&b'\\')
                            && bytes.get(end + 1) == Some(&b'u')
                            && hex4(bytes, end + 2)
                                .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                        if paired {
                            i = end + 6;
                        } else {
                            found.lone_surrogates += 1;
                            emit(&mut out, copied, i, "\\ufffd");
                            copied = end;
                            i = end;
                        }
                    } else if (0xDC00..0xE000).contains(&code) {
                        found.lone_surrogates += 1;
                        emit(&mut out, copied, i, "\\ufffd");
                        copied = end;
                        i = end;
                    } else {
                        i = end;
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &text[start..i];
                if !reads_back(number) {
                    found.numbers += 1;
                    let mut quoted = String::with_capacity(number.len() + 2);
                    let _ = write!(quoted, "\"{number}\"");
                    emit(&mut out, copied, start, &quoted);
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    if let Some(out) = out {
        out.push_str(&text[copied..]);
    }
    found
}

/// `text` rewritten by [`scan`] when it needs it, with what was found.
pub(crate) fn storable(text: &str) -> (Option<String>, Found) {
    let found = scan(text, None);
    if !found.any() {
        return (None, found);
    }
    let mut out = String::with_capacity(text.len() + 16);
    scan(text, Some(&mut out));
    (Some(out), found)
}

/// Whether a JSON number reads back as the same finite `f64` it means:
/// not beyond `f64::MAX`, and not a non-zero value that would vanish.
fn reads_back(number: &str) -> bool {
    // Most numbers are short and without an exponent: nothing to parse.
    if number.len() <= 15 && !number.contains(['e', 'E']) {
        return true;
    }
    match number.parse::<f64>() {
        Ok(value) if value.is_infinite() => false,
        Ok(0.0) => {
            // Zero is fine only when every digit of the mantissa is zero.
            let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
            !mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
        }
        Ok(_) => true,
        // Not a number by Rust's grammar: leave it; serde_json validated it.
        Err(_) => true,
    }
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(text: &str) -> (String, Found) {
        let (out, found) = storable(text);
        (out.unwrap_or_else(|| text.to_owned()), found)
    }

    #[test]
    fn nul_escapes_become_the_replacement_character() {
        let (out, found) = rewrite(r#"{"amount":"1000000\u0000","k\u0000":1}"#);
        assert_eq!(out, r#"{"amount":"1000000\ufffd","k\ufffd":1}"#);
        assert_eq!(found.nul, 2);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["amount"], "1000000\u{fffd}");
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        let text = r#"{"path":"C:\\u0000"}"#;
        assert_eq!(storable(text), (None, Found::default()));
    }

    #[test]
    fn numbers_beyond_f64_become_strings() {
        let (out, found) = rewrite(r#"{"a":1e400,"b":[-1E+999,1.5,0.0,0e5,1e-400],"c":"1e400"}"#);
        assert_eq!(
            out,
            r#"{"a":"1e400","b":["-1E+999",1.5,0.0,0e5,"1e-400"],"c":"1e400"}"#
        );
        assert_eq!(found.numbers, 3);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["a"], "1e400");
        let long = format!("[{}]", "9".repeat(400));
        assert_eq!(rewrite(&long).1.numbers, 1);
        assert!(!storable("[1.7976931348623157e308, 5e-324, -0]").1.any());
    }

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        let (out, found) = rewrite(r#"["\ud83d\ude00","\ud800","\udc00x","\uD800\u0041"]"#);
        assert_eq!(out, r#"["\ud83d\ude00","\ufffd","\ufffdx","\ufffd\u0041"]"#);
        assert_eq!(found.lone_surrogates, 3);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value[0], "😀");
    }
}
