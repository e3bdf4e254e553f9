//! `ktb token create|renew|expire|describe|revoke` (SPEC §6.8).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafka_protocol::messages::describe_delegation_token_response::DescribedDelegationToken;
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::token_ops::{
    CreatedToken, change_token, create_token, describe_tokens, now_ms, relative, rfc3339, snippets,
};
use super::{CliError, CommonFlags, Output, connect, parse_duration, print_json, read_stdin_line, settings};
use crate::auth::Principal;

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
            let (version, tokens) = describe_tokens(&mut client, (!owners.is_empty()).then_some(&owners[..])).await?;
            print_described(&tokens, version, a.show_hmac, a.common.output);
        }
        TokenCommand::Revoke(a) => {
            let st = settings(&a.common)?;
            let mut client = connect(&st, a.common.timeout).await?;
            let (_, tokens) = describe_tokens(&mut client, None).await?;
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
