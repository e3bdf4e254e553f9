//! `ktb kafka-delegation-tokens`: Apache Kafka's `kafka-delegation-tokens.sh` without a
//! JVM (SPEC §9.6, T-KDT-1..3).
//!
//! Scripts parse what Kafka's tool prints, so this module takes the same arguments,
//! checks them in the same order and prints the same bytes on the same streams, with
//! exit 1 on every failure. The parsing follows jopt-simple 5, the option library of
//! Kafka's tools: long options with one or two dashes, `--name=value`, no abbreviations,
//! optional arguments taken only when the next word does not look like an option (a
//! number does, for the numeric options). The tests compare the usage text and the
//! parse errors with the real library's.
//!
//! The differences, each deliberate: no Java stack trace after an error's first line;
//! `--describe` without `--owner-principal` lists the caller's tokens unless
//! `--kafka-compat` is given (T-KDT-2); `--version` prints ktb's version.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafka_protocol::messages::describe_delegation_token_response::DescribedDelegationToken;

use super::CliError;
use super::settings::{self, ConnectionFlags, Settings, Source};
use super::token_ops::{CreatedToken, change_token, create_token, describe_tokens};
use crate::auth::Principal;
use crate::client::{Client, ClientError, Credentials};
use crate::properties;

/// The names the `ktb` binary answers to as Kafka's tool (argv[0], T-KDT-1).
pub const PROGRAM_NAMES: [&str; 2] = ["kafka-delegation-tokens", "kafka-delegation-tokens.sh"];

/// The option table jopt-simple prints for the tool's options (`parser.printHelpOn`).
const USAGE: &str = include_str!("kdt_usage.txt");

/// The message above the table for no arguments or `--help`.
const ABOUT: &str = "This tool helps to create, renew, expire, or describe delegation tokens.";

/// The message above the table when not exactly one action is given.
const ONE_ACTION: &str = "Command must include exactly one action: --create, --renew, --expire or --describe";

/// What Java 17 says when a missing `Long` option value is unboxed.
const NULL_LONG: &str = "Cannot invoke \"java.lang.Long.longValue()\" because the return value of \
                         \"joptsimple.OptionSet.valueOf(joptsimple.OptionSpec)\" is null";

/// What Java 17 says when `--hmac` was given without a value and is decoded.
const NULL_HMAC: &str = "Cannot invoke \"String.getBytes(java.nio.charset.Charset)\" because \"src\" is null";

/// The tool's options, in declaration order; `KafkaCompat` is ktb's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Help,
    Version,
    BootstrapServer,
    CommandConfig,
    Create,
    Renew,
    Expire,
    Describe,
    OwnerPrincipal,
    RenewerPrincipal,
    MaxLifeTimePeriod,
    RenewTimePeriod,
    ExpiryTimePeriod,
    Hmac,
    KafkaCompat,
}

const OPTS: [Opt; 15] = [
    Opt::Help,
    Opt::Version,
    Opt::BootstrapServer,
    Opt::CommandConfig,
    Opt::Create,
    Opt::Renew,
    Opt::Expire,
    Opt::Describe,
    Opt::OwnerPrincipal,
    Opt::RenewerPrincipal,
    Opt::MaxLifeTimePeriod,
    Opt::RenewTimePeriod,
    Opt::ExpiryTimePeriod,
    Opt::Hmac,
    Opt::KafkaCompat,
];

/// Whether an option takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    /// `withRequiredArg`: the next word, whatever it is.
    Required,
    /// `withOptionalArg`: the next word if it converts and does not look like an option.
    Optional,
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Help => "help",
            Opt::Version => "version",
            Opt::BootstrapServer => "bootstrap-server",
            Opt::CommandConfig => "command-config",
            Opt::Create => "create",
            Opt::Renew => "renew",
            Opt::Expire => "expire",
            Opt::Describe => "describe",
            Opt::OwnerPrincipal => "owner-principal",
            Opt::RenewerPrincipal => "renewer-principal",
            Opt::MaxLifeTimePeriod => "max-life-time-period",
            Opt::RenewTimePeriod => "renew-time-period",
            Opt::ExpiryTimePeriod => "expiry-time-period",
            Opt::Hmac => "hmac",
            Opt::KafkaCompat => "kafka-compat",
        }
    }

    fn takes(self) -> Takes {
        match self {
            Opt::BootstrapServer | Opt::CommandConfig => Takes::Required,
            Opt::OwnerPrincipal
            | Opt::RenewerPrincipal
            | Opt::MaxLifeTimePeriod
            | Opt::RenewTimePeriod
            | Opt::ExpiryTimePeriod
            | Opt::Hmac => Takes::Optional,
            _ => Takes::Nothing,
        }
    }

    /// True for the `[Long]` options.
    fn numeric(self) -> bool {
        matches!(self, Opt::MaxLifeTimePeriod | Opt::RenewTimePeriod | Opt::ExpiryTimePeriod)
    }

    /// How jopt-simple names the option in messages (`OptionSpec.toString`).
    fn spec(self) -> String {
        format!("[{}]", self.name())
    }

    fn by_name(name: &str) -> Option<Opt> {
        OPTS.into_iter().find(|o| o.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Java's `Long.valueOf` for ASCII digits: an optional sign, then digits, in range.
fn java_long(s: &str) -> Option<i64> {
    s.parse::<i64>().ok()
}

/// Whether jopt-simple could convert `word` to the option's type. An empty word converts
/// (it holds no value to reject) and fails later, when the value is read.
fn converts(opt: Opt, word: &str) -> bool {
    !opt.numeric() || word.is_empty() || java_long(word).is_some()
}

/// `-x`, `--x` and `--`, but not `-`.
fn looks_like_option(word: &str) -> bool {
    word.len() > 1 && word.starts_with('-')
}

/// The parsed command line: which options were seen and the values given to each.
#[derive(Debug, Default)]
struct Parsed {
    no_args: bool,
    seen: [bool; OPTS.len()],
    values: [Vec<String>; OPTS.len()],
}

impl Parsed {
    fn has(&self, o: Opt) -> bool {
        self.seen[o.index()]
    }

    /// `OptionSet.valuesOf` for a text option.
    fn values(&self, o: Opt) -> &[String] {
        &self.values[o.index()]
    }

    /// `OptionSet.valueOf` for a text option: none, one, or an error for several.
    fn text(&self, o: Opt) -> Result<Option<&str>, String> {
        match self.values(o) {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(multiple(o)),
        }
    }

    /// `OptionSet.valueOf` for a `[Long]` option: every value converts first, then there
    /// must be at most one.
    fn long(&self, o: Opt) -> Result<Option<i64>, String> {
        let values = self
            .values(o)
            .iter()
            .map(|v| java_long(v).ok_or_else(|| format!("Cannot parse argument '{v}' of option {}", o.name())))
            .collect::<Result<Vec<i64>, String>>()?;
        match values[..] {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(multiple(o)),
        }
    }

    /// A `long` getter of the tool: a missing value is Java's unboxing failure.
    fn required_long(&self, o: Opt) -> Result<i64, String> {
        self.long(o)?.ok_or_else(|| NULL_LONG.to_owned())
    }
}

fn multiple(o: Opt) -> String {
    format!("Found multiple arguments for option {}, but you asked for only one", o.name())
}

/// Parses `args` as jopt-simple's `OptionParser(false)` does; the error is its message.
fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut p = Parsed { no_args: args.is_empty(), ..Parsed::default() };
    let mut i = 0;
    let mut options_ended = false;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if options_ended || !looks_like_option(word) {
            continue; // a non-option argument: the tool ignores them
        }
        if word == "--" {
            options_ended = true;
            continue;
        }
        let long = word.starts_with("--");
        let body = if long { &word[2..] } else { &word[1..] };
        let (name, attached) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(opt) = Opt::by_name(name) else {
            if long {
                return Err(format!("{name} is not a recognized option"));
            }
            // A short-option cluster: none of the tool's options is one letter.
            let first = body.chars().next().map(String::from).unwrap_or_default();
            return Err(format!("{first} is not a recognized option"));
        };
        p.seen[opt.index()] = true;
        let value = match (opt.takes(), attached) {
            (Takes::Nothing, _) => None,
            (_, Some(v)) => Some(v.to_owned()),
            (Takes::Required, None) => match args.get(i) {
                Some(next) => {
                    i += 1;
                    Some(next.clone())
                }
                None => return Err(format!("Option {} requires an argument", opt.name())),
            },
            (Takes::Optional, None) => match args.get(i) {
                Some(next)
                    if converts(opt, next) && (!looks_like_option(next) || opt.numeric() && !next.is_empty()) =>
                {
                    i += 1;
                    Some(next.clone())
                }
                _ => None,
            },
        };
        p.values[opt.index()].extend(value);
    }
    Ok(p)
}

/// How the tool stops before its request: what goes to stderr, then exit 1.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// `CommandLineUtils.printUsageAndExit`: the message, then the option table.
    Usage(String),
    /// An exception: its message, one line.
    Error(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Error(message)
    }
}

/// The action and what it was given, checked as `DelegationTokenCommand` checks them.
#[derive(Debug)]
struct Command {
    action: Opt,
    args: Parsed,
}

/// `--version`, or the checked command.
#[derive(Debug)]
enum Plan {
    Version,
    Run(Box<Command>),
}

/// Everything up to opening the Admin client: help, version, one action, the required
/// options and the forbidden pairs.
fn plan(args: &[String]) -> Result<Plan, Stop> {
    let p = parse(args).map_err(Stop::Error)?;
    if p.no_args || p.has(Opt::Help) {
        return Err(Stop::Usage(ABOUT.into()));
    }
    if p.has(Opt::Version) {
        return Ok(Plan::Version);
    }
    let actions: Vec<Opt> =
        [Opt::Create, Opt::Renew, Opt::Expire, Opt::Describe].into_iter().filter(|a| p.has(*a)).collect();
    let [action] = actions[..] else { return Err(Stop::Usage(ONE_ACTION.into())) };
    let required: &[Opt] = match action {
        Opt::Create => &[Opt::MaxLifeTimePeriod],
        Opt::Renew => &[Opt::Hmac, Opt::RenewTimePeriod],
        Opt::Expire => &[Opt::Hmac, Opt::ExpiryTimePeriod],
        _ => &[],
    };
    for o in [Opt::BootstrapServer, Opt::CommandConfig].iter().chain(required) {
        if !p.has(*o) {
            return Err(Stop::Usage(format!("Missing required argument \"{}\"", o.spec())));
        }
    }
    // Kafka walks each list as a HashSet of option specs, whose hash is their names', so
    // with two forbidden options it names the first in this order (3.6 to 3.9).
    let forbidden: &[Opt] = match action {
        Opt::Create => &[Opt::RenewTimePeriod, Opt::Hmac, Opt::ExpiryTimePeriod],
        Opt::Renew => &[Opt::MaxLifeTimePeriod, Opt::ExpiryTimePeriod, Opt::RenewerPrincipal, Opt::OwnerPrincipal],
        Opt::Expire => &[Opt::RenewTimePeriod, Opt::MaxLifeTimePeriod, Opt::Renew, Opt::OwnerPrincipal],
        _ => &[Opt::RenewTimePeriod, Opt::MaxLifeTimePeriod, Opt::Hmac, Opt::ExpiryTimePeriod],
    };
    if let Some(o) = forbidden.iter().find(|o| p.has(**o)) {
        return Err(Stop::Usage(format!("Option \"{}\" can't be used with option \"{}\"", action.spec(), o.spec())));
    }
    Ok(Plan::Run(Box::new(Command { action, args: p })))
}

/// `SecurityUtils.parseKafkaPrincipal` of each trimmed value of `o`.
fn principals(p: &Parsed, o: Opt) -> Result<Vec<Principal>, String> {
    p.values(o)
        .iter()
        .map(|v| {
            // Java's `String.trim` strips every character up to the space.
            let v = v.trim_matches(|c: char| c <= ' ');
            match v.split_once(':') {
                Some((kind, name)) if !v.is_empty() => Ok(Principal { kind: kind.into(), name: name.into() }),
                _ => Err(format!("expected a string in format principalType:principalName but got {v}")),
            }
        })
        .collect()
}

/// `List.toString` of principals: `[User:a, User:b]`.
fn list(ps: &[Principal]) -> String {
    format!("[{}]", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))
}

/// `java.util.Base64.getDecoder().decode(String)`, with its error messages.
fn java_base64(text: &str) -> Result<Vec<u8>, String> {
    // The string becomes ISO-8859-1 bytes; other characters become '?'.
    let src: Vec<u8> = text.encode_utf16().map(|u| u8::try_from(u).unwrap_or(b'?')).collect();
    if src.is_empty() {
        return Ok(Vec::new());
    }
    if src.len() < 2 {
        return Err("Input byte[] should at least have 2 bytes for base64 bytes".into());
    }
    let value = |b: u8| -> i32 {
        match b {
            b'A'..=b'Z' => i32::from(b - b'A'),
            b'a'..=b'z' => i32::from(b - b'a') + 26,
            b'0'..=b'9' => i32::from(b - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => -2,
            _ => -1,
        }
    };
    let (mut out, mut bits, mut shift, mut sp) = (Vec::with_capacity(src.len() / 4 * 3 + 3), 0u32, 18i32, 0);
    while sp < src.len() {
        let b = src[sp];
        sp += 1;
        match value(b) {
            -2 => {
                let second_pad = shift == 6 && src.get(sp) == Some(&b'=');
                if shift == 18 || shift == 6 && !second_pad {
                    return Err("Input byte array has wrong 4-byte ending unit".into());
                }
                if second_pad {
                    sp += 1;
                }
                break;
            }
            -1 => return Err(format!("Illegal base64 character {}", java_hex(b as i8))),
            v => {
                bits |= (v as u32) << shift;
                shift -= 6;
                if shift < 0 {
                    out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
                    (bits, shift) = (0, 18);
                }
            }
        }
    }
    match shift {
        6 => out.push((bits >> 16) as u8),
        0 => out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8]),
        12 => return Err("Last unit does not have enough valid bits".into()),
        _ => {}
    }
    if sp < src.len() {
        return Err(format!("Input byte array has incorrect ending byte at {sp}"));
    }
    Ok(out)
}

/// `Integer.toString(b, 16)` of a signed byte: `2d`, `-17`.
fn java_hex(b: i8) -> String {
    if b < 0 { format!("-{:x}", -i16::from(b)) } else { format!("{b:x}") }
}

/// `SimpleDateFormat("yyyy-MM-dd'T'HH:mm")` in the local time zone (TZ, else
/// /etc/localtime, as the JVM reads it).
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value; localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return super::token_ops::rfc3339(ms);
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

/// One token as the table shows it.
struct Row {
    token_id: String,
    hmac: String,
    owner: String,
    requester: String,
    renewers: String,
    issue: i64,
    expiry: i64,
    max: i64,
}

/// `printToken`: a blank line and the header, then a blank line before each row.
fn table(rows: &[Row]) -> String {
    let line = |c: [&str; 8]| {
        format!(
            "\n{:<15} {:<30} {:<15} {:<15} {:<25} {:<15} {:<15} {:<15}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let mut out = line(["TOKENID", "HMAC", "OWNER", "REQUESTER", "RENEWERS", "ISSUEDATE", "EXPIRYDATE", "MAXDATE"]);
    for r in rows {
        let (issue, expiry, max) = (java_date(r.issue), java_date(r.expiry), java_date(r.max));
        out.push_str(&line([&r.token_id, &r.hmac, &r.owner, &r.requester, &r.renewers, &issue, &expiry, &max]));
    }
    out
}

fn described_row(t: &DescribedDelegationToken) -> Row {
    let renewers: Vec<Principal> = t
        .renewers
        .iter()
        .map(|r| Principal { kind: r.principal_type.to_string(), name: r.principal_name.to_string() })
        .collect();
    Row {
        token_id: t.token_id.to_string(),
        hmac: STANDARD.encode(&t.hmac),
        owner: format!("{}:{}", t.principal_type, t.principal_name),
        requester: format!("{}:{}", t.token_requester_principal_type, t.token_requester_principal_name),
        renewers: list(&renewers),
        issue: t.issue_timestamp,
        expiry: t.expiry_timestamp,
        max: t.max_timestamp,
    }
}

/// The Admin client's timeouts, from the `--command-config` file.
struct Timeouts {
    /// `request.timeout.ms` (30 s): one answer.
    request: Duration,
    /// `default.api.timeout.ms` (60 s): the whole call, reconnects included.
    api: Duration,
}

/// The client settings of the `--command-config` file, with the Java client's defaults
/// (PLAINTEXT; GSSAPI, which ktb cannot speak). No `KTB_*` variable or profile applies.
fn admin_settings(path: &str, text: &str, bootstrap: &str) -> Result<(Settings, Timeouts), Stop> {
    let pairs = properties::parse(text).map_err(|e| Stop::Error(format!("{path}: {e}")))?;
    // The last value of a key, trimmed, as ConfigDef reads it.
    let value = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_owned());
    let ms = |key: &str, default: u64| -> Result<Duration, Stop> {
        match value(key) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                Stop::Error(format!("Invalid value {v} for configuration {key}: Not a number of type INT"))
            }),
        }
    };
    let request = ms("request.timeout.ms", 30_000)?;
    let api_set = value("default.api.timeout.ms").is_some();
    let api = ms("default.api.timeout.ms", 60_000)?;
    // What `Admin.create` checks: the numbers and the security protocol's name (outside its
    // wrapper), then the bootstrap addresses, the JAAS line and the timeouts (inside it).
    if let Some(p) = value("security.protocol")
        && !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&p.to_uppercase().as_str())
    {
        return Err(Stop::Error(format!(
            "Invalid value {p} for configuration security.protocol: String must be one of: PLAINTEXT, SSL, \
             SASL_PLAINTEXT, SASL_SSL"
        )));
    }
    let admin_failed =
        |cause: String| Stop::Error(format!("Failed to create new KafkaAdminClient\nCaused by: {cause}"));
    check_bootstrap(bootstrap)
        .map_err(|m| admin_failed(format!("org.apache.kafka.common.config.ConfigException: {m}")))?;
    let sasl = value("security.protocol").is_some_and(|p| p.to_uppercase().starts_with("SASL_"));
    if sasl && value("sasl.jaas.config").is_none() {
        return Err(admin_failed(
            "org.apache.kafka.common.KafkaException: java.lang.IllegalArgumentException: Could not find a \
             'KafkaClient' entry in the JAAS configuration. System property 'java.security.auth.login.config' is \
             not set"
                .into(),
        ));
    }
    // The Admin client refuses a call timeout shorter than one answer's when it is set, and
    // raises its default to the answer's when it is not.
    if api < request && api_set {
        return Err(admin_failed(
            "org.apache.kafka.common.config.ConfigException: The specified value of default.api.timeout.ms must be \
             no smaller than the value of request.timeout.ms."
                .into(),
        ));
    }
    let timeouts = Timeouts { request, api: api.max(request) };
    let flags = ConnectionFlags {
        bootstrap_server: Some(bootstrap.to_owned()),
        command_config: Some(path.into()),
        ..ConnectionFlags::default()
    };
    let mut s =
        settings::resolve_with(&flags, None, &|_| None, Some(text)).map_err(|e| Stop::Error(format!("error: {e}")))?;
    if s.security_protocol.source == Source::Default {
        s.security_protocol.value = "PLAINTEXT".into();
    }
    if s.security_protocol.value != "PLAINTEXT" && s.mechanism.source == Source::Default {
        return Err(Stop::Error(format!(
            "error: {path} sets security.protocol={} but no sasl.mechanism, so the Java client would use GSSAPI \
             (Kerberos), which ktb does not support; set sasl.mechanism=SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
            s.security_protocol.value
        )));
    }
    Ok((s, timeouts))
}

/// `ClientUtils.parseAndValidateAddresses`: each `host:port` well formed, one at least
/// resolving.
fn check_bootstrap(list: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let mut resolved = false;
    for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        // `Utils.HOST_PORT_PATTERN`: anything, then a host of [0-9a-zA-Z-%._:] (in
        // brackets or not), a colon and digits.
        let parsed =
            url.rsplit_once(':').filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        let Some((head, port)) = parsed else {
            return Err(format!("Invalid url in bootstrap.servers: {url}"));
        };
        let head = head.strip_suffix(']').unwrap_or(head);
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "-%._:".contains(c)))
            .map_or(0, |i| i + head[i..].chars().next().map_or(1, char::len_utf8));
        let host = &head[start..];
        let port: u16 = port.parse().map_err(|_| format!("Invalid port in bootstrap.servers: {url}"))?;
        resolved |= (host, port).to_socket_addrs().is_ok_and(|mut a| a.next().is_some());
    }
    if resolved { Ok(()) } else { Err("No resolvable bootstrap urls given in bootstrap.servers".into()) }
}

/// The first line Kafka's tool prints for a failed call: the client exception's
/// `toString`, as `ExecutionException` carries it.
fn exception(class: &str, message: &str) -> String {
    format!("org.apache.kafka.common.errors.{class}: {message}")
}

/// The Java client's exception for a Kafka error code in an answer.
fn kafka_exception(code: i16) -> String {
    let (class, message) = java_error(code);
    exception(class, message)
}

/// The exception class the Java client raises for an error code, and its default message
/// (`Errors`).
fn java_error(code: i16) -> (&'static str, &'static str) {
    match code {
        7 => ("TimeoutException", "The request timed out."),
        31 => ("ClusterAuthorizationException", "Cluster authorization failed."),
        35 => ("UnsupportedVersionException", "The version of API is not supported."),
        42 => (
            "InvalidRequestException",
            "This most likely occurs because of a request being malformed by the client library or the message was \
             sent to an incompatible broker. See the broker logs for more details.",
        ),
        58 => ("SaslAuthenticationException", "SASL Authentication failed."),
        61 => ("DelegationTokenDisabledException", "Delegation Token feature is not enabled."),
        62 => ("DelegationTokenNotFoundException", "Delegation Token is not found on server."),
        63 => ("DelegationTokenOwnerMismatchException", "Specified Principal is not valid Owner/Renewer."),
        64 => (
            "UnsupportedByAuthenticationException",
            "Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token \
             authenticated channels.",
        ),
        65 => ("DelegationTokenAuthorizationException", "Delegation Token authorization failed."),
        66 => ("DelegationTokenExpiredException", "Delegation Token is expired."),
        67 => ("InvalidPrincipalTypeException", "Supplied principalType is not supported."),
        _ => ("UnknownServerException", "The server experienced an unexpected error when processing the request."),
    }
}

/// The first line for a failed call, from the error of a request.
fn call_error(e: CliError) -> String {
    match e {
        CliError::Kafka { code, .. } => kafka_exception(code),
        CliError::Usage(m) | CliError::Internal(m) => exception("UnsupportedVersionException", &m),
        CliError::Connection(m) | CliError::Timeout(m) => exception("NetworkException", &m),
        CliError::Auth { message, .. } => exception("SaslAuthenticationException", &message),
    }
}

/// The Java client's exception for a failed SaslAuthenticate: the error code's class, the
/// server's message or the code's default one.
fn sasl_exception(code: i16, message: &str) -> String {
    let (class, default) = java_error(code);
    exception(class, if message.is_empty() { default } else { message })
}

/// One request of the tool.
enum Request<'a> {
    Create { owner: Option<&'a Principal>, renewers: &'a [Principal], max_life_ms: i64 },
    Change { hmac: &'a [u8], period_ms: i64, expire: bool },
    Describe { owners: Option<&'a [Principal]> },
}

impl Request<'_> {
    /// The Admin client's name for the call (`new Call("createDelegationToken", …)`).
    fn call_name(&self) -> &'static str {
        match self {
            Request::Create { .. } => "createDelegationToken",
            Request::Change { expire: false, .. } => "renewDelegationToken",
            Request::Change { expire: true, .. } => "expireDelegationToken",
            Request::Describe { .. } => "describeDelegationToken",
        }
    }
}

/// What a request answered.
enum Reply {
    Created(CreatedToken),
    Expiry(i64),
    Tokens(Vec<DescribedDelegationToken>),
}

async fn send(client: &mut Client, r: &Request<'_>) -> Result<Reply, CliError> {
    Ok(match *r {
        Request::Create { owner, renewers, max_life_ms } => {
            Reply::Created(create_token(client, owner, renewers, max_life_ms).await?)
        }
        Request::Change { hmac, period_ms, expire } => {
            Reply::Expiry(change_token(client, hmac, period_ms, expire).await?)
        }
        Request::Describe { owners } => Reply::Tokens(describe_tokens(client, owners).await?.1),
    })
}

/// Why a connection attempt failed.
enum Refused {
    /// No connection: try again until the call's deadline.
    Unreachable,
    /// A failure the Admin client does not retry: its line.
    Final(String),
}

/// One connection and login, as the Admin client makes them.
async fn open(s: &Settings, t: &Timeouts, left: Duration) -> Result<Client, Refused> {
    let tls = match s.security_protocol.value.as_str() {
        "SASL_SSL" => Some(
            crate::tls::client_config(s.truststore.as_ref().map(|t| t.value.as_slice()))
                .map_err(|e| Refused::Final(format!("error: {e}")))?,
        ),
        _ => None,
    };
    let timeout = t.request.min(left).max(Duration::from_millis(1));
    let mut client = match Client::connect(&s.bootstrap.value, timeout, tls).await {
        Ok(c) => c,
        Err(ClientError::Tls(_)) => {
            return Err(Refused::Final(exception("SslAuthenticationException", "SSL handshake failed")));
        }
        Err(_) => return Err(Refused::Unreachable),
    };
    if s.security_protocol.value == "PLAINTEXT" {
        return Ok(client);
    }
    let (Some(user), Some(password)) = (&s.username, &s.password) else {
        return Err(Refused::Final("error: the sasl.jaas.config line names no username and password".into()));
    };
    let creds = Credentials {
        mechanism: s.mechanism.value.clone(),
        username: user.value.clone(),
        password: password.value.clone(),
        token_auth: s.token_auth.value,
    };
    match client.authenticate(&creds).await {
        Ok(()) => Ok(client),
        // The Java client's own words (SaslClientAuthenticator.handleSaslHandshakeResponse).
        Err(ClientError::Mechanism { code, requested, offered }) => {
            let offered = offered.join(", ");
            Err(Refused::Final(match code {
                33 => exception(
                    "UnsupportedSaslMechanismException",
                    &format!(
                        "Client SASL mechanism '{requested}' not enabled in the server, enabled mechanisms are [{offered}]"
                    ),
                ),
                34 => exception(
                    "IllegalSaslStateException",
                    &format!(
                        "Unexpected handshake request with client mechanism {requested}, enabled mechanisms are [{offered}]"
                    ),
                ),
                _ => exception(
                    "IllegalSaslStateException",
                    &format!(
                        "Unknown error code {}, client mechanism is {requested}, enabled mechanisms are [{offered}]",
                        ktb_protocol::error_code::name(code)
                    ),
                ),
            }))
        }
        Err(ClientError::Auth { code, message }) => Err(Refused::Final(sasl_exception(code, &message))),
        Err(ClientError::Protocol(message)) => Err(Refused::Final(exception("SaslAuthenticationException", &message))),
        Err(_) => Err(Refused::Unreachable),
    }
}

/// Makes one call as the Admin client does: connections that fail or drop and answers
/// that do not come are retried (with backoff) until `default.api.timeout.ms`; then the
/// call fails with the client's TimeoutException.
async fn call(s: &Settings, t: &Timeouts, request: &Request<'_>) -> Result<Reply, String> {
    let name = request.call_name();
    let now_ms = super::token_ops::now_ms;
    let deadline = Instant::now() + t.api;
    let deadline_ms = now_ms() + t.api.as_millis() as i64;
    let (mut tries, mut backoff) = (0u32, Duration::from_millis(50));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match open(s, t, left).await {
            Err(Refused::Final(line)) => return Err(line),
            Err(Refused::Unreachable) => {}
            Ok(mut client) => {
                tries += 1;
                match send(&mut client, request).await {
                    Ok(reply) => return Ok(reply),
                    Err(CliError::Connection(_) | CliError::Timeout(_)) => {}
                    Err(e) => return Err(call_error(e)),
                }
            }
        }
        if Instant::now() >= deadline {
            let now = now_ms();
            return Err(if tries == 0 {
                exception("TimeoutException", &format!("Timed out waiting for a node assignment. Call: {name}"))
            } else {
                // Call.toString and handleTimeoutFailure; the next try is retry.backoff.ms away.
                exception(
                    "TimeoutException",
                    &format!(
                        "Call(callName={name}, deadlineMs={deadline_ms}, tries={tries}, nextAllowedTryMs={}) timed \
                         out at {now} after {tries} attempt(s)",
                        now + 100
                    ),
                )
            });
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Where the tool's output goes.
struct Streams<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl Streams<'_> {
    fn out(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// Runs the tool on `args` (without the program name); returns the exit code.
pub fn run(args: &[String]) -> u8 {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut io = Streams { out: &mut out, err: &mut err };
    match execute(args, &mut io) {
        Ok(()) => 0,
        Err(stop) => {
            let text = match stop {
                Stop::Usage(message) => format!("{message}\n{USAGE}"),
                Stop::Error(message) => format!("{message}\n"),
            };
            let _ = io.err.write_all(text.as_bytes());
            let _ = io.err.flush();
            1
        }
    }
}

fn execute(args: &[String], io: &mut Streams<'_>) -> Result<(), Stop> {
    let cmd = match plan(args)? {
        Plan::Version => {
            io.out(concat!(env!("CARGO_PKG_VERSION"), "\n"));
            return Ok(());
        }
        Plan::Run(cmd) => cmd,
    };
    let p = &cmd.args;
    // `createAdminClient`: the file is read before --bootstrap-server's value.
    let config = p.text(Opt::CommandConfig)?.unwrap_or_default();
    let text = settings::read_properties_file(Path::new(config)).map_err(|e| match e.kind() {
        // `Files.newInputStream` throws NoSuchFileException/AccessDeniedException, whose
        // message is the path.
        std::io::ErrorKind::NotFound if config.is_empty() => Stop::Error("Is a directory".into()),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => Stop::Error(config.to_owned()),
        // Reading a directory fails with the system's words.
        std::io::ErrorKind::IsADirectory => Stop::Error("Is a directory".into()),
        _ => Stop::Error(format!("{config}: {e}")),
    })?;
    let bootstrap = p.text(Opt::BootstrapServer)?.unwrap_or_default();
    let (settings, timeouts) = admin_settings(config, &text, bootstrap)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Stop::Error(format!("error: cannot start: {e}")))?;
    runtime.block_on(act(&cmd, &settings, &timeouts, io)).map_err(Stop::Error)
}

/// The action, in the order Kafka's tool reads its values and prints its lines.
async fn act(cmd: &Command, s: &Settings, t: &Timeouts, io: &mut Streams<'_>) -> Result<(), String> {
    let p = &cmd.args;
    match cmd.action {
        Opt::Create => {
            let renewers = principals(p, Opt::RenewerPrincipal)?;
            let max_life = p.required_long(Opt::MaxLifeTimePeriod)?;
            io.out(&format!(
                "Calling create token operation with renewers :{} , max-life-time-period :{max_life}\n",
                list(&renewers)
            ));
            let owners = principals(p, Opt::OwnerPrincipal)?;
            let request = Request::Create { owner: owners.first(), renewers: &renewers, max_life_ms: max_life };
            let Reply::Created(token) = call(s, t, &request).await? else { unreachable!("Create answers a token") };
            let row = Row {
                renewers: list(&renewers),
                // Before CreateDelegationToken v3 the answer names no requester.
                requester: if token.requester.is_empty() { ":".into() } else { token.requester.clone() },
                token_id: token.token_id.clone(),
                hmac: token.hmac.clone(),
                owner: token.owner.clone(),
                issue: token.issue_timestamp_ms,
                expiry: token.expiry_timestamp_ms,
                max: token.max_timestamp_ms,
            };
            io.out(&format!("Created delegation token with tokenId : {}\n{}", token.token_id, table(&[row])));
        }
        Opt::Renew | Opt::Expire => {
            let expire = cmd.action == Opt::Expire;
            let (period_opt, verb, period_name) = if expire {
                (Opt::ExpiryTimePeriod, "expire", "expire-time-period")
            } else {
                (Opt::RenewTimePeriod, "renew", "renew-time-period")
            };
            let hmac = p.text(Opt::Hmac)?;
            let period = p.required_long(period_opt)?;
            io.out(&format!(
                "Calling {verb} token operation with hmac :{} , {period_name} :{period}\n",
                hmac.unwrap_or("null")
            ));
            let hmac = java_base64(hmac.ok_or(NULL_HMAC)?)?;
            let request = Request::Change { hmac: &hmac, period_ms: period, expire };
            let Reply::Expiry(expiry) = call(s, t, &request).await? else {
                unreachable!("Renew and Expire answer a time")
            };
            io.out(&format!("Completed {verb} operation. New expiry date : {}", java_date(expiry)));
        }
        _ => {
            let owners = principals(p, Opt::OwnerPrincipal)?;
            if owners.is_empty() {
                io.out("Calling describe token operation for current user.\n");
            } else {
                io.out(&format!("Calling describe token operation for owners: {}\n", list(&owners)));
            }
            // T-KDT-2: Kafka's tool sends an empty owner list (no token matches); ktb asks
            // with none, for every token the caller may see.
            let ask = if owners.is_empty() && !p.has(Opt::KafkaCompat) { None } else { Some(&owners[..]) };
            let Reply::Tokens(tokens) = call(s, t, &Request::Describe { owners: ask }).await? else {
                unreachable!("Describe answers tokens")
            };
            let rows: Vec<Row> = tokens.iter().map(described_row).collect();
            io.out(&format!("Total number of tokens : {}{}", rows.len(), table(&rows)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn usage(words: &[&str]) -> String {
        match plan(&args(words)) {
            Err(Stop::Usage(m)) => m,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    const BASE: [&str; 4] = ["--bootstrap-server", "b:9092", "--command-config", "c.properties"];

    /// T-KDT-1: the checks of `execute` and `checkArgs`, in their order.
    #[test]
    fn t_kdt_1_usage_checks_in_kafkas_order() {
        assert_eq!(usage(&[]), ABOUT);
        assert_eq!(usage(&["--create", "--help"]), ABOUT);
        assert_eq!(usage(&["--create", "--renew"]), ONE_ACTION);
        assert_eq!(usage(&["--bootstrap-server", "x"]), ONE_ACTION);
        assert_eq!(usage(&["--create"]), "Missing required argument \"[bootstrap-server]\"");
        assert_eq!(usage(&["--create", "--bootstrap-server", "x"]), "Missing required argument \"[command-config]\"");
        let with = |more: &[&str]| usage(&[&BASE[..], more].concat());
        assert_eq!(with(&["--create"]), "Missing required argument \"[max-life-time-period]\"");
        assert_eq!(with(&["--renew"]), "Missing required argument \"[hmac]\"");
        assert_eq!(with(&["--renew", "--hmac", "h"]), "Missing required argument \"[renew-time-period]\"");
        assert_eq!(with(&["--expire", "--hmac", "h"]), "Missing required argument \"[expiry-time-period]\"");
        assert_eq!(
            with(&["--create", "--max-life-time-period", "-1", "--hmac", "x"]),
            "Option \"[create]\" can't be used with option \"[hmac]\""
        );
        assert_eq!(
            with(&["--renew", "--hmac", "h", "--renew-time-period", "-1", "--owner-principal", "User:a"]),
            "Option \"[renew]\" can't be used with option \"[owner-principal]\""
        );
        // Two forbidden options: the first in the order of Kafka's HashSet.
        assert_eq!(
            with(&["--create", "--max-life-time-period", "-1", "--hmac", "x", "--renew-time-period", "1"]),
            "Option \"[create]\" can't be used with option \"[renew-time-period]\""
        );
        assert_eq!(
            with(&["--describe", "--max-life-time-period", "5"]),
            "Option \"[describe]\" can't be used with option \"[max-life-time-period]\""
        );
        assert!(matches!(plan(&args(&["--version", "--create"])), Ok(Plan::Version)));
        assert!(matches!(plan(&args(&[&BASE[..], &["--describe"]].concat())), Ok(Plan::Run(_))));
    }

    /// T-KDT-1: jopt-simple's reading of words (checked against the library in tests/kdt.rs).
    #[test]
    fn t_kdt_1_words_read_as_jopt_simple_reads_them() {
        let p = parse(&args(&["-bootstrap-server=b", "--max-life-time-period", "-5", "--hmac", "--create"])).unwrap();
        assert_eq!(p.text(Opt::BootstrapServer), Ok(Some("b")));
        assert_eq!(p.long(Opt::MaxLifeTimePeriod), Ok(Some(-5)));
        assert!(p.has(Opt::Hmac) && p.text(Opt::Hmac) == Ok(None) && p.has(Opt::Create));
        let p = parse(&args(&["--max-life-time-period", "abc", "--hmac", "-"])).unwrap();
        assert_eq!(p.long(Opt::MaxLifeTimePeriod), Ok(None), "abc is left as a non-option word");
        assert_eq!(p.text(Opt::Hmac), Ok(Some("-")));
        let p = parse(&args(&["--max-life-time-period=abc", "--renew-time-period", "1", "--renew-time-period", "2"]))
            .unwrap();
        assert_eq!(
            p.long(Opt::MaxLifeTimePeriod),
            Err("Cannot parse argument 'abc' of option max-life-time-period".into())
        );
        assert_eq!(p.required_long(Opt::RenewTimePeriod), Err(multiple(Opt::RenewTimePeriod)));
        assert_eq!(parse(&args(&["--boot", "x"])).unwrap_err(), "boot is not a recognized option");
        assert_eq!(parse(&args(&["-xyz"])).unwrap_err(), "x is not a recognized option");
        assert_eq!(parse(&args(&["--command-config"])).unwrap_err(), "Option command-config requires an argument");
        let p = parse(&args(&["--", "--create"])).unwrap();
        assert!(!p.has(Opt::Create));
    }

    /// T-KDT-1: principals as `SecurityUtils.parseKafkaPrincipal` reads them.
    #[test]
    fn t_kdt_1_principals() {
        let p = parse(&args(&["--renewer-principal", " User:a ", "--renewer-principal=Group:b:c"])).unwrap();
        let ps = principals(&p, Opt::RenewerPrincipal).unwrap();
        assert_eq!(list(&ps), "[User:a, Group:b:c]");
        let p = parse(&args(&["--owner-principal", "alice"])).unwrap();
        assert_eq!(
            principals(&p, Opt::OwnerPrincipal).unwrap_err(),
            "expected a string in format principalType:principalName but got alice"
        );
        assert_eq!(list(&[]), "[]");
    }

    /// T-KDT-1: `Base64.getDecoder().decode` and its messages (Java 17).
    #[test]
    fn t_kdt_1_base64_as_java_decodes() {
        assert_eq!(java_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(java_base64("Zm8").unwrap(), b"fo", "padding is optional");
        assert_eq!(java_base64("Zg==").unwrap(), b"f");
        assert_eq!(java_base64("").unwrap(), b"");
        let cases = [
            ("abc!", "Illegal base64 character 21"),
            ("a", "Input byte[] should at least have 2 bytes for base64 bytes"),
            ("ab=", "Input byte array has wrong 4-byte ending unit"),
            ("ab=c", "Input byte array has wrong 4-byte ending unit"),
            ("abcd=", "Input byte array has wrong 4-byte ending unit"),
            ("abcde", "Last unit does not have enough valid bits"),
            ("a===", "Last unit does not have enough valid bits"),
            ("ab==cd", "Input byte array has incorrect ending byte at 4"),
            ("abc=d", "Input byte array has incorrect ending byte at 4"),
            ("ab\u{e9}d", "Illegal base64 character -17"),
            ("ab-_", "Illegal base64 character 2d"),
        ];
        for (text, message) in cases {
            assert_eq!(java_base64(text).unwrap_err(), message, "{text:?}");
        }
    }

    /// T-KDT-1: the table's layout: fixed minimum widths, longer values push on.
    #[test]
    fn t_kdt_1_table_layout() {
        let row = Row {
            token_id: "id".into(),
            hmac: "h".repeat(44),
            owner: "User:alice".into(),
            requester: "User:admin".into(),
            renewers: "[]".into(),
            issue: 0,
            expiry: 0,
            max: 0,
        };
        let text = table(&[row]);
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("TOKENID         HMAC                           OWNER           REQUESTER"));
        assert!(lines[1].ends_with("MAXDATE        "));
        assert_eq!(lines[2], "");
        assert!(
            lines[3].starts_with(&format!("id              {} User:alice      User:admin      []", "h".repeat(44)))
        );
        assert_eq!(lines.len(), 5, "ends with one newline");
    }
}
