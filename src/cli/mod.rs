//! The client side of the `ktb` command line: `ktb token …`, `ktb user …` and
//! `ktb config show` against ktb or any Kafka cluster (SPEC §6.8).

pub mod health;
pub mod kdt;
pub mod refresh;
pub mod secret;
pub mod settings;
pub mod token;
pub mod token_ops;
pub mod user;

use std::io::BufRead;
use std::time::Duration;

use ktb_protocol::error_code;
use serde_json::json;

use crate::client::{Client, ClientError, Credentials};
use settings::{ConnectionFlags, Settings};

/// Exit codes of the client commands (T-CLI-5).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// An unexpected internal error.
    pub const INTERNAL: u8 = 1;
    /// A usage or configuration error.
    pub const USAGE: u8 = 2;
    /// The broker could not be reached, or the login failed.
    pub const CONNECTION: u8 = 3;
    /// The broker answered with a Kafka error code.
    pub const KAFKA: u8 = 4;
    /// The broker did not answer in time.
    pub const TIMEOUT: u8 = 5;
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// No connection (exit 3).
    #[error("{0}")]
    Connection(String),
    /// A refused login (exit 3).
    #[error("{} ({code}): {message}; check the user name, password and --sasl-mechanism (see `ktb config show`)", error_code::name(*code))]
    Auth {
        /// The Kafka error code (58, 33, ...).
        code: i16,
        /// The server's message.
        message: String,
    },
    /// A Kafka error code in an answer (exit 4).
    #[error("{}", kafka_message(*code, message))]
    Kafka {
        /// The error code.
        code: i16,
        /// The server's message or the request's context.
        message: String,
    },
    /// No answer in time (exit 5).
    #[error("{0}")]
    Timeout(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Internal(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Connection(_) | CliError::Auth { .. } => exit::CONNECTION,
            CliError::Kafka { .. } => exit::KAFKA,
            CliError::Timeout(_) => exit::TIMEOUT,
            CliError::Internal(_) => exit::INTERNAL,
        }
    }

    /// The error as JSON for `--output json`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CliError::Kafka { code, .. } | CliError::Auth { code, .. } => {
                json!({"error": {"code": code, "name": error_code::name(*code), "message": self.to_string()}})
            }
            other => json!({"error": {"code": null, "name": null, "message": other.to_string()}}),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Connect(m) | ClientError::Tls(m) => CliError::Connection(format!(
                "cannot connect to the broker: {m}; check --bootstrap-server (see `ktb config show`)"
            )),
            ClientError::Timeout(d) => {
                CliError::Timeout(format!("the broker did not answer within {d:?}; retry, or raise --timeout"))
            }
            ClientError::Auth { code, message } => CliError::Auth { code, message },
            m @ ClientError::Mechanism { code, .. } => CliError::Auth { code, message: m.to_string() },
            ClientError::Protocol(m) => CliError::Connection(m),
            ClientError::Unsupported(m) => CliError::Internal(format!("the broker does not support {m}")),
        }
    }
}

/// The one-line text of a Kafka error: name, code, what it means and what to do.
fn kafka_message(code: i16, context: &str) -> String {
    let hint = match code {
        error_code::DELEGATION_TOKEN_AUTH_DISABLED => {
            "the broker has delegation tokens disabled; set delegation.token.secret.key on the broker"
        }
        error_code::DELEGATION_TOKEN_NOT_FOUND => {
            "no live token has this HMAC (it may have been expired or swept); check the HMAC or create a new token"
        }
        error_code::DELEGATION_TOKEN_OWNER_MISMATCH => {
            "only the token's owner or one of its renewers may renew or expire it; log in as one of them"
        }
        error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED => {
            "this connection is token-authenticated (or not authenticated), and such sessions cannot manage tokens; \
             log in as a user"
        }
        error_code::DELEGATION_TOKEN_AUTHORIZATION_FAILED => {
            "only a super user may create tokens for another owner; drop --owner or log in as a super user"
        }
        error_code::DELEGATION_TOKEN_EXPIRED => "the token has expired; create a new one",
        error_code::INVALID_PRINCIPAL_TYPE => "owners and renewers must be User principals (User:name)",
        error_code::CLUSTER_AUTHORIZATION_FAILED => "only a super user (super.users) may do this",
        error_code::RESOURCE_NOT_FOUND => "no such user or credential",
        error_code::DUPLICATE_RESOURCE => "the same user was named twice",
        error_code::UNACCEPTABLE_CREDENTIAL => "the broker refused the credential",
        error_code::UNSUPPORTED_SASL_MECHANISM => "the broker does not offer this SCRAM mechanism",
        error_code::INVALID_REQUEST => {
            "the request is over one of the broker's limits (on ktb: ktb.token.max.renewers, \
             ktb.token.max.per.owner, 64 KiB of principal names per token, ktb.user.max.alterations.per.request; \
             the broker's log names the one); ask for less or have the operator raise it"
        }
        _ => "the broker refused the request",
    };
    let context = if context.is_empty() { String::new() } else { format!(" ({context})") };
    format!("{} ({code}): {hint}{context}", error_code::name(code))
}

/// Output format of the client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable tables and text (the default).
    Table,
    /// One JSON document on stdout.
    Json,
}

/// Flags common to every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonFlags {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// Output format.
    #[arg(long, value_enum, env = "KTB_OUTPUT", default_value = "table", global = true)]
    pub output: Output,
    /// How long to wait for each answer from the broker (ms, or 30s, 5m, ...).
    #[arg(long, default_value = "30s", value_parser = parse_timeout, global = true)]
    pub timeout: i64,
}

/// Parses a duration: milliseconds (`1500`), `-1`, or a number with `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return if ms >= -1 { Ok(ms) } else { Err(format!("{s}: a duration is -1 or at least 0")) };
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("bad duration {s:?}"))?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}: expected e.g. 1500, 30s, 15m, 12h, 7d"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("bad duration {s:?}: units are ms, s, m, h, d (e.g. 7d)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("duration {s:?} is too long"))
}

fn parse_timeout(s: &str) -> Result<i64, String> {
    match parse_duration(s)? {
        t if t > 0 => Ok(t),
        _ => Err(format!("--timeout {s}: must be longer than 0")),
    }
}

/// Reads one line from stdin, without its line ending.
pub fn read_stdin_line(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::Usage(format!("cannot read {what}: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        return Err(CliError::Usage(format!("{what}: standard input was empty")));
    }
    Ok(line)
}

/// The resolved settings of `flags`, reading the password from stdin when asked.
/// In table mode, the `--command-config` keys ktb does not use are noted on stderr.
pub fn settings(common: &CommonFlags) -> Result<Settings, CliError> {
    let flags = &common.connection;
    let stdin_password = if flags.sasl_password_stdin { Some(read_stdin_line("--sasl-password-stdin")?) } else { None };
    let s = settings::resolve(flags, stdin_password, &|k| std::env::var(k).ok())?;
    if common.output == Output::Table {
        for k in &s.ignored {
            eprintln!("note: --command-config key {k} is not used by ktb");
        }
    }
    Ok(s)
}

/// Connects to the bootstrap server and logs in as the settings say.
pub async fn connect(s: &Settings, timeout_ms: i64) -> Result<Client, CliError> {
    let timeout = Duration::from_millis(timeout_ms.max(1) as u64);
    let tls = match s.security_protocol.value.as_str() {
        "SASL_SSL" => Some(
            crate::tls::client_config(s.truststore.as_ref().map(|t| t.value.as_slice())).map_err(CliError::Usage)?,
        ),
        _ => None,
    };
    let mut client = Client::connect(&s.bootstrap.value, timeout, tls).await?;
    if s.security_protocol.value == "PLAINTEXT" {
        return Ok(client);
    }
    let (Some(user), Some(password)) = (&s.username, &s.password) else {
        return Err(CliError::Usage(
            "no credentials: give --sasl-username with --sasl-password-stdin, KTB_SASL_USERNAME and KTB_SASL_PASSWORD, \
             a --command-config file or a profile (see `ktb config show`)"
                .into(),
        ));
    };
    let creds = Credentials {
        mechanism: s.mechanism.value.clone(),
        username: user.value.clone(),
        password: password.value.clone(),
        token_auth: s.token_auth.value,
    };
    client.authenticate(&creds).await?;
    Ok(client)
}

/// Prints a JSON document on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// `ktb config show`: every connection setting, its value and its source (T-CLI-2).
pub fn config_show(common: &CommonFlags) -> Result<(), CliError> {
    let s = settings(common)?;
    let hidden =
        |p: &Option<settings::Sourced<String>>| p.as_ref().map(|p| ("[hidden]".to_owned(), p.source.to_string()));
    let shown = |p: &Option<settings::Sourced<String>>| p.as_ref().map(|p| (p.value.clone(), p.source.to_string()));
    let rows: Vec<(&str, Option<(String, String)>)> = vec![
        ("bootstrap_server", Some((s.bootstrap.value.clone(), s.bootstrap.source.to_string()))),
        ("security_protocol", Some((s.security_protocol.value.clone(), s.security_protocol.source.to_string()))),
        ("sasl_mechanism", Some((s.mechanism.value.clone(), s.mechanism.source.to_string()))),
        ("sasl_username", shown(&s.username)),
        ("sasl_password", hidden(&s.password)),
        ("tokenauth", Some((s.token_auth.value.to_string(), s.token_auth.source.to_string()))),
        ("ssl_truststore", s.truststore.as_ref().map(|t| ("PEM".to_owned(), t.source.to_string()))),
    ];
    let path = settings::profile_path(&|k| std::env::var(k).ok());
    match common.output {
        Output::Json => {
            let mut m = serde_json::Map::new();
            for (k, v) in &rows {
                m.insert(
                    (*k).into(),
                    match v {
                        Some((value, source)) => json!({"value": value, "source": source}),
                        None => json!(null),
                    },
                );
            }
            m.insert("profile_file".into(), json!(path.map(|p| p.display().to_string())));
            print_json(&serde_json::Value::Object(m));
        }
        Output::Table => {
            println!("{:<18} {:<32} SOURCE", "SETTING", "VALUE");
            for (k, v) in rows {
                let (value, source) = v.unwrap_or(("(unset)".into(), "-".into()));
                println!("{k:<18} {value:<32} {source}");
            }
            if let Some(p) = path {
                println!("\nprofile file: {}", p.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-CLI-5 (usage errors): durations as the CLI accepts them.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("1500"), Ok(1500));
        assert_eq!(parse_duration("-1"), Ok(-1));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("12h"), Ok(43_200_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        for bad in ["", "7w", "d", "-5", "1.5h", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
