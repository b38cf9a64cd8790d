//! The networks app code runs on, as address ranges: a connection from one
//! of them is an app (or a build of a pushed tree), never the owner.
//!
//! The control plane (git, API, dashboard) never answers such a peer,
//! whatever address `--admin` is bound to: an app container reaches the
//! host through its network's gateway, and every address of the host
//! besides, so binding the listener narrowly cannot keep it out.
//!
//! Why a check in paas rather than host firewall rules: the check holds
//! whatever the host's firewall is (nftables, legacy iptables, both at once,
//! firewalld or ufw reloading their rules, an owner's `iptables -F`), needs
//! no rule to be kept in step with networks that come and go, and is tested
//! with the daemon itself. What it costs: the kernel completes the TCP
//! handshake before paas sees the peer, so the app sees a connection that is
//! reset at once, before a byte of an answer, instead of a refused one.
//! Connections between two apps' containers are dropped by the engine
//! itself (its inter-bridge isolation); the integration test checks both.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// One address range, e.g. `172.18.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/n` or `x::/n`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.trim().split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Subnet { addr, prefix })
    }

    /// Whether `ip` lies in this range (an IPv4-mapped IPv6 address, as a
    /// dual-stack listener reports IPv4 peers, counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The ranges of the networks paas runs untrusted code on; shared by the
/// engine wrapper (which adds a network's ranges before any container can
/// start on it) and the listeners (which read them per connection).
#[derive(Debug, Clone, Default)]
pub struct AppNets {
    ranges: Arc<RwLock<Vec<Subnet>>>,
}

impl AppNets {
    /// Whether a peer at `ip` is on one of the apps' networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|s| s.contains(ip))
    }

    /// Adds ranges (a new network's).
    pub fn add(&self, subnets: impl IntoIterator<Item = Subnet>) {
        let mut ranges = self.ranges.write().unwrap_or_else(PoisonError::into_inner);
        for s in subnets {
            if !ranges.contains(&s) {
                ranges.push(s);
            }
        }
    }

    /// Replaces every range (a full re-read of the engine's networks).
    pub fn set(&self, subnets: Vec<Subnet>) {
        let mut fresh = Vec::with_capacity(subnets.len());
        for s in subnets {
            if !fresh.contains(&s) {
                fresh.push(s);
            }
        }
        *self.ranges.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// The ranges, for the log.
    pub fn list(&self) -> Vec<Subnet> {
        self.ranges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let s = Subnet::parse("172.18.0.0/16").unwrap();
        assert!(s.contains(ip("172.18.0.1")));
        assert!(s.contains(ip("172.18.255.254")));
        assert!(!s.contains(ip("172.19.0.2")));
        assert!(!s.contains(ip("127.0.0.1")));
        // A dual-stack listener's view of an IPv4 peer.
        assert!(s.contains(ip("::ffff:172.18.3.4")));
        assert!(!s.contains(ip("fd00::1")));
        let v6 = Subnet::parse("fd00:1::/64").unwrap();
        assert!(v6.contains(ip("fd00:1::5")));
        assert!(!v6.contains(ip("fd00:2::5")));
        assert!(Subnet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(Subnet::parse("10.0.0.0/33"), None);
        assert_eq!(Subnet::parse("10.0.0.0"), None);
        assert_eq!(Subnet::parse("nonsense/8"), None);
        assert_eq!(s.to_string(), "172.18.0.0/16");
    }

    #[test]
    fn the_set_grows_and_is_replaced() {
        let nets = AppNets::default();
        assert!(!nets.contains(ip("172.18.0.2")));
        nets.add(Subnet::parse("172.18.0.0/16"));
        nets.add(Subnet::parse("172.18.0.0/16"));
        assert_eq!(nets.list().len(), 1);
        assert!(nets.contains(ip("172.18.0.2")));
        nets.set(vec![Subnet::parse("172.20.0.0/16").unwrap()]);
        assert!(!nets.contains(ip("172.18.0.2")));
        assert!(nets.contains(ip("172.20.9.9")));
    }
}
