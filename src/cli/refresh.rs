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

use super::token_ops::{CreatedToken, change_token, create_token, describe_tokens, rfc3339, snippets};
use super::{CliError, CommonFlags, connect, parse_duration, settings};
use crate::auth::Principal;
use crate::clock::{Clock, SystemClock};
use crate::fsutil::atomic_write;
use ktb_protocol::error_code::{DELEGATION_TOKEN_EXPIRED, DELEGATION_TOKEN_NOT_FOUND};

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
    #[arg(long, visible_alias = "owner-principal", value_name = "PRINCIPAL")]
    pub owner: Option<String>,
    /// Renewers of new tokens. Repeatable.
    #[arg(long = "renewer", visible_alias = "renewer-principal", value_name = "PRINCIPAL")]
    pub renewers: Vec<String>,
    /// Max lifetime of new tokens (-1: the broker's default).
    #[arg(long, visible_alias = "max-life-time-period", default_value = "-1", value_parser = parse_duration, allow_hyphen_values = true)]
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

/// What the sidecar remembers between runs (its `Debug` hides HMACs).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The token the file holds.
    pub token: CreatedToken,
    /// When it was last created or renewed (epoch ms).
    pub last_change_ms: i64,
    /// Replaced tokens to expire, and when.
    #[serde(default)]
    pub retiring: Vec<Retiring>,
}

/// A replaced token waiting for its grace period to end (its `Debug` hides the HMAC).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retiring {
    /// Its id.
    pub token_id: String,
    /// Its HMAC, base64.
    pub hmac: String,
    /// When to expire it.
    pub expire_at_ms: i64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("token", &self.token)
            .field("last_change_ms", &self.last_change_ms)
            .field("retiring", &self.retiring)
            .finish()
    }
}

impl std::fmt::Debug for Retiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retiring").field("token_id", &self.token_id).field("expire_at_ms", &self.expire_at_ms).finish()
    }
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
    if let Some(r) = s.retiring.iter().find(|r| r.expire_at_ms <= now) {
        return Decision::ExpireOld(r.clone());
    }
    let next_retire = s.retiring.iter().map(|r| r.expire_at_ms).min().unwrap_or(i64::MAX);
    Decision::WaitUntil(renew_at.min(recreate_at).min(next_retire))
}

/// The file contents for `t` in `format` (T-REFRESH-3).
pub fn render(t: &CreatedToken, format: Format, protocol: &str, mechanism: &str, bootstrap: &str) -> String {
    let (id, hmac) = (&t.token_id, &t.hmac);
    match format {
        Format::Java => {
            let [java, _, _] = snippets(protocol, mechanism, bootstrap, id, hmac);
            format!("{java}\n")
        }
        Format::Librdkafka => {
            let [_, librdkafka, _] = snippets(protocol, mechanism, bootstrap, id, hmac);
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

/// What one pass of the loop did.
enum Step {
    /// Performed the due action.
    Acted,
    /// Something changed without an action (a dead token was dropped): decide again.
    Again,
    /// Nothing is due before this time.
    Wait(i64),
}

/// The sidecar's working state across passes.
struct Sidecar {
    args: RefreshArgs,
    settings: super::settings::Settings,
    owner: Option<Principal>,
    renewers: Vec<Principal>,
    state_file: PathBuf,
    state: Option<State>,
    /// Replaced tokens still to expire after the current token was dropped.
    carried: Vec<Retiring>,
    checked: bool,
    /// The last action and when, to stop a schedule that is due again at once.
    last_action: Option<(bool, i64)>,
}

impl Sidecar {
    fn write_state(&self) -> Result<(), CliError> {
        match &self.state {
            Some(s) => {
                let json = serde_json::to_vec_pretty(s).map_err(|e| CliError::Internal(e.to_string()))?;
                write(&self.state_file, &json)
            }
            None => Ok(()),
        }
    }

    /// Writes the out file for the current token if it does not hold it already.
    async fn write_out(&self, address: &str) -> Result<(), CliError> {
        let Some(s) = &self.state else { return Ok(()) };
        let st = &self.settings;
        let body = render(&s.token, self.args.format, &st.security_protocol.value, &self.args.mechanism, address);
        if std::fs::read(&self.args.out).ok().as_deref() != Some(body.as_bytes()) {
            write(&self.args.out, body.as_bytes())?;
            run_exec(self.args.exec.as_deref()).await;
        }
        Ok(())
    }

    fn drop_token(&mut self) {
        if let Some(s) = self.state.take() {
            self.carried.extend(s.retiring);
        }
    }

    /// One pass at time `now`: connect only when something is due (or at the first pass).
    async fn step(&mut self, now: i64) -> Result<Step, CliError> {
        let (renew_before, recreate_before) = (self.args.renew_before, self.args.recreate_before);
        if self.checked
            && let Decision::WaitUntil(t) = decide(self.state.as_ref(), now, renew_before, recreate_before)
        {
            return Ok(Step::Wait(t));
        }
        let mut client = connect(&self.settings, self.args.common.timeout).await?;
        if !self.checked {
            // T-REFRESH-1: a remembered token must still be visible and live.
            if let Some(s) = &self.state {
                let (_, tokens) = describe_tokens(&mut client, None).await?;
                let live = tokens.iter().any(|t| {
                    t.token_id.as_str() == s.token.token_id && t.expiry_timestamp >= now && t.max_timestamp >= now
                });
                if live {
                    self.write_out(&client.address).await?;
                } else {
                    log(&format!("token {} is gone or expired; creating a new one", s.token.token_id));
                    self.drop_token();
                }
            }
            self.checked = true;
        }
        let decision = decide(self.state.as_ref(), now, renew_before, recreate_before);
        let create = matches!(decision, Decision::Create);
        let acts = matches!(decision, Decision::Create | Decision::Renew);
        if acts
            && let Some((was_create, at)) = self.last_action
            && was_create == create
            && now.saturating_sub(at) < 1_000
        {
            log("the schedule is due again right after acting: --renew-before/--recreate-before must be well below \
                 the token's renew period and max lifetime; waiting a minute");
            return Ok(Step::Wait(now.saturating_add(60_000)));
        }
        match decision {
            Decision::WaitUntil(t) => return Ok(Step::Wait(t)),
            Decision::Create => {
                let a = &self.args;
                let t = create_token(&mut client, self.owner.as_ref(), &self.renewers, a.max_lifetime).await?;
                let mut retiring = std::mem::take(&mut self.carried);
                if let Some(old) = self.state.take() {
                    retiring.extend(old.retiring);
                    if self.args.expire_old {
                        retiring.push(Retiring {
                            token_id: old.token.token_id,
                            hmac: old.token.hmac,
                            expire_at_ms: now.saturating_add(self.args.grace),
                        });
                    }
                }
                log(&format!(
                    "created token {} (expires {}, max {})",
                    t.token_id,
                    rfc3339(t.expiry_timestamp_ms),
                    rfc3339(t.max_timestamp_ms)
                ));
                self.state = Some(State { token: t, last_change_ms: now, retiring });
                // State first: after a crash between the two writes, the restart re-renders
                // the out file from the state.
                self.write_state()?;
                self.write_out(&client.address).await?;
            }
            Decision::Renew => {
                let Some(s) = self.state.as_mut() else { return Ok(Step::Again) };
                let hmac =
                    STANDARD.decode(&s.token.hmac).map_err(|_| CliError::Internal("bad HMAC in state".into()))?;
                match change_token(&mut client, &hmac, -1, false).await {
                    Ok(expiry) => {
                        s.token.expiry_timestamp_ms = expiry;
                        s.last_change_ms = now;
                        log(&format!("renewed token {} (expires {})", s.token.token_id, rfc3339(expiry)));
                        self.write_state()?;
                        self.write_out(&client.address).await?;
                    }
                    // T-REFRESH-4: the token is gone or expired: replace it.
                    Err(CliError::Kafka { code: DELEGATION_TOKEN_NOT_FOUND | DELEGATION_TOKEN_EXPIRED, .. }) => {
                        log(&format!("token {} can no longer be renewed; creating a new one", s.token.token_id));
                        self.drop_token();
                        return Ok(Step::Again);
                    }
                    Err(e) => return Err(e),
                }
            }
            Decision::ExpireOld(r) => {
                let hmac = STANDARD.decode(&r.hmac).map_err(|_| CliError::Internal("bad HMAC in state".into()))?;
                match change_token(&mut client, &hmac, -1, true).await {
                    Ok(_) => log(&format!("expired replaced token {}", r.token_id)),
                    // A refusal will not change by retrying: let it go.
                    Err(CliError::Kafka { code, .. }) => log(&format!(
                        "replaced token {} not expired ({})",
                        r.token_id,
                        ktb_protocol::error_code::name(code)
                    )),
                    Err(e) => return Err(e),
                }
                if let Some(s) = self.state.as_mut() {
                    s.retiring.retain(|x| x.token_id != r.token_id);
                }
                self.write_state()?;
            }
        }
        if acts {
            self.last_action = Some((create, now));
        }
        Ok(Step::Acted)
    }
}

/// The sidecar on `clock`.
pub async fn run_with_clock(a: RefreshArgs, clock: Arc<dyn Clock>) -> Result<(), CliError> {
    let parse =
        |p: &str| Principal::parse(p).ok_or_else(|| CliError::Usage(format!("{p:?}: a principal is User:name")));
    let owner = a.owner.as_deref().map(parse).transpose()?;
    let renewers = a.renewers.iter().map(|r| parse(r)).collect::<Result<Vec<_>, _>>()?;
    let settings = settings(&a.common)?;
    if settings.token_auth.value {
        return Err(CliError::Usage(
            "token refresh must log in as a user: token-authenticated sessions cannot manage tokens (64)".into(),
        ));
    }
    let state_file = state_path(&a);
    let state = load_state(&state_file)?;
    let once = a.once;
    let mut car = Sidecar {
        args: a,
        settings,
        owner,
        renewers,
        state_file,
        state,
        carried: Vec::new(),
        checked: false,
        last_action: None,
    };
    let mut backoff_ms: i64 = 1_000;
    // How early the current wake-up is (the jitter), so the due action runs now.
    let mut early = 0;
    let mut terminate = termination()?;
    loop {
        let now = clock.now_ms().saturating_add(early);
        early = 0;
        let wait_until = match car.step(now).await {
            Ok(Step::Acted) if once => return Ok(()),
            Ok(Step::Wait(_)) if once => return Ok(()),
            Ok(Step::Acted) | Ok(Step::Again) => {
                backoff_ms = 1_000;
                continue;
            }
            Ok(Step::Wait(t)) => {
                backoff_ms = 1_000;
                // Up to 5% early, so sidecars started together do not act in step.
                let span = t.saturating_sub(clock.now_ms()).max(0);
                early = jitter(span / 20);
                t - early
            }
            Err(e) => {
                if once {
                    return Err(match e {
                        // T-REFRESH-4: a refused login is a Kafka error (58) for --once.
                        CliError::Auth { code, message } => CliError::Kafka { code, message },
                        other => other,
                    });
                }
                if matches!(e, CliError::Usage(_)) {
                    return Err(e);
                }
                let transient = matches!(e, CliError::Connection(_) | CliError::Timeout(_));
                log(&format!("error: {e}; retrying in {} s", backoff_ms / 1000));
                let wait = clock.now_ms().saturating_add(backoff_ms);
                backoff_ms = if transient { (backoff_ms * 2).min(60_000) } else { 60_000 };
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

/// Runs the `--exec` command without the sidecar's own credentials in its environment,
/// and gives up on it after a minute so a hung hook cannot stop the renewals.
async fn run_exec(cmd: Option<&str>) {
    let Some(cmd) = cmd else { return };
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(cmd).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_SASL_")) {
        command.env_remove(k);
    }
    let status = match command.spawn() {
        Ok(mut child) => tokio::time::timeout(std::time::Duration::from_secs(60), child.wait()).await,
        Err(e) => return log(&format!("--exec command could not run: {e}")),
    };
    match status {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => log(&format!("--exec command exited with {s}")),
        Ok(Err(e)) => log(&format!("--exec command failed: {e}")),
        Err(_) => log("--exec command ran longer than 60 s and was killed"),
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
