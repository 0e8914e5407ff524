//! Session id and user agent: read from header values cloned on the request
//! path, turned into strings in the dispatcher.

use std::borrow::Cow;

use http::HeaderValue;

use super::client_ip::HeaderValues;
use crate::activity::prefix_chars;
use crate::{limits, truncate_chars};

/// The value of cookie `name` in the `Cookie` header(s), if present and
/// not empty; at most 255 characters.
pub(crate) fn session_from_cookies(cookies: &HeaderValues, name: &str) -> Option<String> {
    cookies.iter().find_map(|header| {
        header
            .as_bytes()
            .split(|&byte| byte == b';')
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
                let value = value.trim_ascii();
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|inner| inner.strip_suffix(b"\""))
                    .unwrap_or(value);
                session_text(value)
            })
    })
}

/// A session id sent as a header value; at most 255 characters.
pub(crate) fn session_from_header(value: &HeaderValue) -> Option<String> {
    session_text(value.as_bytes().trim_ascii())
}

fn session_text(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    truncate_chars(&mut text, limits::SESSION_ID_MAX_CHARS);
    Some(text)
}

/// The user agent: non-UTF-8 bytes replaced (never dropped with the event),
/// truncated to 500 characters on a character boundary; borrowed from the
/// header when it is UTF-8 already.
pub(crate) fn user_agent(value: &HeaderValue) -> Cow<'_, str> {
    match String::from_utf8_lossy(value.as_bytes()) {
        Cow::Borrowed(text) => Cow::Borrowed(prefix_chars(text, limits::USER_AGENT_MAX_CHARS)),
        Cow::Owned(mut text) => {
            truncate_chars(&mut text, limits::USER_AGENT_MAX_CHARS);
            Cow::Owned(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::COOKIE;

    fn cookies(lines: &[&str]) -> HeaderValues {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(COOKIE, HeaderValue::from_str(line).unwrap());
        }
        HeaderValues::from_map(&map, &COOKIE)
    }

    #[test]
    fn session_comes_from_the_named_cookie() {
        let jar = cookies(&["theme=dark; session_id=abc123; x=1"]);
        assert_eq!(
            session_from_cookies(&jar, "session_id").as_deref(),
            Some("abc123")
        );
        // A cookie whose name merely ends with the one asked for is not it.
        let lookalike = cookies(&["my_session_id=evil; session_id=\"quoted\""]);
        assert_eq!(
            session_from_cookies(&lookalike, "session_id").as_deref(),
            Some("quoted")
        );
        // HTTP/2 may split cookies over several header lines.
        let split = cookies(&["a=1", "session_id=second-line"]);
        assert_eq!(
            session_from_cookies(&split, "session_id").as_deref(),
            Some("second-line")
        );
        assert_eq!(session_from_cookies(&cookies(&["a=1"]), "session_id"), None);
        assert_eq!(
            session_from_cookies(&cookies(&["session_id="]), "session_id"),
            None
        );
        assert_eq!(
            session_from_cookies(&HeaderValues::None, "session_id"),
            None
        );
    }

    #[test]
    fn session_ids_are_bounded() {
        let long = format!("session_id={}", "s".repeat(400));
        let id = session_from_cookies(&cookies(&[&long]), "session_id").unwrap();
        assert_eq!(id.len(), 255);
        let header = HeaderValue::from_str(&"h".repeat(300)).unwrap();
        assert_eq!(session_from_header(&header).unwrap().len(), 255);
        assert_eq!(session_from_header(&HeaderValue::from_static("  ")), None);
    }

    #[test]
    fn user_agent_is_truncated_on_a_char_boundary_and_never_lost() {
        let multibyte = "Mozilla/5.0 ü€😀".repeat(60);
        let value = HeaderValue::from_bytes(multibyte.as_bytes()).unwrap();
        let ua = user_agent(&value);
        assert_eq!(ua.chars().count(), 500);
        assert!(multibyte.starts_with(&*ua));

        let invalid = HeaderValue::from_bytes(b"Agent/\xff\xfe 1.0").unwrap();
        assert_eq!(user_agent(&invalid), "Agent/\u{fffd}\u{fffd} 1.0");
    }
}
