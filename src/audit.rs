//! The audit log (T-OPS-2): one JSON object per line for every token created, renewed,
//! expired and swept, every user altered and every failed login.
//!
//! Lines go to one writer thread, which appends them to the file (opened with `O_APPEND`,
//! 0600) in batches of one `write(2)`; a request's lines are written before its answer is
//! sent (the request waits for the writer, asynchronously, so a slow disk holds up only
//! the requests that are audited, never the runtime's workers). Lines are not fsynced: a
//! crash of ktb loses none, a crash of the machine may lose the last ones. The file is
//! reopened on SIGHUP, so logrotate can move it away. Failed logins are limited per client
//! address (an IPv6 address counts by its /64) and in all; the rest of a second's failures
//! become one line with a `suppressed` count. An HMAC, password or key is never a field:
//! the types written here carry none.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::auth::Principal;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::logsafe::MAX_SHOWN_CHARS;

/// Failed-login lines per client address per second before they are counted instead.
pub const LOGIN_FAILURES_PER_SECOND: u32 = 10;

/// Failed-login lines per second from all addresses together.
const LOGIN_FAILURES_PER_SECOND_IN_ALL: u32 = 100;

/// Client addresses whose failed logins are counted at once; failures from further
/// addresses within the same second share one count (`"client":"other"`), so a flood of
/// addresses cannot grow the table or the number of summary lines.
const MAX_TRACKED_CLIENTS: usize = 1024;

/// The most lines the writer joins into one `write(2)`.
const MAX_BATCH: usize = 512;

/// What an event is about, beyond the caller.
#[derive(Debug, Default, Clone)]
pub struct Subject<'a> {
    /// The token acted on.
    pub token_id: Option<&'a str>,
    /// The token's owner.
    pub owner: Option<&'a Principal>,
    /// Who asked for the token (Create).
    pub requester: Option<&'a Principal>,
    /// The SCRAM user altered, or the user name a failed login tried.
    pub user: Option<&'a str>,
    /// How many further events of the same kind and code this line stands for.
    pub suppressed: Option<u64>,
}

/// Who made the request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The principal of the connection (absent for a login that failed).
    pub principal: Option<&'a Principal>,
    /// The client's address.
    pub client: SocketAddr,
    /// The listener the request arrived on.
    pub listener: &'a str,
}

/// One event to write.
pub struct Event<'a> {
    /// `token_created`, `token_renewed`, `token_expired`, `token_swept`, `user_altered` or
    /// `login_failed`.
    pub event: &'static str,
    /// What it is about.
    pub subject: Subject<'a>,
    /// The Kafka error code answered (0 for success).
    pub code: i16,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    event: &'a str,
    token_id: Option<String>,
    owner: Option<String>,
    requester: Option<String>,
    principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    client: Option<String>,
    listener: Option<&'a str>,
    code: i16,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
}

/// Work for the writer thread.
enum Job {
    /// Append these bytes, then acknowledge.
    Lines(Vec<u8>, Option<oneshot::Sender<()>>),
    /// Open the file again under its name.
    Reopen,
}

/// One second of failed logins from one address (or from the untracked ones).
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
    listener: String,
}

/// The failed-login limiter.
struct Failures {
    by_client: HashMap<Option<IpAddr>, Window>,
    /// Lines written in all during the current second.
    second: Instant,
    written_in_all: u32,
}

/// The audit log; inert when `ktb.audit.log.file` is unset.
pub struct Audit {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    failures: Mutex<Failures>,
    write_errors: Arc<AtomicU64>,
}

/// Opens `path` for appending, creating it 0600; an existing file is made 0600 too.
fn open(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// A client-chosen string cut to [`MAX_SHOWN_CHARS`] characters, `…` marking the cut, as
/// the log shows such strings (T-REVEAL-2); JSON escaping does the rest.
fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Now, as the audit log shows it: the machine's wall clock, whatever clock the broker's
/// token arithmetic runs on (tests drive that one by hand).
fn now() -> String {
    rfc3339(SystemClock.now_ms())
}

/// The limiter's key for a client: its address, or its /64 for IPv6 (one host's share).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The writer thread: appends lines in batches until every sender is gone.
fn write_lines(path: PathBuf, mut file: File, mut jobs: mpsc::UnboundedReceiver<Job>, errors: Arc<AtomicU64>) {
    let mut last_warning: Option<Instant> = None;
    let mut report = |e: std::io::Error, what: &str| {
        errors.fetch_add(1, Ordering::Relaxed);
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            warn!(path = %path.display(), "cannot {what} the audit log (further failures for a minute are only counted): {e}");
            last_warning = Some(Instant::now());
        }
    };
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut bytes = Vec::new();
        let mut acks = Vec::new();
        for job in batch {
            match job {
                Job::Lines(b, ack) => {
                    bytes.extend_from_slice(&b);
                    acks.extend(ack);
                }
                Job::Reopen => {
                    if let Err(e) = file.write_all(&bytes) {
                        report(e, "write");
                    }
                    bytes.clear();
                    match open(&path) {
                        Ok(f) => {
                            file = f;
                            info!(path = %path.display(), "audit log reopened");
                        }
                        Err(e) => report(e, "reopen (still writing the old file)"),
                    }
                }
            }
        }
        if let Err(e) = file.write_all(&bytes) {
            report(e, "write");
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

impl Audit {
    /// The audit log at `path`, or an inert one. Fails, saying why, when the file cannot
    /// be opened.
    pub fn open(path: Option<&Path>) -> Result<Audit, String> {
        let write_errors = Arc::new(AtomicU64::new(0));
        let jobs = match path {
            None => None,
            Some(p) => {
                let file = open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                let (tx, rx) = mpsc::unbounded_channel();
                let (path, errors) = (p.to_path_buf(), write_errors.clone());
                std::thread::Builder::new()
                    .name("ktb-audit".into())
                    .spawn(move || write_lines(path, file, rx, errors))
                    .map_err(|e| format!("cannot start its writer thread: {e}"))?;
                info!(path = %p.display(), "writing the audit log");
                Some(tx)
            }
        };
        let failures = Failures { by_client: HashMap::new(), second: Instant::now(), written_in_all: 0 };
        Ok(Audit { jobs, failures: Mutex::new(failures), write_errors })
    }

    /// True when events are written.
    pub fn enabled(&self) -> bool {
        self.jobs.is_some()
    }

    /// Lines that could not be written since the start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Opens the file again under its name (after log rotation moved it, SIGHUP), once the
    /// lines before are written. If it cannot be opened the old file keeps being written.
    pub fn reopen(&self) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Reopen);
        }
    }

    /// Writes `events`, answered to `caller` (absent for the sweeper), in one write, and
    /// returns once they are written.
    pub async fn record(&self, events: &[Event<'_>], caller: Option<&Caller<'_>>) {
        let Some(jobs) = &self.jobs else { return };
        let mut bytes = Vec::new();
        for e in events {
            line(&mut bytes, e, caller);
        }
        let (ack, done) = oneshot::channel();
        if jobs.send(Job::Lines(bytes, Some(ack))).is_ok() {
            let _ = done.await;
        }
    }

    /// Writes `event` without waiting for it (the sweeper's events: no answer follows).
    pub fn record_detached(&self, event: &Event<'_>) {
        let Some(jobs) = &self.jobs else { return };
        let mut bytes = Vec::new();
        line(&mut bytes, event, None);
        let _ = jobs.send(Job::Lines(bytes, None));
    }

    /// Returns once every line sent before the call is written.
    pub async fn flush(&self) {
        self.record(&[], None).await;
    }

    /// Records a failed login, within the limits.
    pub async fn login_failed(&self, subject: Subject<'_>, caller: &Caller<'_>, code: i16) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let (summary, write) = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(f.second) >= Duration::from_secs(1) {
                f.second = now;
                f.written_in_all = 0;
            }
            let in_all_left = f.written_in_all < LOGIN_FAILURES_PER_SECOND_IN_ALL;
            let ip = client_key(caller.client.ip());
            let tracked = f.by_client.len() < MAX_TRACKED_CLIENTS || f.by_client.contains_key(&Some(ip));
            let key = tracked.then_some(ip);
            let fresh = || Window { start: now, written: 0, suppressed: 0, listener: caller.listener.to_owned() };
            let w = f.by_client.entry(key).or_insert_with(fresh);
            let mut summary = None;
            if now.duration_since(w.start) >= Duration::from_secs(1) {
                summary = (w.suppressed > 0).then(|| (key, w.suppressed, std::mem::take(&mut w.listener)));
                *w = fresh();
            }
            // Untracked addresses are only counted; the others write up to their limit
            // while the limit in all allows.
            let write = key.is_some() && w.written < LOGIN_FAILURES_PER_SECOND && in_all_left;
            if write {
                w.written += 1;
                f.written_in_all += 1;
            } else {
                w.suppressed += 1;
            }
            (summary, write)
        };
        if let Some((key, n, listener)) = summary {
            self.suppressed_line(key, n, &listener);
        }
        if write {
            self.record(&[Event { event: "login_failed", subject, code }], Some(caller)).await;
        }
    }

    /// Writes the `suppressed` lines of seconds that have ended and forgets them; called
    /// once a second, so a flood that stops is still accounted for.
    pub fn flush_suppressed(&self) {
        if !self.enabled() {
            return;
        }
        let ended: Vec<(Option<IpAddr>, u64, String)> = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let mut ended = Vec::new();
            f.by_client.retain(|ip, w| {
                if w.start.elapsed() < Duration::from_secs(1) {
                    return true;
                }
                if w.suppressed > 0 {
                    ended.push((*ip, w.suppressed, std::mem::take(&mut w.listener)));
                }
                false
            });
            ended
        };
        for (ip, n, listener) in ended {
            self.suppressed_line(ip, n, &listener);
        }
    }

    fn suppressed_line(&self, ip: Option<IpAddr>, n: u64, listener: &str) {
        let Some(jobs) = &self.jobs else { return };
        let l = Line {
            ts: now(),
            event: "login_failed",
            token_id: None,
            owner: None,
            requester: None,
            principal: None,
            user: None,
            client: Some(ip.map_or_else(|| "other".to_owned(), |ip| ip.to_string())),
            listener: Some(listener),
            code: ktb_protocol::error_code::SASL_AUTHENTICATION_FAILED,
            suppressed: Some(n),
        };
        let mut bytes = Vec::new();
        push_json(&mut bytes, &l);
        let _ = jobs.send(Job::Lines(bytes, None));
    }
}

/// Appends `e`'s line to `out`.
fn line(out: &mut Vec<u8>, e: &Event<'_>, caller: Option<&Caller<'_>>) {
    let principal = |p: &Principal| cut(&p.to_string());
    let l = Line {
        ts: now(),
        event: e.event,
        token_id: e.subject.token_id.map(cut),
        owner: e.subject.owner.map(principal),
        requester: e.subject.requester.map(principal),
        principal: caller.and_then(|c| c.principal).map(principal),
        user: e.subject.user.map(cut),
        client: caller.map(|c| c.client.to_string()),
        listener: caller.map(|c| c.listener),
        code: e.code,
        suppressed: e.subject.suppressed,
    };
    push_json(out, &l);
}

fn push_json(out: &mut Vec<u8>, l: &Line<'_>) {
    if serde_json::to_writer(&mut *out, l).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client-chosen names are cut as the log cuts them; an IPv6 client counts by its /64.
    #[test]
    fn names_are_cut_and_ipv6_clients_share_their_64() {
        assert_eq!(cut("alice"), "alice");
        let long = "é".repeat(100);
        assert_eq!(cut(&long).chars().count(), MAX_SHOWN_CHARS + 1);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    /// Failed logins from many addresses: at most 100 lines a second in all, and every
    /// failure is either a line or counted in a `suppressed` line.
    #[tokio::test]
    async fn failed_logins_are_limited_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(Some(&path)).unwrap();
        for i in 0..300u32 {
            let client = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 5000));
            let caller = Caller { principal: None, client, listener: "L" };
            for _ in 0..2 {
                audit.login_failed(Subject { user: Some("x"), ..Subject::default() }, &caller, 58).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        audit.flush_suppressed();
        audit.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let written = lines.iter().filter(|l| l["user"] == "x").count() as u64;
        let suppressed: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
        assert_eq!(written, u64::from(LOGIN_FAILURES_PER_SECOND_IN_ALL));
        assert_eq!(written + suppressed, 600);
    }
}
