//! The audit log (T-OPS-2): one JSON object per line for every token created, renewed,
//! expired and swept, every user altered and every failed login.
//!
//! Lines are appended with `O_APPEND` and written with one `write(2)` before the answer is
//! sent (not fsynced: the page cache has the line even if ktb dies right after). The file
//! is created 0600 and reopened on SIGHUP, so logrotate can move it away. Failed logins
//! are limited per client address to [`LOGIN_FAILURES_PER_SECOND`]; the rest of a second's
//! failures become one line with a `suppressed` count. An HMAC, password or key is never
//! a field: the types written here carry none.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::{info, warn};

use crate::auth::Principal;

/// Failed-login lines per client address per second before they are counted instead.
pub const LOGIN_FAILURES_PER_SECOND: u32 = 10;

/// Client addresses whose failed logins are counted at once; failures from further
/// addresses within the same second share one count, so a flood of addresses cannot grow
/// the table.
const MAX_TRACKED_CLIENTS: usize = 4096;

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

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    event: &'a str,
    token_id: Option<&'a str>,
    owner: Option<String>,
    requester: Option<String>,
    principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    client: Option<String>,
    listener: Option<&'a str>,
    code: i16,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
}

/// One second of failed logins from one address.
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
    listener: String,
}

/// The audit log; inert when `ktb.audit.log.file` is unset.
pub struct Audit {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
    /// Failed logins per client address (`None`: the addresses beyond the table's size).
    failures: Mutex<HashMap<Option<IpAddr>, Window>>,
}

/// Opens `path` for appending, creating it 0600; an existing file is made 0600 too.
fn open(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds.
fn rfc3339_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// Client-chosen names longer than this are cut (at a character boundary) in the log.
const MAX_NAME: usize = 256;

fn cut(s: &str) -> &str {
    if s.len() <= MAX_NAME {
        return s;
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Audit {
    /// The audit log at `path`, or an inert one. Fails when the file cannot be opened.
    pub fn open(path: Option<&Path>) -> std::io::Result<Audit> {
        let file = path.map(open).transpose()?;
        if let Some(p) = path {
            info!(path = %p.display(), "writing the audit log");
        }
        Ok(Audit { path: path.map(Path::to_path_buf), file: Mutex::new(file), failures: Mutex::default() })
    }

    /// True when events are written.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// Opens the file again under its name (after log rotation moved it, SIGHUP). If it
    /// cannot be opened the old file keeps being written.
    pub fn reopen(&self) {
        let Some(path) = &self.path else { return };
        match open(path) {
            Ok(f) => {
                *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
                info!(path = %path.display(), "audit log reopened");
            }
            Err(e) => warn!(path = %path.display(), "cannot reopen the audit log; still writing the old file: {e}"),
        }
    }

    /// Records `event` about `subject`, answered with `code`, for `caller` (absent for
    /// the sweeper).
    pub fn record(&self, event: &str, subject: &Subject<'_>, caller: Option<&Caller<'_>>, code: i16) {
        if !self.enabled() {
            return;
        }
        self.write(&Line {
            ts: rfc3339_ms(now_ms()),
            event,
            token_id: subject.token_id.map(cut),
            owner: subject.owner.map(ToString::to_string),
            requester: subject.requester.map(ToString::to_string),
            principal: caller.and_then(|c| c.principal).map(ToString::to_string),
            user: subject.user.map(cut),
            client: caller.map(|c| c.client.to_string()),
            listener: caller.map(|c| c.listener),
            code,
            suppressed: None,
        });
    }

    /// Records a failed login, within the per-address limit.
    pub fn login_failed(&self, subject: &Subject<'_>, caller: &Caller<'_>, code: i16) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let (summary, write) = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let ip = caller.client.ip();
            let key =
                if failures.len() < MAX_TRACKED_CLIENTS || failures.contains_key(&Some(ip)) { Some(ip) } else { None };
            let w = failures.entry(key).or_insert_with(|| Window {
                start: now,
                written: 0,
                suppressed: 0,
                listener: caller.listener.to_owned(),
            });
            let mut summary = None;
            if now.duration_since(w.start) >= Duration::from_secs(1) {
                summary = (w.suppressed > 0).then_some(w.suppressed);
                *w = Window { start: now, written: 0, suppressed: 0, listener: caller.listener.to_owned() };
            }
            let write = w.written < LOGIN_FAILURES_PER_SECOND;
            if write {
                w.written += 1;
            } else {
                w.suppressed += 1;
            }
            (summary.map(|n| (key, n, w.listener.clone())), write)
        };
        if let Some((key, n, listener)) = summary {
            self.suppressed_line(key, n, &listener);
        }
        if write {
            self.record("login_failed", subject, Some(caller), code);
        }
    }

    /// Writes the `suppressed` lines of seconds that have ended and forgets them; called
    /// once a second, so a flood that stops is still accounted for.
    pub fn flush_suppressed(&self) {
        if !self.enabled() {
            return;
        }
        let ended: Vec<(Option<IpAddr>, u64, String)> = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let mut ended = Vec::new();
            failures.retain(|ip, w| {
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
        self.write(&Line {
            ts: rfc3339_ms(now_ms()),
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
        });
    }

    /// One `write(2)` of one line.
    fn write(&self, line: &Line<'_>) {
        let Ok(mut bytes) = serde_json::to_vec(line) else { return };
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(&bytes)
        {
            warn!("cannot write the audit log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_796_215_325_007), "2026-12-02T12:42:05.007Z");
    }
}
