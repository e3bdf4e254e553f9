//! Limits every connection passes through: connections per address and in all
//! (T-LIMIT-5), and the write deadline (T-LIMIT-3).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// File descriptors kept free for the store, the data dir and the log when the
/// connection limit is derived from the open-file limit (T-LIMIT-5).
pub const RESERVED_FDS: u64 = 64;

/// The open-file limit of this process, raised to its hard limit first when that is
/// higher (as most servers do); `None` when it cannot be read.
pub fn open_file_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        Some(lim.rlim_cur)
    }
}

/// `max.connections` in force: the configured value, lowered to what the open-file
/// limit allows minus [`RESERVED_FDS`] (at least one connection).
pub fn effective_max_connections(configured: i32, open_files: Option<u64>) -> usize {
    let configured = configured.max(0) as u64;
    let allowed = match open_files {
        Some(n) => configured.min(n.saturating_sub(RESERVED_FDS).max(1)),
        None => configured,
    };
    allowed.min(usize::MAX as u64) as usize
}

/// Open connections per client address, against `max.connections.per.ip` and its
/// overrides (T-LIMIT-5).
pub struct ConnectionQuotas {
    default: u32,
    overrides: HashMap<IpAddr, u32>,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection counted against its address; dropping it gives the slot back.
pub struct IpSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.quotas.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionQuotas {
    /// The quotas of `max.connections.per.ip` and its overrides; an override naming a
    /// host applies to each address the host resolves to now (as Kafka resolves them
    /// once). Returns the hosts that did not resolve, for the caller to report.
    pub fn new(default: i32, overrides: &[(String, i32)]) -> (Arc<ConnectionQuotas>, Vec<String>) {
        let mut map = HashMap::new();
        let mut unresolved = Vec::new();
        for (host, count) in overrides {
            let count = (*count).max(0) as u32;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<IpAddr>() {
                Ok(ip) => {
                    map.insert(canonical(ip), count);
                }
                Err(_) => match (host, 0).to_socket_addrs() {
                    Ok(addrs) => {
                        for a in addrs {
                            map.insert(canonical(a.ip()), count);
                        }
                    }
                    Err(_) => unresolved.push(host.to_owned()),
                },
            }
        }
        let quotas = ConnectionQuotas { default: default.max(0) as u32, overrides: map, open: Mutex::default() };
        (Arc::new(quotas), unresolved)
    }

    /// Counts a new connection from `ip`, or `None` when the address is at its limit.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = canonical(ip);
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.default);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot { quotas: self.clone(), ip })
    }
}

/// An IPv4 client seen through an IPv6 socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Why an answer was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The client took none of the answer's pending bytes within the deadline (T-LIMIT-3).
    #[error("the client took no bytes of the answer for {0:?}")]
    Stalled(Duration),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes `bytes` and flushes, closing on a stalled reader: each write must make
/// progress within `deadline` (a progress timeout, as Kafka's selector closes stalled
/// writers), so a slow but reading client is served and one that reads nothing is not.
pub async fn write_with_deadline<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut bytes: &[u8],
    deadline: Duration,
) -> Result<(), WriteError> {
    while !bytes.is_empty() {
        match tokio::time::timeout(deadline, stream.write(bytes)).await {
            Err(_) => return Err(WriteError::Stalled(deadline)),
            Ok(Ok(0)) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    match tokio::time::timeout(deadline, stream.flush()).await {
        Err(_) => Err(WriteError::Stalled(deadline)),
        Ok(r) => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-LIMIT-5: the open-file limit lowers `max.connections`, keeping a reserve.
    #[test]
    fn t_limit_5_max_connections_follows_the_open_file_limit() {
        assert_eq!(effective_max_connections(i32::MAX, Some(1024)), 960);
        assert_eq!(effective_max_connections(100, Some(1024)), 100);
        assert_eq!(effective_max_connections(100, Some(10)), 1, "never zero");
        assert_eq!(effective_max_connections(100, None), 100);
    }

    /// T-LIMIT-5: an address at its limit is refused, others are not; closing gives the
    /// slot back; overrides by address (IPv4-mapped IPv6 counts as IPv4).
    #[test]
    fn t_limit_5_per_ip_quotas_and_overrides() {
        let (q, unresolved) =
            ConnectionQuotas::new(2, &[("::ffff:127.0.0.9".into(), 0), ("::1".into(), 3), ("[::1]".into(), 3)]);
        assert!(unresolved.is_empty());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let s1 = q.try_open(a).unwrap();
        let _s2 = q.try_open(mapped).unwrap();
        assert!(q.try_open(a).is_none(), "third from the same address");
        assert!(q.try_open("127.0.0.2".parse().unwrap()).is_some(), "another address is unaffected");
        drop(s1);
        assert!(q.try_open(a).is_some(), "a closed connection frees its slot");
        assert!(q.try_open("127.0.0.9".parse().unwrap()).is_none(), "override 0 refuses all");
        let six: IpAddr = "::1".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| q.try_open(six).unwrap()).collect();
        assert!(q.try_open(six).is_none());
        drop(slots);
        assert!(q.open.lock().unwrap().get(&six).is_none(), "no entry kept for an address with no connections");
    }
}
