//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! internal readers, reached without making them part of the API. Not for
//! use by anything else; may change at any time.

use std::net::IpAddr;

use http::HeaderMap;

use crate::capture::client_ip::{ForwardedHeaders, TrustedProxies};

/// The client address of a request from `peer` with `headers`, behind the
/// proxies `trusted` (CIDRs or addresses; ones that do not parse are
/// skipped), as the layer resolves it; and whether `peer` is trusted.
pub fn resolve_client_ip(
    trusted: &[&str],
    peer: IpAddr,
    headers: &HeaderMap,
) -> (Option<IpAddr>, bool) {
    let mut proxies = TrustedProxies::default();
    for net in trusted {
        let _ = proxies.add(net);
    }
    let forwarded = ForwardedHeaders::from_map(headers);
    (
        proxies.resolve(Some(peer), forwarded.as_ref()),
        proxies.contains(peer),
    )
}

/// Whether `ip` is one of `trusted` (as [`resolve_client_ip`] reads them).
pub fn is_trusted(trusted: &[&str], ip: IpAddr) -> bool {
    let mut proxies = TrustedProxies::default();
    for net in trusted {
        let _ = proxies.add(net);
    }
    proxies.contains(ip)
}

/// The whole records at the start of a spool file's contents, each as its
/// write time in Unix milliseconds (none in the format without it) and
/// its payload, and whether a torn or corrupt tail followed.
pub fn spool_records(file: &[u8]) -> (Vec<(Option<i64>, Vec<u8>)>, bool) {
    crate::dispatcher::spool::read_records(file)
}

/// One spool record holding `payload`, written at `written_ms` as an
/// append writes it, or without a write time (`None`) as trackers before
/// it wrote.
pub fn spool_record(payload: &[u8], written_ms: Option<i64>) -> Vec<u8> {
    crate::dispatcher::spool::encode_record(payload, written_ms)
}
