//! Client IP resolution: the socket peer, unless it is a trusted proxy, in
//! which case `Forwarded`, then `X-Forwarded-For`, then `X-Real-IP` name the
//! client; in each, the right-most address that is not itself a trusted
//! proxy wins. Garbage is ignored, never an error.
//!
//! On the request path only the peer is checked and the few header values
//! are cloned (refcounted); parsing happens in the dispatcher.

use std::net::{IpAddr, Ipv6Addr};

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::CaptureConfigError;

/// `X-Forwarded-For`.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`.
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The values of one header, cloned without copying the bytes; almost
/// always zero or one, so no allocation then.
#[derive(Debug, Clone, Default)]
pub(crate) enum HeaderValues {
    /// Not present.
    #[default]
    None,
    /// Present once.
    One(HeaderValue),
    /// Present several times, in order.
    Many(Vec<HeaderValue>),
}

impl HeaderValues {
    /// Every value of `name` in `headers`.
    pub(crate) fn from_map(headers: &HeaderMap, name: &HeaderName) -> Self {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return HeaderValues::None;
        };
        let Some(second) = values.next() else {
            return HeaderValues::One(first.clone());
        };
        let mut all = vec![first.clone(), second.clone()];
        all.extend(values.cloned());
        HeaderValues::Many(all)
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, HeaderValues::None)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &HeaderValue> {
        let (one, many): (Option<&HeaderValue>, &[HeaderValue]) = match self {
            HeaderValues::None => (None, &[]),
            HeaderValues::One(value) => (Some(value), &[]),
            HeaderValues::Many(values) => (None, values),
        };
        one.into_iter().chain(many)
    }
}

/// The proxy headers of a request whose peer is a trusted proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardedHeaders {
    forwarded: HeaderValues,
    x_forwarded_for: HeaderValues,
    x_real_ip: HeaderValues,
}

impl ForwardedHeaders {
    /// The proxy headers of `headers`, or `None` if there is none.
    pub(crate) fn from_map(headers: &HeaderMap) -> Option<Self> {
        let found = ForwardedHeaders {
            forwarded: HeaderValues::from_map(headers, &FORWARDED),
            x_forwarded_for: HeaderValues::from_map(headers, &X_FORWARDED_FOR),
            x_real_ip: HeaderValues::from_map(headers, &X_REAL_IP),
        };
        let none = found.forwarded.is_none()
            && found.x_forwarded_for.is_none()
            && found.x_real_ip.is_none();
        (!none).then_some(found)
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Adds a CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address.
    pub(crate) fn add(&mut self, text: &str) -> Result<(), CaptureConfigError> {
        let trimmed = text.trim();
        let net = match trimmed.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(net_error) => match trimmed.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(CaptureConfigError::InvalidProxy {
                        value: text.to_owned(),
                        reason: net_error.to_string(),
                    });
                }
            },
        };
        self.nets.push(net);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is a trusted proxy.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client IP of a request from `peer` carrying `headers` (only
    /// gathered when the peer is trusted).
    pub(crate) fn resolve(
        &self,
        peer: Option<IpAddr>,
        headers: Option<&ForwardedHeaders>,
    ) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        let Some(headers) = headers else {
            return Some(peer);
        };
        if !self.contains(peer) {
            return Some(peer);
        }
        let from_forwarded = || {
            self.walk(
                headers
                    .forwarded
                    .iter()
                    .flat_map(|value| split_list(value.as_bytes()))
                    .map(forwarded_for),
            )
        };
        let from_list = |values: &HeaderValues| {
            self.walk(
                values
                    .iter()
                    .flat_map(|value| split_list(value.as_bytes()))
                    .map(parse_node),
            )
        };
        from_forwarded()
            .or_else(|| from_list(&headers.x_forwarded_for))
            .or_else(|| from_list(&headers.x_real_ip))
            .or(Some(peer))
    }

    /// Walks a hop list from the right: the first address not trusted wins;
    /// garbage stops the walk (nothing to its left can be believed), and
    /// then the left-most trusted address seen is the answer.
    fn walk(&self, hops: impl Iterator<Item = Option<IpAddr>>) -> Option<IpAddr> {
        let hops: Vec<Option<IpAddr>> = hops.collect();
        let mut candidate = None;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else { break };
            if !self.contains(ip) {
                return Some(ip);
            }
            candidate = Some(ip);
        }
        candidate
    }
}

/// The client address behind trusted proxies, by the layer's rule (the
/// right-most address that is not a trusted proxy), for servers that take
/// requests themselves rather than through the layer: the processor's
/// ingest endpoint.
///
/// ```
/// use activity_tracker::ClientIpResolver;
/// use http::HeaderMap;
///
/// let resolver = ClientIpResolver::new(["10.0.0.0/8"]).unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
/// let peer = "10.0.0.1".parse().unwrap();
/// assert_eq!(resolver.client_ip(peer, &headers), "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
/// // A peer that is not trusted is the client, whatever it claims.
/// let peer = "198.51.100.4".parse().unwrap();
/// assert_eq!(resolver.client_ip(peer, &headers), peer);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    proxies: TrustedProxies,
}

impl ClientIpResolver {
    /// Trusting the proxies in `nets`: CIDRs (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses; none, the peer is always the client.
    pub fn new<I, S>(nets: I) -> Result<Self, CaptureConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut proxies = TrustedProxies::default();
        for net in nets {
            proxies.add(net.as_ref())?;
        }
        Ok(ClientIpResolver { proxies })
    }

    /// The client address of a request from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded = if self.proxies.contains(peer) {
            ForwardedHeaders::from_map(headers)
        } else {
            None
        };
        self.proxies
            .resolve(Some(peer), forwarded.as_ref())
            .unwrap_or(peer.to_canonical())
    }
}

/// Splits a comma-separated header value into trimmed items, ignoring
/// commas inside double quotes.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut quoted = false;
        let end = text.iter().position(|&byte| {
            if byte == b'"' {
                quoted = !quoted;
            }
            byte == b',' && !quoted
        });
        let item = match end {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                &text[..end]
            }
            None => {
                rest = None;
                text
            }
        };
        Some(item.trim_ascii())
    })
}

/// The `for=` node of one `Forwarded` element (RFC 7239), if it is an
/// address (`unknown` and obfuscated `_names` are not).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    element.split(|&byte| byte == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let equals = pair.iter().position(|&byte| byte == b'=')?;
        let (key, value) = (&pair[..equals], &pair[equals + 1..]);
        key.trim_ascii()
            .eq_ignore_ascii_case(b"for")
            .then(|| parse_node(value.trim_ascii()))
            .flatten()
    })
}

/// One address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]`, `[::1]:80`, optionally in double quotes.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node).ok()?.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(node);
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(bracketed) = node.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (host, port) = node.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        let mut proxies = TrustedProxies::default();
        for net in nets {
            proxies.add(net).unwrap();
        }
        proxies
    }

    fn headers(pairs: &[(&str, &str)]) -> Option<ForwardedHeaders> {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        ForwardedHeaders::from_map(&map)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn no_proxy_configured_means_the_peer() {
        let proxies = trusted(&[]);
        let forged = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            proxies.resolve(ip("203.0.113.7"), forged.as_ref()),
            ip("203.0.113.7")
        );
        assert_eq!(proxies.resolve(None, forged.as_ref()), None);
    }

    #[test]
    fn forged_header_from_an_untrusted_peer_changes_nothing() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forged = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        assert_eq!(
            proxies.resolve(ip("203.0.113.7"), forged.as_ref()),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn trusted_chain_gives_the_right_most_untrusted_address() {
        let proxies = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged the first entry; the first proxy appended the
        // real client; a second trusted proxy appended the first.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.9, 10.1.2.3")]);
        assert_eq!(
            proxies.resolve(ip("192.168.1.1"), chain.as_ref()),
            ip("198.51.100.9")
        );
        // The same spread over several header lines.
        let lines = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.9, 10.1.2.3"),
        ]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), lines.as_ref()),
            ip("198.51.100.9")
        );
        // Every hop trusted: the left-most one is the client.
        let inside = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), inside.as_ref()),
            ip("10.9.9.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(proxies.resolve(ip("10.0.0.1"), None), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_x_real_ip() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let all = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"10.1.1.1:8080\"",
            ),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-real-ip", "198.51.100.2"),
        ]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), all.as_ref()),
            ip("192.0.2.60")
        );
        let real_ip_only = headers(&[("x-real-ip", "198.51.100.2")]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), real_ip_only.as_ref()),
            ip("198.51.100.2")
        );
    }

    #[test]
    fn ipv6_forms_are_understood() {
        let proxies = trusted(&["fd00::/8", "10.0.0.0/8"]);
        let quoted = headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(
            proxies.resolve(ip("fd00::1"), quoted.as_ref()),
            ip("2001:db8:cafe::17")
        );
        let loopback = headers(&[("forwarded", "for=\"[::1]:80\"")]);
        assert_eq!(proxies.resolve(ip("fd00::1"), loopback.as_ref()), ip("::1"));
        let bare = headers(&[("x-forwarded-for", "2001:db8::1, [fd00::2]:443")]);
        assert_eq!(
            proxies.resolve(ip("fd00::1"), bare.as_ref()),
            ip("2001:db8::1")
        );
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6.
        let mapped = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(
            proxies.resolve(ip("::ffff:10.0.0.1"), mapped.as_ref()),
            ip("198.51.100.9")
        );
        assert_eq!(
            trusted(&[]).resolve(ip("::ffff:198.51.100.9"), None),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let proxies = trusted(&["10.0.0.0/8"]);
        for value in [
            "",
            "not an ip",
            "unknown",
            "999.1.1.1",
            "1.2.3.4:port",
            "[::1",
        ] {
            let junk = headers(&[("x-forwarded-for", value)]);
            assert_eq!(
                proxies.resolve(ip("10.0.0.1"), junk.as_ref()),
                ip("10.0.0.1"),
                "{value:?}"
            );
        }
        let junk_forwarded = headers(&[("forwarded", "for=unknown, for=_hidden;proto=https")]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), junk_forwarded.as_ref()),
            ip("10.0.0.1")
        );
        // Garbage left of a good address stops nothing to its right.
        let mixed = headers(&[("x-forwarded-for", "garbage, 198.51.100.9, 10.1.1.1")]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), mixed.as_ref()),
            ip("198.51.100.9")
        );
        // Garbage right of a trusted hop: the walk stops there.
        let stop = headers(&[("x-forwarded-for", "198.51.100.9, garbage, 10.1.1.1")]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), stop.as_ref()),
            ip("10.1.1.1")
        );
        // A bad Forwarded falls through to X-Forwarded-For.
        let fallback = headers(&[
            ("forwarded", "for=nonsense"),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), fallback.as_ref()),
            ip("198.51.100.9")
        );
        // Non-UTF-8 bytes.
        let mut map = HeaderMap::new();
        map.insert(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.9").unwrap(),
        );
        let bytes = ForwardedHeaders::from_map(&map);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), bytes.as_ref()),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn proxy_list_accepts_cidrs_and_addresses_and_refuses_garbage() {
        let mut proxies = TrustedProxies::default();
        proxies.add("10.0.0.0/8").unwrap();
        proxies.add(" 192.168.1.1 ").unwrap();
        proxies.add("fd00::/8").unwrap();
        assert!(proxies.contains("10.200.0.1".parse().unwrap()));
        assert!(proxies.contains("192.168.1.1".parse().unwrap()));
        assert!(!proxies.contains("192.168.1.2".parse().unwrap()));
        assert!(proxies.contains("fd12::1".parse().unwrap()));
        let error = proxies.add("10.0.0.0/33").unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
        assert!(proxies.add("example.com").is_err());
    }
}
