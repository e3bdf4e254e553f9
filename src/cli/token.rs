//! `ktb token create|renew|expire|describe|revoke` (SPEC §6.8).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kafka_protocol::messages::create_delegation_token_request::CreatableRenewers;
use kafka_protocol::messages::describe_delegation_token_request::DescribeDelegationTokenOwner;
use kafka_protocol::messages::describe_delegation_token_response::DescribedDelegationToken;
use kafka_protocol::messages::{
    ApiKey, CreateDelegationTokenRequest, DescribeDelegationTokenRequest, ExpireDelegationTokenRequest,
    RenewDelegationTokenRequest, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::{CliError, CommonFlags, Output, connect, parse_duration, print_json, read_stdin_line, settings};
use crate::auth::Principal;
use crate::client::Client;

/// `ktb token …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a delegation token and print it with ready-to-paste client settings.
    ///
    /// The token id and HMAC it prints are a password for the owner: whoever has them
    /// can log in as the owner until the token expires.
    ///
    /// Examples:
    ///   ktb token create
    ///   ktb token create --max-lifetime 12h --renewer User:ops
    ///   ktb token create --owner User:app            # as a super user
    ///   ktb token create --output json | jq -r .hmac
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// Renew a token, pushing its expiry forward (never past its max lifetime).
    ///
    /// Examples:
    ///   ktb token renew --hmac-file token.hmac
    ///   printf '%s\n' "$HMAC" | ktb token renew --hmac - --period 12h
    #[command(verbatim_doc_comment)]
    Renew(ChangeArgs),
    /// Expire a token: at once (the default, which deletes it) or after --period.
    ///
    /// Examples:
    ///   ktb token expire --hmac-file token.hmac
    ///   ktb token expire --hmac - --period 10m < token.hmac
    #[command(verbatim_doc_comment)]
    Expire(ChangeArgs),
    /// List the tokens you may see (all of them for a super user).
    ///
    /// Unlike kafka-delegation-tokens.sh, no --owner means every visible token.
    ///
    /// Examples:
    ///   ktb token describe
    ///   ktb token describe --owner User:app --output json
    #[command(verbatim_doc_comment)]
    Describe(DescribeArgs),
    /// Expire a token at once by its id: no HMAC to type (describe, then expire).
    ///
    /// Example:
    ///   ktb token revoke --token-id bxw-KptNTH6KHys8TV5vcA
    #[command(verbatim_doc_comment)]
    Revoke(RevokeArgs),
    /// Keep a token fresh in a file: renew before expiry, replace before max lifetime.
    Refresh(super::refresh::RefreshArgs),
}

/// Flags of `token create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The owner, as User:name (needs a super user, and CreateDelegationToken v3).
    #[arg(long, visible_alias = "owner-principal", value_name = "PRINCIPAL")]
    pub owner: Option<String>,
    /// A principal that may renew and expire the token. Repeatable.
    #[arg(long = "renewer", visible_alias = "renewer-principal", value_name = "PRINCIPAL")]
    pub renewers: Vec<String>,
    /// The token's max lifetime (-1: the broker's default). Also --max-life-time-period (ms).
    #[arg(long, visible_alias = "max-life-time-period", default_value = "-1", value_parser = parse_duration, allow_hyphen_values = true)]
    pub max_lifetime: i64,
    /// The SCRAM mechanism the printed client settings use.
    #[arg(long, default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub mechanism: String,
    #[command(flatten)]
    pub common: CommonFlags,
}

/// Where an HMAC comes from (its `Debug` hides a literal HMAC).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct HmacSource {
    /// The token's HMAC in base64, or - to read it from standard input.
    #[arg(long, value_name = "B64", allow_hyphen_values = true)]
    pub hmac: Option<String>,
    /// A file whose first line is the token's HMAC in base64.
    #[arg(long, value_name = "FILE")]
    pub hmac_file: Option<PathBuf>,
}

/// Flags of `token renew` and `token expire`.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub hmac: HmacSource,
    /// The period (-1: renew by the broker's default; expire at once). Also
    /// --renew-time-period / --expiry-time-period (ms).
    #[arg(long, visible_aliases = ["renew-time-period", "expiry-time-period"], default_value = "-1", value_parser = parse_duration, allow_hyphen_values = true)]
    pub period: i64,
    #[command(flatten)]
    pub common: CommonFlags,
}

/// Flags of `token describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// Only tokens this principal owns, requested or renews. Repeatable.
    #[arg(long = "owner", visible_alias = "owner-principal", value_name = "PRINCIPAL")]
    pub owners: Vec<String>,
    /// Show each token's HMAC (a password).
    #[arg(long)]
    pub show_hmac: bool,
    #[command(flatten)]
    pub common: CommonFlags,
}

/// Flags of `token revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The id of the token to expire.
    #[arg(long, value_name = "ID")]
    pub token_id: String,
    #[command(flatten)]
    pub common: CommonFlags,
}

impl std::fmt::Debug for HmacSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSource")
            .field("hmac", &self.hmac.as_ref().map(|h| if h == "-" { "-" } else { "[hidden]" }))
            .field("hmac_file", &self.hmac_file)
            .finish()
    }
}

fn principal(s: &str) -> Result<Principal, CliError> {
    Principal::parse(s).ok_or_else(|| CliError::Usage(format!("{s:?}: a principal is Type:name, e.g. User:alice")))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Reads the HMAC from its flag, stdin or file, and decodes it.
fn read_hmac(src: &HmacSource) -> Result<Vec<u8>, CliError> {
    let text = match (&src.hmac, &src.hmac_file) {
        (Some(h), _) if h == "-" => read_stdin_line("--hmac -")?,
        (Some(h), _) => h.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| CliError::Usage(format!("cannot read --hmac-file {}: {e}", f.display())))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => return Err(CliError::Usage("give --hmac or --hmac-file".into())),
    };
    STANDARD
        .decode(text.trim())
        .map_err(|_| CliError::Usage("the HMAC is not base64 (ktb token create prints it in base64)".into()))
}

/// RFC 3339 UTC with milliseconds for epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    if ms < 0 {
        return "-".into();
    }
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// "in 23h 59m" or "3m ago".
pub fn relative(ms: i64, now: i64) -> String {
    let d = ms.saturating_sub(now).unsigned_abs().saturating_add(500) / 1000;
    let text = match d {
        d if d >= 86_400 => format!("{}d {}h", d / 86_400, d % 86_400 / 3600),
        d if d >= 3600 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        d if d >= 60 => format!("{}m {}s", d / 60, d % 60),
        d => format!("{d}s"),
    };
    if ms >= now { format!("in {text}") } else { format!("{text} ago") }
}

fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// The ready-to-paste client settings for a token (T-CLI-4).
pub fn snippets(protocol: &str, mechanism: &str, bootstrap: &str, token_id: &str, hmac_b64: &str) -> [String; 3] {
    let java = format!(
        "security.protocol={protocol}\nsasl.mechanism={mechanism}\nsasl.jaas.config=org.apache.kafka.common.security.\
         scram.ScramLoginModule required username=\"{token_id}\" password=\"{hmac_b64}\" tokenauth=\"true\";"
    );
    let librdkafka = format!(
        "security.protocol={protocol}\nsasl.mechanisms={mechanism}\nsasl.username={token_id}\nsasl.password={hmac_b64}"
    );
    let kcat = format!(
        "kcat -b {bootstrap} -X security.protocol={protocol} -X sasl.mechanisms={mechanism} -X sasl.username={token_id} \
         -X sasl.password={hmac_b64} -L"
    );
    [java, librdkafka, kcat]
}

/// A created token, as the CLI and the refresh sidecar print and store it (its `Debug`
/// hides the HMAC).
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CreatedToken {
    /// The token id.
    pub token_id: String,
    /// The HMAC, standard base64.
    pub hmac: String,
    /// `Type:name`.
    pub owner: String,
    /// `Type:name` (empty before CreateDelegationToken v3).
    pub requester: String,
    /// `Type:name` each.
    pub renewers: Vec<String>,
    /// Issue time, epoch ms.
    pub issue_timestamp_ms: i64,
    /// Expiry time, epoch ms.
    pub expiry_timestamp_ms: i64,
    /// Max time, epoch ms.
    pub max_timestamp_ms: i64,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token_id", &self.token_id)
            .field("owner", &self.owner)
            .field("expiry_timestamp_ms", &self.expiry_timestamp_ms)
            .field("max_timestamp_ms", &self.max_timestamp_ms)
            .finish_non_exhaustive()
    }
}

impl CreatedToken {
    /// The JSON of T-CLI-4 for this token.
    pub fn to_json(&self, protocol: &str, mechanism: &str, bootstrap: &str) -> serde_json::Value {
        let [java, librdkafka, kcat] = snippets(protocol, mechanism, bootstrap, &self.token_id, &self.hmac);
        json!({
            "token_id": self.token_id, "hmac": self.hmac, "owner": self.owner, "requester": self.requester,
            "renewers": self.renewers, "issue_timestamp_ms": self.issue_timestamp_ms,
            "expiry_timestamp_ms": self.expiry_timestamp_ms, "max_timestamp_ms": self.max_timestamp_ms,
            "issue_time": rfc3339(self.issue_timestamp_ms), "expiry_time": rfc3339(self.expiry_timestamp_ms),
            "max_time": rfc3339(self.max_timestamp_ms),
            "snippets": {"java": java, "librdkafka": librdkafka, "kcat": kcat},
        })
    }
}

/// Sends CreateDelegationToken on an authenticated connection.
pub async fn create_token(
    client: &mut Client,
    owner: Option<&Principal>,
    renewers: &[Principal],
    max_lifetime_ms: i64,
) -> Result<CreatedToken, CliError> {
    let version = client.version(ApiKey::CreateDelegationToken)?;
    let mut req = CreateDelegationTokenRequest::default().with_max_lifetime_ms(max_lifetime_ms).with_renewers(
        renewers
            .iter()
            .map(|r| CreatableRenewers::default().with_principal_type(s(&r.kind)).with_principal_name(s(&r.name)))
            .collect(),
    );
    if let Some(o) = owner {
        if version < 3 {
            return Err(CliError::Usage(format!(
                "--owner needs CreateDelegationToken v3; the broker offers up to v{version}"
            )));
        }
        req.owner_principal_type = Some(s(&o.kind));
        req.owner_principal_name = Some(s(&o.name));
    }
    let ResponseKind::CreateDelegationToken(r) =
        client.call(ApiKey::CreateDelegationToken, version, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to CreateDelegationToken".into()));
    };
    if r.error_code != 0 {
        return Err(CliError::Kafka { code: r.error_code, message: String::new() });
    }
    let requester = if version >= 3 {
        format!("{}:{}", r.token_requester_principal_type, r.token_requester_principal_name)
    } else {
        String::new()
    };
    Ok(CreatedToken {
        token_id: r.token_id.to_string(),
        hmac: STANDARD.encode(&r.hmac),
        owner: format!("{}:{}", r.principal_type, r.principal_name),
        requester,
        renewers: renewers.iter().map(|p| p.to_string()).collect(),
        issue_timestamp_ms: r.issue_timestamp_ms,
        expiry_timestamp_ms: r.expiry_timestamp_ms,
        max_timestamp_ms: r.max_timestamp_ms,
    })
}

/// Sends RenewDelegationToken (`expire == false`) or ExpireDelegationToken; returns the
/// new expiry.
pub async fn change_token(client: &mut Client, hmac: &[u8], period_ms: i64, expire: bool) -> Result<i64, CliError> {
    let hmac = Bytes::copy_from_slice(hmac);
    let (code, expiry) = if expire {
        let req = ExpireDelegationTokenRequest::default().with_hmac(hmac).with_expiry_time_period_ms(period_ms);
        match client.request(ApiKey::ExpireDelegationToken, req.into()).await? {
            (_, ResponseKind::ExpireDelegationToken(r)) => (r.error_code, r.expiry_timestamp_ms),
            _ => return Err(CliError::Internal("unexpected answer to ExpireDelegationToken".into())),
        }
    } else {
        let req = RenewDelegationTokenRequest::default().with_hmac(hmac).with_renew_period_ms(period_ms);
        match client.request(ApiKey::RenewDelegationToken, req.into()).await? {
            (_, ResponseKind::RenewDelegationToken(r)) => (r.error_code, r.expiry_timestamp_ms),
            _ => return Err(CliError::Internal("unexpected answer to RenewDelegationToken".into())),
        }
    };
    if code != 0 {
        return Err(CliError::Kafka { code, message: String::new() });
    }
    Ok(expiry)
}

/// Sends DescribeDelegationToken; `owners` empty sends null (every visible token).
pub async fn describe_tokens(
    client: &mut Client,
    owners: &[Principal],
) -> Result<(i16, Vec<DescribedDelegationToken>), CliError> {
    let owners = (!owners.is_empty()).then(|| {
        owners
            .iter()
            .map(|o| {
                DescribeDelegationTokenOwner::default().with_principal_type(s(&o.kind)).with_principal_name(s(&o.name))
            })
            .collect()
    });
    let req = DescribeDelegationTokenRequest::default().with_owners(owners);
    let (version, ResponseKind::DescribeDelegationToken(r)) =
        client.request(ApiKey::DescribeDelegationToken, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to DescribeDelegationToken".into()));
    };
    if r.error_code != 0 {
        return Err(CliError::Kafka { code: r.error_code, message: String::new() });
    }
    Ok((version, r.tokens))
}

/// Runs a `ktb token` command.
pub async fn run(cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create(a) => {
            let owner = a.owner.as_deref().map(principal).transpose()?;
            let renewers = a.renewers.iter().map(|r| principal(r)).collect::<Result<Vec<_>, _>>()?;
            let st = settings(&a.common)?;
            let mut client = connect(&st, a.common.timeout).await?;
            let t = create_token(&mut client, owner.as_ref(), &renewers, a.max_lifetime).await?;
            let protocol = st.security_protocol.value.as_str();
            match a.common.output {
                Output::Json => print_json(&t.to_json(protocol, &a.mechanism, &client.address)),
                Output::Table => print_created(&t, protocol, &a.mechanism, &client.address),
            }
        }
        TokenCommand::Renew(a) | TokenCommand::Expire(a)
            if a.hmac.hmac.as_deref() == Some("-") && a.common.connection.sasl_password_stdin =>
        {
            return Err(CliError::Usage(
                "--hmac - and --sasl-password-stdin both want standard input; use --hmac-file".into(),
            ));
        }
        TokenCommand::Renew(a) => change(a, false).await?,
        TokenCommand::Expire(a) => change(a, true).await?,
        TokenCommand::Describe(a) => {
            let owners = a.owners.iter().map(|o| principal(o)).collect::<Result<Vec<_>, _>>()?;
            let st = settings(&a.common)?;
            let mut client = connect(&st, a.common.timeout).await?;
            let (version, tokens) = describe_tokens(&mut client, &owners).await?;
            print_described(&tokens, version, a.show_hmac, a.common.output);
        }
        TokenCommand::Revoke(a) => {
            let st = settings(&a.common)?;
            let mut client = connect(&st, a.common.timeout).await?;
            let (_, tokens) = describe_tokens(&mut client, &[]).await?;
            let Some(t) = tokens.iter().find(|t| t.token_id.as_str() == a.token_id) else {
                return Err(CliError::Kafka {
                    code: ktb_protocol::error_code::DELEGATION_TOKEN_NOT_FOUND,
                    message: format!("no token with id {} is visible to you", a.token_id),
                });
            };
            let at = change_token(&mut client, &t.hmac, -1, true).await?;
            match a.common.output {
                Output::Json => {
                    print_json(&json!({"token_id": a.token_id, "expired": true, "expiry_timestamp_ms": at}))
                }
                Output::Table => println!("token {} expired and deleted at {}", a.token_id, rfc3339(at)),
            }
        }
        TokenCommand::Refresh(a) => super::refresh::run(a).await?,
    }
    Ok(())
}

async fn change(a: ChangeArgs, expire: bool) -> Result<(), CliError> {
    let hmac = read_hmac(&a.hmac)?;
    let st = settings(&a.common)?;
    let mut client = connect(&st, a.common.timeout).await?;
    let expiry = change_token(&mut client, &hmac, a.period, expire).await?;
    let now = now_ms();
    match a.common.output {
        Output::Json => print_json(&json!({"expiry_timestamp_ms": expiry, "expiry_time": rfc3339(expiry)})),
        Output::Table if expire && a.period < 0 => println!("token expired and deleted"),
        Output::Table => {
            let verb = if expire { "will expire" } else { "renewed; expires" };
            println!("{verb} {} ({})", rfc3339(expiry), relative(expiry, now));
        }
    }
    Ok(())
}

fn print_created(t: &CreatedToken, protocol: &str, mechanism: &str, bootstrap: &str) {
    let now = now_ms();
    let renewers = if t.renewers.is_empty() { "-".to_owned() } else { t.renewers.join(", ") };
    println!("token id    {}", t.token_id);
    println!("hmac        {}", t.hmac);
    println!("owner       {}", t.owner);
    if !t.requester.is_empty() {
        println!("requester   {}", t.requester);
    }
    println!("renewers    {renewers}");
    println!("issued      {}", rfc3339(t.issue_timestamp_ms));
    println!(
        "expires     {} ({}; renew before then)",
        rfc3339(t.expiry_timestamp_ms),
        relative(t.expiry_timestamp_ms, now)
    );
    println!(
        "max         {} ({}; no renewal passes it)",
        rfc3339(t.max_timestamp_ms),
        relative(t.max_timestamp_ms, now)
    );
    let [java, librdkafka, kcat] = snippets(protocol, mechanism, bootstrap, &t.token_id, &t.hmac);
    println!("\n# Java (client.properties)\n{java}");
    println!("# librdkafka / kcat (needs ktb's implicit token login; Apache Kafka rejects it)\n{librdkafka}");
    println!("# {kcat}");
    println!("\nThe token id and HMAC are a password: anyone holding them is {} until the token expires.", t.owner);
}

fn print_described(tokens: &[DescribedDelegationToken], version: i16, show_hmac: bool, output: Output) {
    let principal = |t: &StrBytes, n: &StrBytes| format!("{t}:{n}");
    let renewers = |t: &DescribedDelegationToken| {
        t.renewers.iter().map(|r| principal(&r.principal_type, &r.principal_name)).collect::<Vec<_>>()
    };
    let requester = |t: &DescribedDelegationToken| {
        if version >= 3 {
            principal(&t.token_requester_principal_type, &t.token_requester_principal_name)
        } else {
            String::new()
        }
    };
    match output {
        Output::Json => {
            let list: Vec<_> = tokens
                .iter()
                .map(|t| {
                    let mut v = json!({
                        "token_id": t.token_id.as_str(), "owner": principal(&t.principal_type, &t.principal_name),
                        "requester": requester(t), "renewers": renewers(t),
                        "issue_timestamp_ms": t.issue_timestamp, "expiry_timestamp_ms": t.expiry_timestamp,
                        "max_timestamp_ms": t.max_timestamp, "issue_time": rfc3339(t.issue_timestamp),
                        "expiry_time": rfc3339(t.expiry_timestamp), "max_time": rfc3339(t.max_timestamp),
                    });
                    if show_hmac {
                        v["hmac"] = json!(STANDARD.encode(&t.hmac));
                    }
                    v
                })
                .collect();
            print_json(&json!({"tokens": list}));
        }
        Output::Table => {
            if tokens.is_empty() {
                println!("no tokens visible to you");
                return;
            }
            let mut header = format!(
                "{:<22}  {:<20}  {:<20}  {:<24}  {:<24}  RENEWERS",
                "TOKEN ID", "OWNER", "REQUESTER", "EXPIRES", "MAX"
            );
            if show_hmac {
                header.push_str("  HMAC");
            }
            println!("{header}");
            for t in tokens {
                let r = renewers(t);
                let mut line = format!(
                    "{:<22}  {:<20}  {:<20}  {:<24}  {:<24}  {}",
                    t.token_id.as_str(),
                    principal(&t.principal_type, &t.principal_name),
                    requester(t),
                    rfc3339(t.expiry_timestamp),
                    rfc3339(t.max_timestamp),
                    if r.is_empty() { "-".to_owned() } else { r.join(",") }
                );
                if show_hmac {
                    line.push_str("  ");
                    line.push_str(&STANDARD.encode(&t.hmac));
                }
                println!("{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_relative() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(relative(90_000_000 + 5_000, 5_000), "in 1d 1h");
        assert_eq!(relative(0, 180_000), "3m 0s ago");
    }
}
