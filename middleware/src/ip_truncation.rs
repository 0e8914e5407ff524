//! Storing less of a client address: an IP address cut to its network
//! prefix (the /24 of IPv4, the /48 of IPv6, say), the network address
//! kept. The layer applies it at capture (the tracker builder's and
//! `CaptureConfig`'s `ip_truncation`); the store applies the same rule to
//! every event it writes, whichever producer sent it.
//!
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, what a dual-stack
//! listener reports for an IPv4 client) is truncated as the IPv4 address it
//! holds, and kept as that IPv4 address.
//!
//! ```
//! use std::net::IpAddr;
//! use activity_tracker::IpTruncation;
//!
//! let cut: IpTruncation = "24,48".parse().unwrap();
//! let ip = |s: &str| s.parse::<IpAddr>().unwrap();
//! assert_eq!(cut.apply(ip("198.51.100.77")), ip("198.51.100.0"));
//! assert_eq!(cut.apply(ip("2001:db8:1234:5678::1")), ip("2001:db8:1234::"));
//! assert_eq!(cut.apply(ip("::ffff:198.51.100.77")), ip("198.51.100.0"));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// How many leading bits of a client address are kept; the rest are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpTruncation {
    v4_prefix: u8,
    v6_prefix: u8,
}

/// A prefix longer than the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IP truncation must be <IPv4 prefix 0..=32>,<IPv6 prefix 0..=128>, e.g. 24,48 (got {0:?})")]
pub struct IpTruncationError(pub String);

impl IpTruncation {
    /// Keeps the first `v4_prefix` bits of an IPv4 address and the first
    /// `v6_prefix` bits of an IPv6 one.
    pub fn new(v4_prefix: u8, v6_prefix: u8) -> Result<Self, IpTruncationError> {
        if v4_prefix > 32 || v6_prefix > 128 {
            return Err(IpTruncationError(format!("{v4_prefix},{v6_prefix}")));
        }
        Ok(Self {
            v4_prefix,
            v6_prefix,
        })
    }

    /// The IPv4 prefix length kept.
    pub fn v4_prefix(&self) -> u8 {
        self.v4_prefix
    }

    /// The IPv6 prefix length kept.
    pub fn v6_prefix(&self) -> u8 {
        self.v6_prefix
    }

    /// The network address of `ip`'s prefix.
    pub fn apply(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
                u32::from(v4)
                    & u32::MAX
                        .checked_shl(32 - u32::from(self.v4_prefix))
                        .unwrap_or(0),
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6)
                    & u128::MAX
                        .checked_shl(128 - u32::from(self.v6_prefix))
                        .unwrap_or(0),
            )),
        }
    }

    /// Whether [`apply`](Self::apply) would change `ip`.
    pub fn changes(&self, ip: IpAddr) -> bool {
        self.apply(ip) != ip
    }
}

impl FromStr for IpTruncation {
    type Err = IpTruncationError;

    /// `"24,48"`: the IPv4 prefix, then the IPv6 one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpTruncationError(s.to_owned());
        let (v4, v6) = s.split_once(',').ok_or_else(bad)?;
        let v4 = v4.trim().parse().map_err(|_| bad())?;
        let v6 = v6.trim().parse().map_err(|_| bad())?;
        Self::new(v4, v6).map_err(|_| bad())
    }
}

impl std::fmt::Display for IpTruncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.v4_prefix, self.v6_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_the_network_address_of_each_family() {
        let cut = IpTruncation::new(24, 48).unwrap();
        assert_eq!(cut.apply(ip("203.0.113.255")), ip("203.0.113.0"));
        assert_eq!(
            cut.apply(ip("2001:db8:aaaa:bbbb:cccc::9")),
            ip("2001:db8:aaaa::")
        );
        assert_eq!(cut.apply(ip("::ffff:203.0.113.9")), ip("203.0.113.0"));
        assert!(!cut.changes(ip("203.0.113.0")));
        assert!(cut.changes(ip("::ffff:203.0.113.0")), "mapped becomes IPv4");
    }

    #[test]
    fn edge_prefixes() {
        let none = IpTruncation::new(0, 0).unwrap();
        assert_eq!(none.apply(ip("203.0.113.9")), ip("0.0.0.0"));
        assert_eq!(none.apply(ip("2001:db8::1")), ip("::"));
        let all = IpTruncation::new(32, 128).unwrap();
        assert_eq!(all.apply(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(all.apply(ip("2001:db8::1")), ip("2001:db8::1"));
        let odd = IpTruncation::new(20, 33).unwrap();
        assert_eq!(odd.apply(ip("203.0.127.9")), ip("203.0.112.0"));
        assert_eq!(odd.apply(ip("2001:db8:ffff::")), ip("2001:db8:8000::"));
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("24, 48".parse(), Ok(IpTruncation::new(24, 48).unwrap()));
        assert_eq!(IpTruncation::new(24, 48).unwrap().to_string(), "24,48");
        for bad in ["24", "33,48", "24,129", "a,b", ""] {
            let error = bad.parse::<IpTruncation>().unwrap_err().to_string();
            assert!(error.contains("e.g. 24,48"), "{error}");
        }
    }
}
