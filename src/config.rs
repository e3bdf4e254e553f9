//! The broker's one typed configuration (SPEC §6.1).
//!
//! Every property is declared once in [`PROPERTIES`]. Values are resolved by precedence,
//! `--override` flag > `KTB_*` environment variable > config file > default, into one map
//! that remembers where each value came from, and then parsed into [`Config`]. The same
//! map backs `ktb serve --print-config`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::auth::Principal;
use crate::properties;

/// Where a configuration value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The `--config` file.
    File,
    /// A `KTB_*` environment variable.
    Env,
    /// A `--override KEY=VALUE` flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// One declared property.
struct PropDef {
    name: &'static str,
    /// `None` means "unset" (a state of its own for the secret properties).
    default: Option<&'static str>,
    secret: bool,
}

const fn prop(name: &'static str, default: Option<&'static str>) -> PropDef {
    PropDef { name, default, secret: false }
}

const fn secret(name: &'static str) -> PropDef {
    PropDef { name, default: None, secret: true }
}

/// Every property the broker reads, with its default.
const PROPERTIES: &[PropDef] = &[
    prop("listeners", Some("SASL_PLAINTEXT://127.0.0.1:9092")),
    prop("advertised.listeners", None),
    prop("listener.security.protocol.map", None),
    prop("node.id", Some("1")),
    prop("sasl.enabled.mechanisms", Some("SCRAM-SHA-256,SCRAM-SHA-512")),
    prop("super.users", None),
    secret("delegation.token.secret.key"),
    secret("delegation.token.master.key"),
    prop("delegation.token.secret.keyring.file", Some("")),
    prop("delegation.token.max.lifetime.ms", Some("604800000")),
    prop("delegation.token.expiry.time.ms", Some("86400000")),
    prop("delegation.token.expiry.check.interval.ms", Some("3600000")),
    prop("delegation.token.hmac.algorithm", Some("HmacSHA1")),
    prop("connections.max.reauth.ms", Some("0")),
    prop("connection.failed.authentication.delay.ms", Some("100")),
    prop("connections.max.idle.ms", Some("600000")),
    prop("socket.request.max.bytes", Some("1048576")),
    prop("sasl.server.max.receive.size", Some("524288")),
    prop("max.connections", Some("2147483647")),
    prop("max.connections.per.ip", Some("2147483647")),
    prop("max.connections.per.ip.overrides", Some("")),
    prop("ssl.keystore.type", None),
    prop("ssl.keystore.location", None),
    prop("ssl.keystore.certificate.chain", None),
    secret("ssl.keystore.key"),
    secret("ssl.key.password"),
    prop("ktb.data.dir", Some("./ktb-data")),
    prop("ktb.store", Some("sled")),
    prop("ktb.etcd.endpoints", None),
    prop("ktb.etcd.prefix", Some("/ktb/")),
    prop("ktb.etcd.username", None),
    secret("ktb.etcd.password"),
    prop("ktb.etcd.ca.file", None),
    prop("ktb.etcd.cert.file", None),
    prop("ktb.etcd.key.file", None),
    prop("ktb.etcd.request.timeout.ms", Some("5000")),
    prop("ktb.etcd.lease.ms", Some("10000")),
    prop("ktb.etcd.stale.ms", Some("10000")),
    prop("ktb.metrics.listener", Some("")),
    prop("ktb.audit.log.file", Some("")),
    prop("ktb.bootstrap.user", Some("admin")),
    prop("ktb.sasl.scram.implicit.token.login", Some("true")),
    prop("ktb.token.superuser.manage", Some("false")),
    prop("ktb.shutdown.grace.ms", Some("5000")),
    prop("ktb.write.timeout.ms", Some("30000")),
    prop("ktb.token.max.renewers", Some("64")),
    prop("ktb.token.max.per.owner", Some("10000")),
    prop("ktb.user.max.alterations.per.request", Some("100")),
];

/// The environment variable that overrides `name` (T-CFG-2).
pub fn env_name(name: &str) -> String {
    let bare = name.strip_prefix("ktb.").unwrap_or(name);
    format!("KTB_{}", bare.replace(['.', '-'], "_").to_ascii_uppercase())
}

/// A configuration problem: the broker does not start and exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(name: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError(format!("invalid value {value:?} for property {name}: {allowed}"))
}

/// The resolved values before typing, with their sources.
#[derive(Debug, Clone)]
pub struct Resolved {
    values: BTreeMap<&'static str, (String, Source)>,
    /// Unknown non-`ktb.` properties that were ignored (T-CFG-1), for the log.
    pub warnings: Vec<String>,
}

impl Resolved {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    /// Every property, its effective value (secrets hidden) and its source (T-CFG-3).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for def in PROPERTIES {
            let (value, source) = match self.values.get(def.name) {
                Some((v, s)) if def.secret => ("[hidden]".to_owned(), s.to_string()),
                Some((v, s)) => (v.clone(), s.to_string()),
                None => ("(unset)".to_owned(), "default".to_owned()),
            };
            out.push_str(&format!("{}={}    # {}\n", def.name, value, source));
        }
        out
    }
}

/// Resolves properties from a file, the environment and `--override` flags.
///
/// `env` is passed in (rather than read here) so tests do not touch the process
/// environment.
pub fn resolve(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<Resolved, ConfigError> {
    let mut values = BTreeMap::new();
    for def in PROPERTIES {
        if let Some(d) = def.default {
            values.insert(def.name, (d.to_owned(), Source::Default));
        }
    }
    let mut warnings = Vec::new();
    let mut apply = |key: &str, value: String, source: Source, warnings: &mut Vec<String>| match PROPERTIES
        .iter()
        .find(|d| d.name == key)
    {
        Some(def) => {
            values.insert(def.name, (value, source));
            Ok(())
        }
        None if key.starts_with("ktb.") => Err(ConfigError(format!(
            "unknown property {key} ({source}): ktb.* properties must be ones ktb knows; see README"
        ))),
        None => {
            warnings.push(format!("ignoring unknown property {key} ({source})"));
            Ok(())
        }
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let pairs = properties::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        for (k, v) in pairs {
            apply(&k, v, Source::File, &mut warnings)?;
        }
    }
    let env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("KTB_")).collect();
    for def in PROPERTIES {
        if let Some(v) = env.get(&env_name(def.name)) {
            apply(def.name, v.clone(), Source::Env, &mut warnings)?;
        }
    }
    for (k, v) in overrides {
        apply(k, v.clone(), Source::Flag, &mut warnings)?;
    }
    Ok(Resolved { values, warnings })
}

/// A listener's security protocol (D-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No authentication; the principal is `User:ANONYMOUS`.
    Plaintext,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's name for the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// A `host:port` pair; an empty host means every interface (for binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port; 0 binds an ephemeral port.
    pub port: u16,
}

impl HostPort {
    /// The host to bind: an empty host means every IPv4 interface.
    pub fn bind_host(&self) -> &str {
        if self.host.is_empty() { "0.0.0.0" } else { &self.host }
    }
}

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener name (`PLAINTEXT`, or a name mapped by `listener.security.protocol.map`).
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// Where to bind.
    pub bind: HostPort,
    /// What Metadata and DescribeCluster return; `None` means derive it from the bound
    /// address (the listener host, or this machine's host name when that is blank).
    pub advertised: Option<HostPort>,
}

/// A SASL mechanism ktb can enable (T-SASL-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
    /// PLAIN, for users only.
    Plain,
}

impl Mechanism {
    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::Plain => "PLAIN",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::ScramSha256, Self::ScramSha512, Self::Plain].into_iter().find(|m| m.name() == s)
    }
}

/// The HMAC a token's authenticator is computed with (T-HMAC-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmacAlgorithm {
    /// HmacSHA1, as KIP-48 specifies (the default).
    Sha1,
    /// HmacSHA256.
    Sha256,
    /// HmacSHA512, what Apache Kafka brokers use.
    Sha512,
}

/// The master secret setting (T-ENABLE-1, T-ENABLE-2).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSetting {
    /// Neither property is set: use the generated secret in the data dir.
    Generated,
    /// Set to the empty string: delegation tokens are disabled.
    Disabled,
    /// Set to this string.
    Configured(String),
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Generated => "Generated",
            Self::Disabled => "Disabled",
            Self::Configured(_) => "Configured([hidden])",
        })
    }
}

/// Which store keeps tokens and users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded sled store in `<data.dir>/store`.
    Sled,
    /// A shared etcd cluster.
    Etcd(EtcdSettings),
}

/// How to reach the etcd cluster (T-CLUSTER-1).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `ktb.etcd.endpoints`: `http(s)://host:port`, at least one.
    pub endpoints: Vec<String>,
    /// `ktb.etcd.prefix`, always ending in `/`.
    pub prefix: String,
    /// `ktb.etcd.username`.
    pub username: Option<String>,
    /// `ktb.etcd.password` (never printed).
    pub password: Option<String>,
    /// `ktb.etcd.ca.file`: PEM roots for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// `ktb.etcd.cert.file`: a PEM client certificate.
    pub cert_file: Option<PathBuf>,
    /// `ktb.etcd.key.file`: its PEM key.
    pub key_file: Option<PathBuf>,
    /// `ktb.etcd.lease.ms`: the registration lease (T-CLUSTER-4).
    pub lease_ms: i64,
    /// `ktb.etcd.stale.ms`: how long confirmed state serves logins without etcd (T-CLUSTER-7).
    pub stale_ms: i64,
}

impl fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[hidden]"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("lease_ms", &self.lease_ms)
            .field("stale_ms", &self.stale_ms)
            .finish()
    }
}

/// Where a SASL_SSL listener's certificate and key come from (PEM only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeystoreSettings {
    /// `ssl.keystore.location`: a PEM file holding the certificate chain and the key.
    pub location: Option<String>,
    /// `ssl.keystore.certificate.chain`: the certificate chain as PEM text.
    pub certificate_chain: Option<String>,
    /// `ssl.keystore.key`: the private key as PEM text (never printed).
    pub key: Option<String>,
}

impl fmt::Debug for KeystoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoreSettings")
            .field("location", &self.location)
            .field("certificate_chain", &self.certificate_chain.as_ref().map(|_| "[pem]"))
            .field("key", &self.key.as_ref().map(|_| "[hidden]"))
            .finish()
    }
}

/// The typed broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The certificate and key of SASL_SSL listeners.
    pub keystore: KeystoreSettings,
    /// The listeners, in configuration order.
    pub listeners: Vec<ListenerConfig>,
    /// This node's id, returned as broker id and controller id.
    pub node_id: i32,
    /// Enabled SASL mechanisms in configuration order, duplicates removed.
    pub sasl_mechanisms: Vec<Mechanism>,
    /// Principals that pass every authorization check.
    pub super_users: Vec<Principal>,
    /// The delegation-token master secret.
    pub token_secret: SecretSetting,
    /// `delegation.token.secret.keyring.file` (T-ROTATE-3); `None` is unset.
    pub token_keyring_file: Option<PathBuf>,
    /// `delegation.token.max.lifetime.ms`.
    pub token_max_lifetime_ms: i64,
    /// `delegation.token.expiry.time.ms`.
    pub token_expiry_time_ms: i64,
    /// `delegation.token.expiry.check.interval.ms`.
    pub token_expiry_check_interval_ms: i64,
    /// `delegation.token.hmac.algorithm`.
    pub token_hmac_algorithm: HmacAlgorithm,
    /// `connections.max.reauth.ms`.
    pub connections_max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_authentication_delay_ms: i64,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: i64,
    /// `socket.request.max.bytes`: the frame limit after authentication.
    pub socket_request_max_bytes: i32,
    /// `sasl.server.max.receive.size`: the frame limit before authentication.
    pub sasl_server_max_receive_size: i32,
    /// `max.connections` as configured (the broker lowers it to what the open-file limit
    /// allows, T-LIMIT-5).
    pub max_connections: i32,
    /// `max.connections.per.ip` (T-LIMIT-5).
    pub max_connections_per_ip: i32,
    /// `max.connections.per.ip.overrides`: per host or address, in configuration order.
    pub max_connections_per_ip_overrides: Vec<(String, i32)>,
    /// `ktb.write.timeout.ms`: how long an answer may wait for the client to take any
    /// of its bytes (T-LIMIT-3).
    pub write_timeout_ms: i64,
    /// `ktb.token.max.renewers` (D-20).
    pub token_max_renewers: usize,
    /// `ktb.token.max.per.owner` (D-20).
    pub token_max_per_owner: usize,
    /// `ktb.user.max.alterations.per.request` (§9.7).
    pub user_max_alterations_per_request: usize,
    /// `ktb.data.dir`.
    pub data_dir: PathBuf,
    /// `ktb.store`.
    pub store: StoreKind,
    /// `ktb.etcd.request.timeout.ms`: the longest a store call may take before the request
    /// answers 7 (T-CLUSTER-7); also how long a request waits for the token view.
    pub etcd_request_timeout_ms: i64,
    /// `ktb.metrics.listener`: where `/metrics`, `/healthz` and `/readyz` are served
    /// (T-OPS-1); `None` is off.
    pub metrics_listener: Option<HostPort>,
    /// `ktb.audit.log.file` (T-OPS-2); `None` is off.
    pub audit_log_file: Option<PathBuf>,
    /// `ktb.bootstrap.user`.
    pub bootstrap_user: String,
    /// `ktb.sasl.scram.implicit.token.login` (D-1).
    pub implicit_token_login: bool,
    /// `ktb.token.superuser.manage` (D-13).
    pub superuser_manage_tokens: bool,
    /// `ktb.shutdown.grace.ms`.
    pub shutdown_grace_ms: i64,
}

impl Config {
    /// Loads the configuration the way `ktb serve` does.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<(Config, Resolved), ConfigError> {
        let resolved = resolve(file, env, overrides)?;
        Ok((Config::from_resolved(&resolved)?, resolved))
    }

    /// Types and validates resolved values.
    pub fn from_resolved(r: &Resolved) -> Result<Config, ConfigError> {
        let bootstrap_user = r.get("ktb.bootstrap.user").unwrap_or_default().trim().to_owned();
        if bootstrap_user.is_empty() {
            return Err(invalid("ktb.bootstrap.user", "", "must not be empty"));
        }
        let keystore = KeystoreSettings {
            location: r.get("ssl.keystore.location").filter(|v| !v.is_empty()).map(str::to_owned),
            certificate_chain: r.get("ssl.keystore.certificate.chain").filter(|v| !v.is_empty()).map(str::to_owned),
            key: r.get("ssl.keystore.key").filter(|v| !v.is_empty()).map(str::to_owned),
        };
        if let Some(t) = r.get("ssl.keystore.type").filter(|t| !t.is_empty() && *t != "PEM") {
            return Err(invalid("ssl.keystore.type", t, "only PEM is supported"));
        }
        if r.get("ssl.key.password").is_some_and(|p| !p.is_empty()) {
            return Err(invalid(
                "ssl.key.password",
                "[hidden]",
                "encrypted keys are not supported; give an unencrypted PEM key",
            ));
        }
        Ok(Config {
            keystore,
            listeners: parse_listeners(r)?,
            node_id: int(r, "node.id", 0, i32::MAX as i64)? as i32,
            sasl_mechanisms: parse_mechanisms(r)?,
            super_users: parse_super_users(r, &bootstrap_user)?,
            token_secret: match (r.get("delegation.token.secret.key"), r.get("delegation.token.master.key")) {
                (Some(s), _) | (None, Some(s)) if s.is_empty() => SecretSetting::Disabled,
                (Some(s), _) | (None, Some(s)) => SecretSetting::Configured(s.to_owned()),
                (None, None) => SecretSetting::Generated,
            },
            token_keyring_file: match r.get("delegation.token.secret.keyring.file").unwrap_or_default().trim() {
                "" => None,
                _ if r.get("delegation.token.secret.key").or(r.get("delegation.token.master.key")).is_some() => {
                    return Err(invalid(
                        "delegation.token.secret.keyring.file",
                        r.get("delegation.token.secret.keyring.file").unwrap_or_default(),
                        "delegation.token.secret.key is set too: use one or the other (T-ROTATE-2)",
                    ));
                }
                f => Some(PathBuf::from(f)),
            },
            token_max_lifetime_ms: int(r, "delegation.token.max.lifetime.ms", 1, i64::MAX)?,
            token_expiry_time_ms: int(r, "delegation.token.expiry.time.ms", 1, i64::MAX)?,
            token_expiry_check_interval_ms: int(r, "delegation.token.expiry.check.interval.ms", 1, i64::MAX)?,
            token_hmac_algorithm: match r.get("delegation.token.hmac.algorithm").unwrap_or_default() {
                "HmacSHA1" => HmacAlgorithm::Sha1,
                "HmacSHA256" => HmacAlgorithm::Sha256,
                "HmacSHA512" => HmacAlgorithm::Sha512,
                other => {
                    return Err(invalid(
                        "delegation.token.hmac.algorithm",
                        other,
                        "allowed: HmacSHA1, HmacSHA256, HmacSHA512",
                    ));
                }
            },
            connections_max_reauth_ms: int(r, "connections.max.reauth.ms", i64::MIN, i64::MAX)?,
            failed_authentication_delay_ms: int(r, "connection.failed.authentication.delay.ms", 0, i64::MAX)?,
            connections_max_idle_ms: int(r, "connections.max.idle.ms", 1, i64::MAX)?,
            socket_request_max_bytes: int(r, "socket.request.max.bytes", 1, i32::MAX as i64)? as i32,
            sasl_server_max_receive_size: int(r, "sasl.server.max.receive.size", 1, i32::MAX as i64)? as i32,
            max_connections: int(r, "max.connections", 0, i32::MAX as i64)? as i32,
            max_connections_per_ip: int(r, "max.connections.per.ip", 0, i32::MAX as i64)? as i32,
            max_connections_per_ip_overrides: parse_ip_overrides(r)?,
            write_timeout_ms: int(r, "ktb.write.timeout.ms", 1, i64::MAX)?,
            // Arrays of more than 10,000 entries close the connection before decoding
            // (T-LIMIT-1), so a limit above that could never answer its 42.
            token_max_renewers: int(r, "ktb.token.max.renewers", 0, MAX_REQUEST_ENTRIES)? as usize,
            token_max_per_owner: int(r, "ktb.token.max.per.owner", 1, i32::MAX as i64)? as usize,
            user_max_alterations_per_request: int(r, "ktb.user.max.alterations.per.request", 1, MAX_REQUEST_ENTRIES)?
                as usize,
            data_dir: match r.get("ktb.data.dir").unwrap_or_default() {
                "" => return Err(invalid("ktb.data.dir", "", "must name a directory")),
                d => PathBuf::from(d),
            },
            store: match r.get("ktb.store").unwrap_or_default() {
                "sled" => StoreKind::Sled,
                "etcd" => StoreKind::Etcd(etcd_settings(r)?),
                other => return Err(invalid("ktb.store", other, "allowed: sled, etcd")),
            },
            etcd_request_timeout_ms: int(r, "ktb.etcd.request.timeout.ms", 1, 3_600_000)?,
            metrics_listener: parse_metrics_listener(r.get("ktb.metrics.listener").unwrap_or_default())?,
            audit_log_file: Some(r.get("ktb.audit.log.file").unwrap_or_default().trim())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            bootstrap_user,
            implicit_token_login: boolean(r, "ktb.sasl.scram.implicit.token.login")?,
            superuser_manage_tokens: boolean(r, "ktb.token.superuser.manage")?,
            shutdown_grace_ms: int(r, "ktb.shutdown.grace.ms", 0, i64::MAX)?,
        })
    }
}

fn list(s: &str, sep: char) -> Vec<String> {
    s.split(sep).map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

/// `max.connections.per.ip.overrides`: `host:count` entries, comma-separated (Kafka's
/// format; a host name or an IP address, IPv6 in brackets or bare).
fn parse_ip_overrides(r: &Resolved) -> Result<Vec<(String, i32)>, ConfigError> {
    let name = "max.connections.per.ip.overrides";
    let value = r.get(name).unwrap_or_default();
    list(value, ',')
        .into_iter()
        .map(|entry| {
            let (host, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| invalid(name, value, "entries are host:count, comma-separated"))?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let count = count.trim().parse::<i32>().ok().filter(|c| *c >= 0);
            match (host.is_empty(), count) {
                (false, Some(c)) => Ok((host.to_owned(), c)),
                _ => Err(invalid(name, value, "entries are host:count with a count from 0 to 2147483647")),
            }
        })
        .collect()
}

/// The most entries an array of a token or user API request may have (T-LIMIT-1).
const MAX_REQUEST_ENTRIES: i64 = ktb_protocol::guard::MAX_REQUEST_ENTRIES as i64;

/// The etcd settings (T-CLUSTER-1, §9.7's etcd security).
fn etcd_settings(r: &Resolved) -> Result<EtcdSettings, ConfigError> {
    let endpoints = list(r.get("ktb.etcd.endpoints").unwrap_or_default(), ',');
    if endpoints.is_empty() {
        return Err(invalid("ktb.etcd.endpoints", "", "ktb.store=etcd needs at least one http(s)://host:port"));
    }
    for e in &endpoints {
        let Some(rest) = e.strip_prefix("https://").or_else(|| e.strip_prefix("http://")) else {
            return Err(invalid("ktb.etcd.endpoints", e, "each endpoint is http://host:port or https://host:port"));
        };
        let host = rest.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(rest);
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if e.starts_with("http://") && !loopback {
            return Err(invalid(
                "ktb.etcd.endpoints",
                e,
                "plain http:// is only allowed on loopback; use https:// with ktb.etcd.ca.file",
            ));
        }
    }
    let mut prefix = r.get("ktb.etcd.prefix").unwrap_or_default().to_owned();
    if !prefix.starts_with('/') {
        return Err(invalid("ktb.etcd.prefix", &prefix, "must start with /"));
    }
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let path = |name: &str| r.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let text = |name: &str| r.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let (username, password) = (text("ktb.etcd.username"), text("ktb.etcd.password"));
    if username.is_some() != password.is_some() {
        return Err(invalid("ktb.etcd.username", "", "ktb.etcd.username and ktb.etcd.password go together"));
    }
    let (cert_file, key_file) = (path("ktb.etcd.cert.file"), path("ktb.etcd.key.file"));
    if cert_file.is_some() != key_file.is_some() {
        return Err(invalid("ktb.etcd.cert.file", "", "ktb.etcd.cert.file and ktb.etcd.key.file go together"));
    }
    let lease_ms = int(r, "ktb.etcd.lease.ms", 3_000, 3_600_000)?;
    Ok(EtcdSettings {
        endpoints,
        prefix,
        username,
        password,
        ca_file: path("ktb.etcd.ca.file"),
        cert_file,
        key_file,
        lease_ms,
        stale_ms: int(r, "ktb.etcd.stale.ms", 0, 3_600_000)?,
    })
}

fn int(r: &Resolved, name: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let raw = r.get(name).unwrap_or_default();
    let range = || match (min, max) {
        (i64::MIN, i64::MAX) => "must be an integer".to_owned(),
        (min, i64::MAX) => format!("must be an integer >= {min}"),
        (min, max) => format!("must be an integer in {min}..={max}"),
    };
    match raw.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(invalid(name, raw, &range())),
    }
}

fn boolean(r: &Resolved, name: &str) -> Result<bool, ConfigError> {
    let raw = r.get(name).unwrap_or_default();
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, raw, "must be true or false")),
    }
}

fn parse_mechanisms(r: &Resolved) -> Result<Vec<Mechanism>, ConfigError> {
    let name = "sasl.enabled.mechanisms";
    let raw = r.get(name).unwrap_or_default();
    let mut out = Vec::new();
    for entry in list(raw, ',') {
        let m = Mechanism::parse(&entry)
            .ok_or_else(|| invalid(name, &entry, "allowed: SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"))?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(invalid(name, raw, "at least one mechanism must be enabled"));
    }
    Ok(out)
}

fn parse_super_users(r: &Resolved, bootstrap_user: &str) -> Result<Vec<Principal>, ConfigError> {
    let Some(raw) = r.get("super.users") else {
        return Ok(vec![Principal::user(bootstrap_user)]);
    };
    list(raw, ';')
        .iter()
        .map(|e| Principal::parse(e).ok_or_else(|| invalid("super.users", e, "each entry must be Type:name")))
        .collect()
}

/// `ktb.metrics.listener`: empty, `host:port` or `http://host:port` (§9.7).
fn parse_metrics_listener(raw: &str) -> Result<Option<HostPort>, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let name = "ktb.metrics.listener";
    let bad = || invalid(name, raw, "expected host:port or http://host:port (https is not served)");
    let rest = raw.strip_prefix("http://").unwrap_or(raw);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains("://") || rest.contains('/') {
        return Err(bad());
    }
    let (_, hp) = parse_endpoint(name, &format!("http://{rest}")).map_err(|_| bad())?;
    Ok(Some(hp))
}

/// Parses `NAME://host:port`, with `[v6]` hosts allowed.
fn parse_endpoint(prop: &str, entry: &str) -> Result<(String, HostPort), ConfigError> {
    let bad = || invalid(prop, entry, "each entry must be NAME://host:port");
    let (name, rest) = entry.split_once("://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), HostPort { host: host.to_owned(), port }))
}

fn parse_listeners(r: &Resolved) -> Result<Vec<ListenerConfig>, ConfigError> {
    let map_prop = "listener.security.protocol.map";
    let mut map: BTreeMap<String, SecurityProtocol> = BTreeMap::new();
    for entry in list(r.get(map_prop).unwrap_or_default(), ',') {
        let (name, proto) =
            entry.split_once(':').ok_or_else(|| invalid(map_prop, &entry, "each entry must be NAME:PROTOCOL"))?;
        let proto = SecurityProtocol::parse(proto.trim())
            .ok_or_else(|| invalid(map_prop, &entry, "protocol must be PLAINTEXT, SASL_PLAINTEXT or SASL_SSL"))?;
        map.insert(name.trim().to_owned(), proto);
    }

    let mut listeners: Vec<ListenerConfig> = Vec::new();
    for entry in list(r.get("listeners").unwrap_or_default(), ',') {
        let (name, bind) = parse_endpoint("listeners", &entry)?;
        let protocol = map.get(&name).copied().or_else(|| SecurityProtocol::parse(&name)).ok_or_else(|| {
            invalid(
                "listeners",
                &entry,
                "the listener name must be PLAINTEXT, SASL_PLAINTEXT or SASL_SSL, or be mapped in \
                 listener.security.protocol.map (SSL without SASL is not offered)",
            )
        })?;
        if listeners.iter().any(|l| l.name == name) {
            return Err(invalid("listeners", &entry, "each listener name may appear once"));
        }
        listeners.push(ListenerConfig { name, protocol, bind, advertised: None });
    }
    if listeners.is_empty() {
        return Err(invalid("listeners", r.get("listeners").unwrap_or_default(), "at least one listener is needed"));
    }

    let adv_prop = "advertised.listeners";
    for entry in list(r.get(adv_prop).unwrap_or_default(), ',') {
        let (name, hp) = parse_endpoint(adv_prop, &entry)?;
        let listener = listeners
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| invalid(adv_prop, &entry, "the name must be one of the listeners"))?;
        listener.advertised = Some(hp);
    }
    for l in &listeners {
        let effective = l.advertised.as_ref().unwrap_or(&l.bind);
        if effective.host == "0.0.0.0" {
            let prop = if l.advertised.is_some() { adv_prop } else { "listeners" };
            return Err(ConfigError(format!(
                "{prop}: listener {} would advertise the non-routable address 0.0.0.0; set advertised.listeners \
                 to an address clients can reach",
                l.name
            )));
        }
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        if let Some(text) = file {
            tmp.as_file().write_all(text.as_bytes()).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let flags: Vec<(String, String)> = flags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(file.map(|_| tmp.path()), env, &flags).map(|(c, _)| c)
    }

    /// T-CFG-2: the environment variable name for each property.
    #[test]
    fn t_cfg_2_env_names() {
        assert_eq!(env_name("delegation.token.max.lifetime.ms"), "KTB_DELEGATION_TOKEN_MAX_LIFETIME_MS");
        assert_eq!(env_name("ktb.data.dir"), "KTB_DATA_DIR");
        assert_eq!(env_name("listeners"), "KTB_LISTENERS");
        assert_eq!(env_name("ktb.sasl.scram.implicit.token.login"), "KTB_SASL_SCRAM_IMPLICIT_TOKEN_LOGIN");
    }

    /// T-CFG-2: flag > env > file > default; unknown KTB_* variables and the reserved CLI
    /// variables are not server properties.
    #[test]
    fn t_cfg_2_precedence() {
        let file = "node.id=5\nconnections.max.idle.ms=1000\nmax.connections=7\n";
        let c = load(Some(file), &[], &[]).unwrap();
        assert_eq!((c.node_id, c.connections_max_idle_ms, c.max_connections), (5, 1000, 7));
        assert_eq!(c.socket_request_max_bytes, 1_048_576, "default kept (D-21)");

        let env = [("KTB_NODE_ID", "6"), ("KTB_CONNECTIONS_MAX_IDLE_MS", "2000"), ("KTB_NOT_A_PROPERTY", "x")];
        let c = load(Some(file), &env, &[]).unwrap();
        assert_eq!((c.node_id, c.connections_max_idle_ms, c.max_connections), (6, 2000, 7));

        let c = load(Some(file), &env, &[("node.id", "8")]).unwrap();
        assert_eq!((c.node_id, c.connections_max_idle_ms), (8, 2000));

        let reserved = [("KTB_BOOTSTRAP_SERVER", "h:1"), ("KTB_CONFIG", "/nope"), ("KTB_ADMIN_PASSWORD", "pw")];
        assert!(load(None, &reserved, &[]).is_ok());
    }

    /// T-CFG-1: unknown Kafka-style properties are ignored with a warning; unknown ktb.*
    /// properties and invalid values are errors that name the property and the range.
    #[test]
    fn t_cfg_1_unknown_and_invalid_properties() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().write_all(b"log.dirs=/tmp/x\nnum.network.threads=3\n").unwrap();
        let (_, resolved) = Config::load(Some(tmp.path()), [], &[]).unwrap();
        assert_eq!(resolved.warnings.len(), 2);
        assert!(resolved.warnings[0].contains("log.dirs"));

        let e = load(Some("ktb.data.dri=/x\n"), &[], &[]).unwrap_err().0;
        assert!(e.contains("ktb.data.dri"), "{e}");

        let e = load(Some("node.id=-1\n"), &[], &[]).unwrap_err().0;
        assert!(e.contains("node.id") && e.contains("-1") && e.contains("0..=2147483647"), "{e}");

        let e = load(None, &[("KTB_SOCKET_REQUEST_MAX_BYTES", "0")], &[]).unwrap_err().0;
        assert!(e.contains("socket.request.max.bytes") && e.contains("1..=2147483647"), "{e}");

        let e = load(None, &[], &[("delegation.token.hmac.algorithm", "HmacMD5")]).unwrap_err().0;
        assert!(e.contains("HmacSHA1"), "{e}");
        let e = load(None, &[], &[("sasl.enabled.mechanisms", "GSSAPI")]).unwrap_err().0;
        assert!(e.contains("sasl.enabled.mechanisms"), "{e}");
        let e = load(None, &[], &[("sasl.enabled.mechanisms", " ")]).unwrap_err().0;
        assert!(e.contains("at least one"), "{e}");
        let e = load(None, &[], &[("ktb.token.superuser.manage", "yes")]).unwrap_err().0;
        assert!(e.contains("true or false"), "{e}");
        let e = load(None, &[], &[("super.users", "alice")]).unwrap_err().0;
        assert!(e.contains("Type:name"), "{e}");
    }

    /// SPEC §6.1 defaults, and T-ZERO-1's data dir, node id, mechanisms and super user.
    #[test]
    fn defaults_match_the_spec() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./ktb-data"));
        assert_eq!(c.sasl_mechanisms, vec![Mechanism::ScramSha256, Mechanism::ScramSha512]);
        assert_eq!(c.super_users, vec![Principal::user("admin")]);
        assert_eq!(c.token_secret, SecretSetting::Generated);
        assert_eq!(c.token_max_lifetime_ms, 604_800_000);
        assert_eq!(c.token_expiry_time_ms, 86_400_000);
        assert_eq!(c.token_expiry_check_interval_ms, 3_600_000);
        assert_eq!(c.token_hmac_algorithm, HmacAlgorithm::Sha1);
        assert_eq!(c.failed_authentication_delay_ms, 100);
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert_eq!(c.sasl_server_max_receive_size, 524_288);
        assert_eq!(c.max_connections, i32::MAX);
        assert_eq!(c.max_connections_per_ip, i32::MAX);
        assert!(c.max_connections_per_ip_overrides.is_empty());
        assert_eq!(c.socket_request_max_bytes, 1_048_576, "D-21");
        assert_eq!(c.write_timeout_ms, 30_000);
        assert_eq!((c.token_max_renewers, c.token_max_per_owner), (64, 10_000), "D-20");
        assert_eq!(c.user_max_alterations_per_request, 100);
        assert!(c.implicit_token_login);
        assert!(!c.superuser_manage_tokens);
        assert_eq!(c.shutdown_grace_ms, 5000);
        assert_eq!(c.store, StoreKind::Sled);
    }

    /// T-SASL-6: configuration order, duplicates removed.
    #[test]
    fn mechanisms_keep_order_without_duplicates() {
        let c = load(None, &[], &[("sasl.enabled.mechanisms", "PLAIN, SCRAM-SHA-512,PLAIN")]).unwrap();
        assert_eq!(c.sasl_mechanisms, vec![Mechanism::Plain, Mechanism::ScramSha512]);
    }

    /// T-ENABLE-1/2: the secret alias, and empty meaning disabled.
    #[test]
    fn secret_settings() {
        let c = load(None, &[], &[("delegation.token.master.key", "old")]).unwrap();
        assert_eq!(c.token_secret, SecretSetting::Configured("old".into()));
        let c = load(None, &[], &[("delegation.token.master.key", "old"), ("delegation.token.secret.key", "new")]);
        assert_eq!(c.unwrap().token_secret, SecretSetting::Configured("new".into()));
        let c = load(None, &[], &[("delegation.token.secret.key", "")]).unwrap();
        assert_eq!(c.token_secret, SecretSetting::Disabled);
        assert!(!format!("{:?}", SecretSetting::Configured("s3cr3t".into())).contains("s3cr3t"));
    }

    /// SPEC §6.1 listeners, advertised listeners and the protocol map.
    #[test]
    fn listeners_and_advertised_listeners() {
        let c = load(
            None,
            &[],
            &[
                ("listeners", "INTERNAL://:9093,PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://[::1]:9094"),
                ("listener.security.protocol.map", "INTERNAL:SASL_PLAINTEXT"),
                ("advertised.listeners", "INTERNAL://broker.example:19093"),
            ],
        )
        .unwrap();
        assert_eq!(c.listeners.len(), 3);
        assert_eq!(c.listeners[0].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(c.listeners[0].bind, HostPort { host: "".into(), port: 9093 });
        assert_eq!(c.listeners[0].advertised, Some(HostPort { host: "broker.example".into(), port: 19093 }));
        assert_eq!(c.listeners[2].bind.host, "::1");
        assert_eq!(c.listeners[1].advertised, None);

        let e = load(None, &[], &[("listeners", "SSL://:9093")]).unwrap_err().0;
        assert!(e.contains("SSL without SASL"), "{e}");
        let e = load(None, &[], &[("listeners", "PLAINTEXT://0.0.0.0:9092")]).unwrap_err().0;
        assert!(e.contains("0.0.0.0"), "{e}");
        let e = load(None, &[], &[("listeners", "PLAINTEXT://:1"), ("advertised.listeners", "OTHER://h:1")]);
        assert!(e.unwrap_err().0.contains("one of the listeners"));
        let e = load(None, &[], &[("listeners", "PLAINTEXT://h:99999")]).unwrap_err().0;
        assert!(e.contains("NAME://host:port"), "{e}");
    }

    /// T-OPS-1: the metrics listener takes `host:port` and `http://host:port` (§9.7).
    #[test]
    fn t_ops_1_metrics_listener_forms() {
        let hp = |host: &str, port| Some(HostPort { host: host.into(), port });
        assert_eq!(parse_metrics_listener("").unwrap(), None);
        assert_eq!(parse_metrics_listener("127.0.0.1:9404").unwrap(), hp("127.0.0.1", 9404));
        assert_eq!(parse_metrics_listener("http://127.0.0.1:9404").unwrap(), hp("127.0.0.1", 9404));
        assert_eq!(parse_metrics_listener("http://[::1]:9404/").unwrap(), hp("::1", 9404));
        assert_eq!(parse_metrics_listener(":9404").unwrap(), hp("", 9404));
        for bad in ["https://127.0.0.1:9404", "127.0.0.1", "http://h:9404/metrics", "h:99999"] {
            assert!(parse_metrics_listener(bad).is_err(), "{bad}");
        }
    }

    /// T-CFG-3: the dump shows sources and hides secrets.
    #[test]
    fn t_cfg_3_dump_hides_secrets_and_names_sources() {
        let overrides = vec![("delegation.token.secret.key".to_owned(), "hunter2".to_owned())];
        let r = resolve(None, [("KTB_NODE_ID".to_owned(), "3".to_owned())], &overrides).unwrap();
        let dump = r.dump();
        assert!(!dump.contains("hunter2"));
        assert!(dump.contains("delegation.token.secret.key=[hidden]    # flag"));
        assert!(dump.contains("node.id=3    # env"));
        assert!(dump.contains("connections.max.idle.ms=600000    # default"));
    }
}
