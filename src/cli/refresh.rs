//! `ktb token refresh`: keeps one token usable in a file (T-REFRESH-1..4).
//!
//! The schedule is a pure function of the state and the time ([`decide`]), so it is tested
//! without sleeping; the loop around it talks to the broker, writes files atomically and
//! sleeps on the injected clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::token::{CreatedToken, change_token, create_token, describe_tokens, rfc3339};
use super::{CliError, CommonFlags, connect, parse_duration, settings};
use crate::auth::Principal;
use crate::clock::{Clock, SystemClock};
use crate::fsutil::atomic_write;

/// Flags of `token refresh`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ktb token refresh --out /run/app/kafka.properties --exec 'systemctl reload app'
  ktb token refresh --out client.conf --format librdkafka --max-lifetime 1d --expire-old
  ktb token refresh --out token.json --format json --once      # from cron")]
pub struct RefreshArgs {
    /// The file to keep current (written atomically, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// What the file holds.
    #[arg(long, value_enum, default_value = "java")]
    pub format: Format,
    /// Where the sidecar remembers its token [default: FILE.state.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The owner of new tokens (User:name; needs a super user).
    #[arg(long, value_name = "PRINCIPAL")]
    pub owner: Option<String>,
    /// Renewers of new tokens. Repeatable.
    #[arg(long = "renewer", value_name = "PRINCIPAL")]
    pub renewers: Vec<String>,
    /// Max lifetime of new tokens (-1: the broker's default).
    #[arg(long, default_value = "-1", value_parser = parse_duration, allow_hyphen_values = true)]
    pub max_lifetime: i64,
    /// Renew this long before expiry [default: min(1h, a third of the renew period)].
    #[arg(long, value_parser = parse_duration)]
    pub renew_before: Option<i64>,
    /// Create a successor this long before the max lifetime [default: 2 × renew-before].
    #[arg(long, value_parser = parse_duration)]
    pub recreate_before: Option<i64>,
    /// Expire a replaced token after --grace.
    #[arg(long)]
    pub expire_old: bool,
    /// How long a replaced token stays valid with --expire-old.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub grace: i64,
    /// A shell command to run after each change of the file.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Do at most one due action, then exit (for cron).
    #[arg(long)]
    pub once: bool,
    /// The SCRAM mechanism written into the file.
    #[arg(long, default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub mechanism: String,
    #[command(flatten)]
    pub common: CommonFlags,
}

/// The formats of the refreshed file (T-REFRESH-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Java client properties: security.protocol, sasl.mechanism, sasl.jaas.config.
    Java,
    /// A JAAS file with a KafkaClient section.
    Jaas,
    /// librdkafka properties (needs ktb's implicit token login).
    Librdkafka,
    /// KAFKA_SASL_USERNAME/PASSWORD/MECHANISM lines.
    Env,
    /// The JSON of `ktb token create --output json`.
    Json,
}

/// What the sidecar remembers between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The token the file holds.
    pub token: CreatedToken,
    /// When it was last created or renewed (epoch ms).
    pub last_change_ms: i64,
    /// Replaced tokens to expire, and when.
    #[serde(default)]
    pub retiring: Vec<Retiring>,
}

/// A replaced token waiting for its grace period to end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retiring {
    /// Its id.
    pub token_id: String,
    /// Its HMAC, base64.
    pub hmac: String,
    /// When to expire it.
    pub expire_at_ms: i64,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create a (successor) token.
    Create,
    /// Renew the current token.
    Renew,
    /// Expire this replaced token.
    ExpireOld(Retiring),
    /// Nothing is due before this time.
    WaitUntil(i64),
}

/// T-REFRESH-2: what is due at `now`.
pub fn decide(state: Option<&State>, now: i64, renew_before: Option<i64>, recreate_before: Option<i64>) -> Decision {
    let Some(s) = state else { return Decision::Create };
    let t = &s.token;
    if let Some(r) = s.retiring.iter().find(|r| r.expire_at_ms <= now) {
        return Decision::ExpireOld(r.clone());
    }
    let period = (t.expiry_timestamp_ms - s.last_change_ms).max(0);
    let renew_before = renew_before.unwrap_or_else(|| (period / 3).min(3_600_000));
    let recreate_before = recreate_before.unwrap_or(renew_before.saturating_mul(2));
    let recreate_at = t.max_timestamp_ms.saturating_sub(recreate_before);
    let renew_at = t.expiry_timestamp_ms.saturating_sub(renew_before);
    if now >= recreate_at {
        return Decision::Create;
    }
    if now >= renew_at {
        return Decision::Renew;
    }
    let next_retire = s.retiring.iter().map(|r| r.expire_at_ms).min().unwrap_or(i64::MAX);
    Decision::WaitUntil(renew_at.min(recreate_at).min(next_retire))
}

/// The file contents for `t` in `format` (T-REFRESH-3).
pub fn render(t: &CreatedToken, format: Format, protocol: &str, mechanism: &str, bootstrap: &str) -> String {
    let (id, hmac) = (&t.token_id, &t.hmac);
    match format {
        Format::Java => {
            let [java, _, _] = super::token::snippets(protocol, mechanism, bootstrap, id, hmac);
            format!("{java}\n")
        }
        Format::Librdkafka => {
            let [_, librdkafka, _] = super::token::snippets(protocol, mechanism, bootstrap, id, hmac);
            format!("{librdkafka}\n")
        }
        Format::Jaas => format!(
            "KafkaClient {{\n  org.apache.kafka.common.security.scram.ScramLoginModule required\n  username=\"{id}\"\n  \
             password=\"{hmac}\"\n  tokenauth=\"true\";\n}};\n"
        ),
        Format::Env => {
            format!("KAFKA_SASL_USERNAME={id}\nKAFKA_SASL_PASSWORD={hmac}\nKAFKA_SASL_MECHANISM={mechanism}\n")
        }
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&t.to_json(protocol, mechanism, bootstrap)).unwrap_or_default()
        ),
    }
}

fn state_path(a: &RefreshArgs) -> PathBuf {
    a.state.clone().unwrap_or_else(|| {
        let mut p = a.out.clone().into_os_string();
        p.push(".state.json");
        PathBuf::from(p)
    })
}

fn load_state(path: &Path) -> Result<Option<State>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::Usage(format!("{} is not a refresh state file: {e}; move it away", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Usage(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    atomic_write(path, bytes, 0o600).map_err(|e| CliError::Internal(format!("cannot write {}: {e}", path.display())))
}

fn log(msg: &str) {
    eprintln!("ktb token refresh: {msg}");
}

/// Runs the sidecar with the system clock until SIGTERM/SIGINT (or once).
pub async fn run(a: RefreshArgs) -> Result<(), CliError> {
    run_with_clock(a, Arc::new(SystemClock)).await
}

/// The sidecar on `clock`.
pub async fn run_with_clock(a: RefreshArgs, clock: Arc<dyn Clock>) -> Result<(), CliError> {
    let owner = a
        .owner
        .as_deref()
        .map(|o| Principal::parse(o).ok_or_else(|| CliError::Usage(format!("bad --owner {o:?}"))))
        .transpose()?;
    let renewers = a
        .renewers
        .iter()
        .map(|r| Principal::parse(r).ok_or_else(|| CliError::Usage(format!("bad --renewer {r:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let st = settings(&a.common.connection)?;
    if st.token_auth.value {
        return Err(CliError::Usage(
            "token refresh must log in as a user: token-authenticated sessions cannot manage tokens (64)".into(),
        ));
    }
    let state_file = state_path(&a);
    let mut state = load_state(&state_file)?;
    let mut checked = false;
    let mut backoff_ms: i64 = 1_000;
    let mut terminate = termination()?;
    loop {
        let attempt: Result<Option<i64>, CliError> = async {
            let mut client = connect(&st, a.common.timeout).await?;
            // T-REFRESH-1: a remembered token must still be visible and live.
            if !checked {
                if let Some(s) = &state {
                    let (_, tokens) = describe_tokens(&mut client, &[]).await?;
                    let now = clock.now_ms();
                    let live = tokens.iter().any(|t| {
                        t.token_id.as_str() == s.token.token_id && t.expiry_timestamp >= now && t.max_timestamp >= now
                    });
                    if !live {
                        log(&format!("token {} is gone or expired; creating a new one", s.token.token_id));
                        state = None;
                    }
                }
                checked = true;
            }
            let now = clock.now_ms();
            match decide(state.as_ref(), now, a.renew_before, a.recreate_before) {
                Decision::WaitUntil(t) => return Ok(Some(t)),
                Decision::Create => {
                    let t = create_token(&mut client, owner.as_ref(), &renewers, a.max_lifetime).await?;
                    let body = render(&t, a.format, &st.security_protocol.value, &a.mechanism, &client.address);
                    write(&a.out, body.as_bytes())?;
                    let mut retiring = state.as_ref().map(|s| s.retiring.clone()).unwrap_or_default();
                    if let (true, Some(old)) = (a.expire_old, &state) {
                        retiring.push(Retiring {
                            token_id: old.token.token_id.clone(),
                            hmac: old.token.hmac.clone(),
                            expire_at_ms: now.saturating_add(a.grace),
                        });
                    }
                    log(&format!(
                        "created token {} (expires {}, max {})",
                        t.token_id,
                        rfc3339(t.expiry_timestamp_ms),
                        rfc3339(t.max_timestamp_ms)
                    ));
                    state = Some(State { token: t, last_change_ms: now, retiring });
                    run_exec(a.exec.as_deref()).await;
                }
                Decision::Renew => {
                    let s = state.as_mut().ok_or_else(|| CliError::Internal("renew without a token".into()))?;
                    let hmac =
                        STANDARD.decode(&s.token.hmac).map_err(|_| CliError::Internal("bad HMAC in state".into()))?;
                    match change_token(&mut client, &hmac, -1, false).await {
                        Ok(expiry) => {
                            s.token.expiry_timestamp_ms = expiry;
                            s.last_change_ms = now;
                            log(&format!("renewed token {} (expires {})", s.token.token_id, rfc3339(expiry)));
                            if a.format == Format::Json {
                                let body = render(
                                    &s.token,
                                    a.format,
                                    &st.security_protocol.value,
                                    &a.mechanism,
                                    &client.address,
                                );
                                write(&a.out, body.as_bytes())?;
                                run_exec(a.exec.as_deref()).await;
                            }
                        }
                        // T-REFRESH-4: the token is gone or expired: replace it.
                        Err(CliError::Kafka { code: 62 | 66, .. }) => {
                            log(&format!("token {} can no longer be renewed; creating a new one", s.token.token_id));
                            state = None;
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Decision::ExpireOld(r) => {
                    let hmac = STANDARD.decode(&r.hmac).map_err(|_| CliError::Internal("bad HMAC in state".into()))?;
                    match change_token(&mut client, &hmac, -1, true).await {
                        Ok(_) => log(&format!("expired replaced token {}", r.token_id)),
                        Err(CliError::Kafka { code: 62, .. }) => {
                            log(&format!("replaced token {} was already gone", r.token_id))
                        }
                        Err(e) => return Err(e),
                    }
                    if let Some(s) = state.as_mut() {
                        s.retiring.retain(|x| x.token_id != r.token_id);
                    }
                }
            }
            if let Some(s) = &state {
                let json = serde_json::to_vec_pretty(s).map_err(|e| CliError::Internal(e.to_string()))?;
                write(&state_file, &json)?;
            }
            Ok(None)
        }
        .await;

        let wait_until = match attempt {
            Ok(Some(t)) if a.once => {
                let _ = t;
                return Ok(());
            }
            Ok(Some(t)) => {
                backoff_ms = 1_000;
                // Up to 5% early, so many sidecars do not move in step.
                let now = clock.now_ms();
                let span = (t - now).max(0);
                t - jitter(span / 20)
            }
            Ok(None) if a.once => return Ok(()),
            Ok(None) => {
                backoff_ms = 1_000;
                continue;
            }
            Err(e) => {
                let permanent = matches!(
                    &e,
                    CliError::Kafka { .. } | CliError::Auth(_) | CliError::Usage(_) | CliError::Internal(_)
                );
                if a.once {
                    return Err(match e {
                        CliError::Auth(m) => {
                            CliError::Kafka { code: ktb_protocol::error_code::SASL_AUTHENTICATION_FAILED, message: m }
                        }
                        other => other,
                    });
                }
                if matches!(e, CliError::Usage(_)) {
                    return Err(e);
                }
                log(&format!("error: {e}; retrying in {} s", backoff_ms / 1000));
                let wait = clock.now_ms() + backoff_ms;
                backoff_ms = if permanent { 60_000 } else { (backoff_ms * 2).min(60_000) };
                wait
            }
        };
        tokio::select! {
            _ = clock.sleep_until(wait_until) => {}
            _ = terminate.recv() => {
                log("stopping");
                return Ok(());
            }
        }
    }
}

fn jitter(max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) % (max as u64 + 1)) as i64
}

async fn run_exec(cmd: Option<&str>) {
    let Some(cmd) = cmd else { return };
    match tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await {
        Ok(s) if s.success() => {}
        Ok(s) => log(&format!("--exec command exited with {s}")),
        Err(e) => log(&format!("--exec command could not run: {e}")),
    }
}

/// A stream of SIGTERM/SIGINT.
fn termination() -> Result<tokio::sync::mpsc::Receiver<()>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut term = signal(SignalKind::terminate()).map_err(|e| CliError::Internal(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| CliError::Internal(e.to_string()))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(()).await;
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(expiry: i64, max: i64, last_change: i64) -> State {
        State {
            token: CreatedToken {
                token_id: "t1".into(),
                hmac: "aG1hYw==".into(),
                owner: "User:app".into(),
                requester: "User:app".into(),
                renewers: vec![],
                issue_timestamp_ms: 0,
                expiry_timestamp_ms: expiry,
                max_timestamp_ms: max,
            },
            last_change_ms: last_change,
            retiring: vec![],
        }
    }

    const H: i64 = 3_600_000;

    /// T-REFRESH-1, T-REFRESH-2: no token → create; renew `min(1h, P/3)` before expiry;
    /// replace `2 × renew_before` before max; otherwise wait for the earliest deadline.
    #[test]
    fn t_refresh_2_schedule() {
        assert_eq!(decide(None, 0, None, None), Decision::Create);
        // A day-long renew period: renew 1 h before expiry, replace 2 h before max.
        let s = state(24 * H, 7 * 24 * H, 0);
        assert_eq!(decide(Some(&s), 0, None, None), Decision::WaitUntil(23 * H));
        assert_eq!(decide(Some(&s), 23 * H - 1, None, None), Decision::WaitUntil(23 * H));
        assert_eq!(decide(Some(&s), 23 * H, None, None), Decision::Renew);
        let late = state(7 * 24 * H, 7 * 24 * H, 6 * 24 * H);
        assert_eq!(decide(Some(&late), 7 * 24 * H - 2 * H, None, None), Decision::Create);
        assert_eq!(decide(Some(&late), 7 * 24 * H - 2 * H - 1, None, None), Decision::WaitUntil(7 * 24 * H - 2 * H));
        // A 3 s period: renew 1 s before expiry, replace 2 s before max.
        let short = state(3_000, 6_000, 0);
        assert_eq!(decide(Some(&short), 1_999, None, None), Decision::WaitUntil(2_000));
        assert_eq!(decide(Some(&short), 2_000, None, None), Decision::Renew);
        let renewed = state(5_000, 6_000, 2_000);
        assert_eq!(decide(Some(&renewed), 4_000, None, None), Decision::Create);
        // Explicit margins win.
        assert_eq!(decide(Some(&s), 0, Some(H / 2), Some(H)), Decision::WaitUntil(24 * H - H / 2));
    }

    /// T-REFRESH-2 with --expire-old: a replaced token is expired when its grace ends.
    #[test]
    fn t_refresh_2_replaced_tokens_expire_after_grace() {
        let mut s = state(24 * H, 7 * 24 * H, 0);
        let r = Retiring { token_id: "old".into(), hmac: "b2xk".into(), expire_at_ms: 300_000 };
        s.retiring.push(r.clone());
        assert_eq!(decide(Some(&s), 0, None, None), Decision::WaitUntil(300_000));
        assert_eq!(decide(Some(&s), 300_000, None, None), Decision::ExpireOld(r));
    }

    /// T-REFRESH-3: each format holds the token id and HMAC as its readers expect.
    #[test]
    fn t_refresh_3_formats() {
        let t = state(1, 2, 0).token;
        let java = render(&t, Format::Java, "SASL_PLAINTEXT", "SCRAM-SHA-512", "h:1");
        assert!(java.contains("sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"t1\" password=\"aG1hYw==\" tokenauth=\"true\";"), "{java}");
        assert!(java.starts_with("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"));
        let rd = render(&t, Format::Librdkafka, "SASL_PLAINTEXT", "SCRAM-SHA-256", "h:1");
        assert_eq!(
            rd,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-256\nsasl.username=t1\nsasl.password=aG1hYw==\n"
        );
        let env = render(&t, Format::Env, "SASL_PLAINTEXT", "SCRAM-SHA-512", "h:1");
        assert_eq!(env, "KAFKA_SASL_USERNAME=t1\nKAFKA_SASL_PASSWORD=aG1hYw==\nKAFKA_SASL_MECHANISM=SCRAM-SHA-512\n");
        let jaas = render(&t, Format::Jaas, "SASL_PLAINTEXT", "SCRAM-SHA-512", "h:1");
        assert!(jaas.starts_with("KafkaClient {") && jaas.contains("tokenauth=\"true\";") && jaas.ends_with("};\n"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&t, Format::Json, "SASL_PLAINTEXT", "SCRAM-SHA-512", "h:1")).unwrap();
        assert_eq!((json["token_id"].as_str(), json["hmac"].as_str()), (Some("t1"), Some("aG1hYw==")));
    }
}
