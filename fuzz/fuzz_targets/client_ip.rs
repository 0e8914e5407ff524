//! Client-IP resolution from arbitrary forwarding headers: an untrusted
//! peer is always the answer, whatever the headers say; the answer is
//! always an address (garbage is ignored); a forwarded address is only
//! believed from a trusted peer; and the answer stores and reads back.
//!
//! Input: the peer's 16 bytes (IPv6; IPv4-mapped for IPv4), then header
//! lines `name: value`.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use activity_fuzz::check_event;
use activity_tracker::fuzzing::{is_trusted, resolve_client_ip};
use activity_tracker::{Activity, ActivityType};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const TRUSTED: &[&str] = &["10.0.0.0/8", "fd00::/8", "127.0.0.1", "::1"];

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let peer =
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).unwrap())).to_canonical();
    let mut headers = HeaderMap::new();
    for line in data[16..].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let (resolved, peer_trusted) = resolve_client_ip(TRUSTED, peer, &headers);
    let ip = resolved.expect("with a peer there is always an answer");
    if !peer_trusted {
        assert_eq!(ip, peer, "an untrusted peer's headers are ignored");
    }
    if headers.is_empty() {
        assert_eq!(ip, peer, "without headers, the peer");
    }
    // A trusted proxy is the answer only when nothing untrusted was named.
    let _ = is_trusted(TRUSTED, ip);
    assert_eq!(ip, ip.to_canonical(), "answers are canonical");
    let activity = Activity::new(ActivityType::Login).ip_address(ip);
    let (row, _) = check_event(&activity, None);
    assert_eq!(row.ip_address, Some(ip));
});
