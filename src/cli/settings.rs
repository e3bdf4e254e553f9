//! Where the client's connection settings come from (T-CLI-1, T-CLI-2): flags, then a
//! Kafka client properties file (`--command-config`), then `KTB_*` variables, then a
//! profile in `~/.config/ktb/config.toml`, then defaults. Each setting remembers its
//! source so `ktb config show` can tell.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CliError;
use crate::properties;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// The `--command-config` file.
    CommandConfig,
    /// A `KTB_*` environment variable.
    Env,
    /// A profile of the profile file.
    Profile(String),
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::CommandConfig => f.write_str("command-config"),
            Source::Env => f.write_str("env"),
            Source::Profile(p) => write!(f, "profile {p}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and its source.
#[derive(Clone)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

/// The connection flags common to every client command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionFlags {
    /// The broker(s) to contact: host:port[,host:port].
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub bootstrap_server: Option<String>,
    /// A Kafka client properties file (bootstrap.servers, security.protocol,
    /// sasl.mechanism, sasl.jaas.config or sasl.username/sasl.password).
    #[arg(long, value_name = "FILE", global = true)]
    pub command_config: Option<PathBuf>,
    /// The profile of ~/.config/ktb/config.toml to use [env: KTB_PROFILE; default: default].
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
    /// SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN.
    #[arg(long, value_name = "MECHANISM", global = true)]
    pub sasl_mechanism: Option<String>,
    /// The user to log in as.
    #[arg(long, value_name = "NAME", global = true)]
    pub sasl_username: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, global = true)]
    pub sasl_password_stdin: bool,
}

/// The resolved connection settings.
pub struct Settings {
    /// `host:port[,host:port]`.
    pub bootstrap: Sourced<String>,
    /// `SASL_PLAINTEXT` or `PLAINTEXT`.
    pub security_protocol: Sourced<String>,
    /// The SASL mechanism.
    pub mechanism: Sourced<String>,
    /// The user name, if any source gives one.
    pub username: Option<Sourced<String>>,
    /// The password, if any source gives one.
    pub password: Option<Sourced<String>>,
    /// True when the credentials are a token's (`tokenauth="true"` in the JAAS line).
    pub token_auth: Sourced<bool>,
    /// PEM certificates to trust for SASL_SSL (the system's roots when absent).
    pub truststore: Option<Sourced<Vec<u8>>>,
    /// Keys of the command-config file that were ignored.
    pub ignored: Vec<String>,
}

impl Settings {
    /// The same settings aimed at `address` (the controller, T-CLI-3).
    pub fn with_bootstrap(&self, address: String) -> Settings {
        Settings {
            bootstrap: Sourced { value: address, source: Source::Default },
            security_protocol: self.security_protocol.clone(),
            mechanism: self.mechanism.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            token_auth: self.token_auth.clone(),
            truststore: self.truststore.clone(),
            ignored: Vec::new(),
        }
    }
}

/// One profile of the profile file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    bootstrap_server: Option<String>,
    security_protocol: Option<String>,
    sasl_mechanism: Option<String>,
    sasl_username: Option<String>,
    sasl_password: Option<String>,
    sasl_password_file: Option<String>,
    ssl_truststore_location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Settings read from one source.
#[derive(Default)]
struct Layer {
    bootstrap: Option<String>,
    security_protocol: Option<String>,
    mechanism: Option<String>,
    username: Option<String>,
    password: Option<String>,
    token_auth: Option<bool>,
    truststore: Option<Vec<u8>>,
}

/// The profile file: `$XDG_CONFIG_HOME/ktb/config.toml`, else `~/.config/ktb/config.toml`.
pub fn profile_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("ktb").join("config.toml"))
}

fn expand_home(p: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (p.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn read_profile(name: &str, explicit: bool, env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, CliError> {
    let Some(path) = profile_path(env) else { return Ok(Layer::default()) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Layer::default()),
        Err(e) => return Err(CliError::Usage(format!("cannot read the profile file {}: {e}", path.display()))),
    };
    let mut file: ProfileFile =
        toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {}", path.display(), e.message())))?;
    let Some(p) = file.profiles.remove(name) else {
        if explicit {
            return Err(CliError::Usage(format!("profile {name:?} is not in {}", path.display())));
        }
        return Ok(Layer::default());
    };
    if p.sasl_password.is_some() {
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode()).unwrap_or(0);
        if mode & 0o044 != 0 {
            return Err(CliError::Usage(format!(
                "{} holds a password but is readable by group or others; fix it with: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    let password = match (&p.sasl_password, &p.sasl_password_file) {
        (Some(pw), _) => Some(pw.clone()),
        (None, Some(f)) => {
            let f = expand_home(f, env);
            let text = std::fs::read_to_string(&f)
                .map_err(|e| CliError::Usage(format!("cannot read sasl_password_file {}: {e}", f.display())))?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        (None, None) => None,
    };
    let truststore = p.ssl_truststore_location.map(|f| read_pem_file(&expand_home(&f, env))).transpose()?;
    Ok(Layer {
        bootstrap: p.bootstrap_server,
        security_protocol: p.security_protocol,
        mechanism: p.sasl_mechanism,
        username: p.sasl_username,
        password,
        token_auth: None,
        truststore,
    })
}

/// Reads `username`, `password` and `tokenauth` from a `sasl.jaas.config` value such as
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";`.
pub fn parse_jaas(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let (module, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    if !(module.ends_with("ScramLoginModule") || module.ends_with("PlainLoginModule")) {
        return Err(format!("sasl.jaas.config: unsupported login module {module:?}"));
    }
    let rest = rest.trim_start();
    // The control flag (`required`), then the options.
    let (_flag, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let mut rest = rest.trim_start();
    let mut out = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) =
            rest.split_once('=').ok_or_else(|| format!("sasl.jaas.config: expected key=value at {rest:?}"))?;
        let key = key.trim().to_owned();
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (value, tail) = if let Some(quote) = quote {
            let q = &after[1..];
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    c if c == quote => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("sasl.jaas.config: unterminated quote")?;
            (value, &q[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = tail.trim_start();
    }
    Ok(out)
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read the truststore {}: {e}", path.display())))
}

/// Reads a Kafka client properties file: UTF-8, or else ISO-8859-1, the encoding Java's
/// `Properties.load` reads.
pub fn read_properties_file(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

/// The settings of the `--command-config` file at `path`, whose text is `text`.
fn command_config_layer(path: &Path, text: &str) -> Result<(Layer, Vec<String>), CliError> {
    let pairs =
        properties::parse(text).map_err(|e| CliError::Usage(format!("--command-config {}: {e}", path.display())))?;
    let mut layer = Layer::default();
    let mut ignored = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "bootstrap.servers" => layer.bootstrap = Some(v),
            // As the Java client reads them: trimmed, the protocol in any case.
            "security.protocol" => layer.security_protocol = Some(v.trim().to_uppercase()),
            "sasl.mechanism" | "sasl.mechanisms" => layer.mechanism = Some(v.trim().to_owned()),
            "sasl.username" => layer.username = Some(v),
            "sasl.password" => layer.password = Some(v),
            "ssl.truststore.type" if v != "PEM" => {
                return Err(CliError::Usage(format!("ssl.truststore.type={v}: only PEM truststores are supported")));
            }
            "ssl.truststore.type" => {}
            "ssl.truststore.location" => layer.truststore = Some(read_pem_file(Path::new(&v))?),
            "ssl.truststore.certificates" => layer.truststore = Some(v.into_bytes()),
            "sasl.jaas.config" => {
                let opts = parse_jaas(&v).map_err(CliError::Usage)?;
                layer.username = opts.get("username").cloned().or(layer.username);
                layer.password = opts.get("password").cloned().or(layer.password);
                layer.token_auth = opts.get("tokenauth").map(|t| t.eq_ignore_ascii_case("true"));
            }
            _ => ignored.push(k),
        }
    }
    Ok((layer, ignored))
}

/// Resolves the settings from `flags`, a password already read from stdin, the
/// environment (`env`) and the files they name (T-CLI-2).
pub fn resolve(
    flags: &ConnectionFlags,
    stdin_password: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, CliError> {
    let text = match &flags.command_config {
        Some(path) => Some(
            read_properties_file(path)
                .map_err(|e| CliError::Usage(format!("cannot read --command-config {}: {e}", path.display())))?,
        ),
        None => None,
    };
    resolve_with(flags, stdin_password, env, text.as_deref())
}

/// As [`resolve`], with the text of the `--command-config` file already read.
pub fn resolve_with(
    flags: &ConnectionFlags,
    stdin_password: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    command_config: Option<&str>,
) -> Result<Settings, CliError> {
    let flag_layer = Layer {
        bootstrap: flags.bootstrap_server.clone(),
        security_protocol: None,
        mechanism: flags.sasl_mechanism.clone(),
        username: flags.sasl_username.clone(),
        password: stdin_password,
        token_auth: None,
        truststore: None,
    };
    let (config_layer, ignored) = match (&flags.command_config, command_config) {
        (Some(path), Some(text)) => command_config_layer(path, text)?,
        _ => (Layer::default(), Vec::new()),
    };
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let env_layer = Layer {
        bootstrap: var("KTB_BOOTSTRAP_SERVER"),
        security_protocol: var("KTB_SECURITY_PROTOCOL"),
        mechanism: var("KTB_SASL_MECHANISM"),
        username: var("KTB_SASL_USERNAME"),
        password: var("KTB_SASL_PASSWORD"),
        token_auth: None,
        truststore: None,
    };
    let (profile_name, explicit) = match (&flags.profile, var("KTB_PROFILE")) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) => (p, true),
        (None, None) => ("default".to_owned(), false),
    };
    let profile_layer = read_profile(&profile_name, explicit, env)?;
    let layers = [
        (Source::Flag, &flag_layer),
        (Source::CommandConfig, &config_layer),
        (Source::Env, &env_layer),
        (Source::Profile(profile_name.clone()), &profile_layer),
    ];
    fn pick<T: Clone>(layers: &[(Source, &Layer)], get: impl Fn(&Layer) -> Option<T>) -> Option<Sourced<T>> {
        layers.iter().find_map(|(s, l)| get(l).map(|value| Sourced { value, source: s.clone() }))
    }
    let or_default = |s: Option<Sourced<String>>, d: &str| {
        s.unwrap_or_else(|| Sourced { value: d.to_owned(), source: Source::Default })
    };
    let settings = Settings {
        bootstrap: or_default(pick(&layers, |l| l.bootstrap.clone()), "localhost:9092"),
        security_protocol: or_default(pick(&layers, |l| l.security_protocol.clone()), "SASL_PLAINTEXT"),
        mechanism: or_default(pick(&layers, |l| l.mechanism.clone()), "SCRAM-SHA-512"),
        username: pick(&layers, |l| l.username.clone()),
        password: pick(&layers, |l| l.password.clone()),
        // `tokenauth` belongs to the JAAS line's own credentials: it applies only when the
        // user name and password both come from that file too.
        token_auth: match pick(&layers, |l| l.token_auth) {
            Some(t)
                if [&pick(&layers, |l| l.username.clone()), &pick(&layers, |l| l.password.clone())]
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|s| s.source == Source::CommandConfig)) =>
            {
                t
            }
            _ => Sourced { value: false, source: Source::Default },
        },
        truststore: pick(&layers, |l| l.truststore.clone()),
        ignored,
    };
    match settings.security_protocol.value.as_str() {
        "SASL_PLAINTEXT" | "PLAINTEXT" | "SASL_SSL" => {}
        "SSL" => {
            return Err(CliError::Usage(format!(
                "security.protocol=SSL ({}): TLS without SASL is not supported; use SASL_SSL",
                settings.security_protocol.source
            )));
        }
        other => return Err(CliError::Usage(format!("unknown security.protocol {other:?}"))),
    }
    if !["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"].contains(&settings.mechanism.value.as_str()) {
        return Err(CliError::Usage(format!(
            "SASL mechanism {:?} ({}): use SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN",
            settings.mechanism.value, settings.mechanism.source
        )));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-CLI-2: `tokenauth` from a JAAS line applies only to that line's own credentials.
    #[test]
    fn t_cli_2_tokenauth_goes_with_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let cc = dir.path().join("c.properties");
        std::fs::write(
            &cc,
            "sasl.jaas.config=x.ScramLoginModule required username=\"tok\" password=\"hmac\" tokenauth=\"true\";\n",
        )
        .unwrap();
        let flags = ConnectionFlags { command_config: Some(cc), ..Default::default() };
        let none = |_: &str| None;
        let s = resolve(&flags, None, &none).unwrap();
        assert!(s.token_auth.value, "the token's own credentials");
        let flags = ConnectionFlags { sasl_username: Some("alice".into()), ..flags };
        let s = resolve(&flags, Some("alice-pw".into()), &none).unwrap();
        assert!(!s.token_auth.value, "a user from flags logs in as a user");
    }

    /// T-CLI-1: JAAS lines as Kafka clients write them.
    #[test]
    fn t_cli_1_jaas_lines() {
        let o = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="tok" password="a\"b=c" tokenauth="true";"#,
        )
        .unwrap();
        assert_eq!(o["username"], "tok");
        assert_eq!(o["password"], "a\"b=c");
        assert_eq!(o["tokenauth"], "true");
        let o =
            parse_jaas("org.apache.kafka.common.security.plain.PlainLoginModule \t required   username=u password=p;")
                .unwrap();
        assert_eq!((o["username"].as_str(), o["password"].as_str()), ("u", "p"));
        let o = parse_jaas("x.ScramLoginModule required username='u' password='p\"q';").unwrap();
        assert_eq!((o["username"].as_str(), o["password"].as_str()), ("u", "p\"q"), "single quotes, as Java's");
        assert!(parse_jaas("com.sun.security.auth.module.Krb5LoginModule required;").is_err());
        assert!(parse_jaas(r#"x.ScramLoginModule required username="open"#).is_err());
    }
}
