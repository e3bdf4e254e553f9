//! The `ktb` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kafka_token_broker::auth::users::{Alteration, Users};
use kafka_token_broker::broker::{BOOTSTRAP_ITERATIONS, Broker, StartOptions, new_user_credentials};
use kafka_token_broker::cli::token::TokenCommand;
use kafka_token_broker::cli::user as cli_user;
use kafka_token_broker::cli::{self, CliError, CommonFlags, Output};
use kafka_token_broker::config::Config;
use kafka_token_broker::datadir::DataDir;
use kafka_token_broker::metrics::Metrics;
use kafka_token_broker::server::Server;
use kafka_token_broker::server::http::{self, Probe};
use kafka_token_broker::store::SledStore;
use ktb_protocol::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use tracing::{error, info, warn};

/// kafka-token-broker: a Kafka delegation-token authority that speaks the Kafka protocol.
#[derive(Parser)]
#[command(name = "ktb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    ///
    /// With no arguments it listens on SASL_PLAINTEXT://127.0.0.1:9092, keeps its data in
    /// ./ktb-data and, on the first start, creates the SCRAM user "admin" (password from
    /// KTB_ADMIN_PASSWORD, or generated and printed once on stderr).
    /// Settings use Kafka's property names and come from, highest first: --override
    /// flags, KTB_* environment variables (KTB_ + the name upper-cased with dots as
    /// underscores, a leading "ktb." dropped), the --config file, the defaults.
    ///
    /// Examples:
    ///   ktb serve
    ///   ktb serve --config server.properties
    ///   KTB_LISTENERS=PLAINTEXT://127.0.0.1:19092 KTB_DATA_DIR=./scratch ktb serve
    ///   ktb serve -o node.id=2 -o connections.max.idle.ms=60000
    ///   ktb serve --print-config
    #[command(verbatim_doc_comment)]
    Serve {
        /// A server.properties-style file.
        #[arg(long, env = "KTB_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set one property, overriding the file and the environment. Repeatable.
        #[arg(short = 'o', long = "override", value_name = "KEY=VALUE", value_parser = parse_override)]
        overrides: Vec<(String, String)>,
        /// Print every property with its effective value and source, then exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Create, renew, expire, describe and refresh delegation tokens, on ktb or any Kafka
    /// cluster.
    ///
    /// Connection settings come from, highest first: flags, --command-config (a Kafka
    /// client properties file), KTB_BOOTSTRAP_SERVER / KTB_SASL_MECHANISM /
    /// KTB_SASL_USERNAME / KTB_SASL_PASSWORD / KTB_SECURITY_PROTOCOL, the profile in
    /// ~/.config/ktb/config.toml, defaults (localhost:9092, SCRAM-SHA-512).
    ///
    /// Examples:
    ///   export KTB_SASL_USERNAME=alice KTB_SASL_PASSWORD=...
    ///   ktb token create --max-lifetime 1d
    ///   ktb token describe --output json
    ///   ktb token renew --hmac-file token.hmac
    ///   ktb token revoke --token-id bxw-KptNTH6KHys8TV5vcA
    ///   ktb token refresh --out /run/app/kafka.properties
    #[command(subcommand, verbatim_doc_comment)]
    Token(TokenCommand),
    /// Manage SCRAM users on a running broker (or, with --data-dir, in a stopped one).
    #[command(subcommand)]
    User(UserCommand),
    /// Show the client's resolved settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work on a stopped broker's store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Rotate the delegation-token master keys, and see which keys tokens still use.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Ask a running broker whether it is ready: exit 0 when its /readyz answers 200.
    ///
    /// For container and orchestrator health checks. It reads the broker's metrics
    /// listener (ktb.metrics.listener) and prints the answer: "ready", or "not ready:" and
    /// the reason. Exit codes: 0 ready, 1 answered but not ready, 2 a bad URL, 3 no answer.
    ///
    /// Examples:
    ///   ktb health
    ///   ktb health --url http://127.0.0.1:9404/healthz
    #[command(verbatim_doc_comment)]
    Health {
        /// The URL to GET.
        #[arg(long, env = "KTB_HEALTH_URL", default_value = "http://127.0.0.1:9404/readyz")]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000, value_name = "MS")]
        timeout_ms: u64,
    },
    /// Apache Kafka's kafka-delegation-tokens.sh, the same arguments and output, no JVM.
    ///
    /// Every argument after the word goes to the tool, as Kafka's tool takes them; its own
    /// --help prints Kafka's usage. The binary answers to this tool too when it is run
    /// under the name kafka-delegation-tokens or kafka-delegation-tokens.sh (a symlink).
    /// One difference: --describe without --owner-principal lists your tokens (all of
    /// them for a super user); add --kafka-compat for Kafka's empty answer.
    ///
    /// Examples:
    ///   ln -s "$(command -v ktb)" kafka-delegation-tokens.sh
    ///   ./kafka-delegation-tokens.sh --bootstrap-server 127.0.0.1:9092 \
    ///       --command-config admin.properties --create --max-life-time-period -1
    #[command(verbatim_doc_comment, disable_help_flag = true)]
    KafkaDelegationTokens {
        /// The tool's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Append a new random master key to the keyring; new tokens use it.
    ///
    /// With --data-dir it writes DIR/delegation-token.keyring; the first rotation of a
    /// broker that runs on its generated secret moves that secret into the keyring as key
    /// "default", so its tokens keep working. With --keyring-file it writes that file
    /// (delegation.token.secret.keyring.file), creating it with one key if it is absent.
    /// A running broker reads the keyring again within two seconds, or on SIGHUP. Tokens made
    /// with older keys keep working until they expire; remove a key's line once
    /// `ktb secret status` shows no live tokens for it. The key is never printed.
    ///
    /// Examples:
    ///   ktb secret rotate --data-dir ./ktb-data
    ///   ktb secret rotate --keyring-file /etc/ktb/keyring --key-id 2026-12
    #[command(verbatim_doc_comment)]
    Rotate {
        /// The broker's data directory.
        #[arg(long, value_name = "DIR", conflicts_with = "keyring_file")]
        data_dir: Option<PathBuf>,
        /// The keyring file (delegation.token.secret.keyring.file).
        #[arg(long, value_name = "FILE")]
        keyring_file: Option<PathBuf>,
        /// The new key's id (1 to 32 of A-Z a-z 0-9 _ -); default: k and the UTC time.
        #[arg(long, value_name = "ID")]
        key_id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List each master key: id, fingerprint, whether new tokens use it, its live tokens.
    ///
    /// Against a running broker (--url, its metrics listener; answered to loopback
    /// clients only) it also shows, on etcd, which live brokers hold each key. With
    /// --data-dir it reads a stopped broker's keyring and store. Keys that tokens still
    /// use but the keyring lacks are listed too: those tokens are refused.
    ///
    /// Examples:
    ///   ktb secret status --url http://127.0.0.1:9404
    ///   ktb secret status --data-dir ./ktb-data --output json
    #[command(verbatim_doc_comment)]
    Status {
        /// A running broker's metrics listener.
        #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "keyring_file"])]
        url: Option<String>,
        /// A stopped broker's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A keyring file, instead of the data dir's.
        #[arg(long, value_name = "FILE")]
        keyring_file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a stopped broker's sled store into an empty etcd prefix, to run it as a cluster.
    ///
    /// Users, tokens, the cluster id and the fake-salt key are copied; the master
    /// secret is not (only its fingerprint, so a broker with another secret is refused).
    /// Settings for etcd (ktb.etcd.prefix, ktb.etcd.username, ktb.etcd.password,
    /// ktb.etcd.ca.file, ...) and the secret come from --config, KTB_* variables and -o,
    /// as for `ktb serve`. An interrupted run can be run again.
    ///
    /// Example:
    ///   ktb store migrate --data-dir ./ktb-data --to-etcd http://127.0.0.1:2379
    #[command(verbatim_doc_comment)]
    Migrate {
        /// The stopped broker's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// etcd endpoints, comma-separated (ktb.etcd.endpoints).
        #[arg(long, value_name = "ENDPOINTS")]
        to_etcd: String,
        /// The etcd prefix to fill (ktb.etcd.prefix; default /ktb/).
        #[arg(long)]
        prefix: Option<String>,
        /// The broker's server.properties, for the secret and etcd settings.
        #[arg(long, env = "KTB_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set one property. Repeatable.
        #[arg(short = 'o', long = "override", value_name = "KEY=VALUE", value_parser = parse_override)]
        overrides: Vec<(String, String)>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print each connection setting, its value and where it came from (password hidden).
    ///
    /// Example:
    ///   ktb config show --command-config admin.properties
    #[command(verbatim_doc_comment)]
    Show {
        #[command(flatten)]
        common: CommonFlags,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a SCRAM user, or replace its password.
    ///
    /// Against a running broker (as a super user) the salted password is computed here and
    /// sent with AlterUserScramCredentials, one request per mechanism. With --data-dir it
    /// writes straight into a stopped broker's store: the recovery path when no super
    /// user's password is known (exit 2 while a broker holds the directory).
    ///
    /// Examples:
    ///   printf '%s\n' "$PW" | ktb user add alice --password-stdin
    ///   ktb user add app --generate-password --mechanism SCRAM-SHA-256
    ///   ktb user add admin --data-dir ./ktb-data --generate-password
    #[command(verbatim_doc_comment)]
    Add {
        /// The user name (ASCII: SCRAM cannot carry other names).
        name: String,
        /// Write into this stopped broker's data directory instead of sending a request.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Which credentials to write.
        #[arg(long, default_value = "both", value_parser = ["both", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanism: String,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = BOOTSTRAP_ITERATIONS)]
        iterations: u32,
        /// Read the new user's password from the first line of standard input.
        #[arg(long, conflicts_with = "generate_password")]
        password_stdin: bool,
        /// Generate a password and print it.
        #[arg(long)]
        generate_password: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// List users and their SCRAM mechanisms (all users when no name is given).
    ///
    /// Example:
    ///   ktb user describe alice bob --output json
    #[command(verbatim_doc_comment)]
    Describe {
        /// User names.
        names: Vec<String>,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Delete a user's SCRAM credentials (all of them by default).
    ///
    /// Tokens the user owns keep working until they expire, as in Kafka, unless
    /// --expire-tokens is given.
    ///
    /// Example:
    ///   ktb user delete app --expire-tokens
    #[command(verbatim_doc_comment)]
    Delete {
        /// The user name.
        name: String,
        /// Which credential to delete.
        #[arg(long, default_value = "all", value_parser = ["all", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanism: String,
        /// Also expire every token the user owns.
        #[arg(long)]
        expire_tokens: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// Logs go to stderr, filtered by KTB_LOG, else by `default_filter`.
fn init_logs(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KTB_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .init();
}

const EXIT_FAILURE: u8 = 1;
const EXIT_STARTUP: u8 = 2;

/// T-REVEAL-3: whatever the broker or an offline tool creates in the data dir (the store's
/// files included) is private to its user.
fn private_umask() {
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

fn main() -> ExitCode {
    // T-KDT-1: run as kafka-delegation-tokens(.sh), the binary is that tool. It logs
    // nothing (its output is compared byte for byte); KTB_LOG still turns logs on.
    let mut argv = std::env::args_os();
    let program = argv.next().map(PathBuf::from);
    let program = program.as_deref().and_then(Path::file_name).and_then(|n| n.to_str());
    if program.is_some_and(|p| cli::kdt::PROGRAM_NAMES.contains(&p)) {
        init_logs("off");
        return ExitCode::from(cli::kdt::run(&argv.map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()));
    }
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "info",
        Command::KafkaDelegationTokens { .. } => "off",
        _ => "warn",
    };
    init_logs(default_filter);
    match cli.command {
        Command::Serve { config, overrides, print_config } => serve(config, overrides, print_config),
        Command::User(UserCommand::Add {
            name,
            data_dir: Some(data_dir),
            mechanism,
            iterations,
            password_stdin,
            generate_password,
            ..
        }) => match user_add(&name, &data_dir, &mechanism, iterations, password_stdin, generate_password) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_STARTUP)
            }
        },
        Command::User(UserCommand::Add {
            name,
            data_dir: None,
            mechanism,
            iterations,
            password_stdin,
            generate_password,
            common,
        }) => {
            let output = common.output;
            let result = new_password(&name, iterations, password_stdin, generate_password, &common)
                .map_err(CliError::Usage)
                .and_then(|(password, generated)| {
                    let args =
                        cli_user::AddArgs { name: &name, mechanism: &mechanism, iterations, password, generated };
                    client_runtime()?.block_on(cli_user::add(args, &common))
                });
            finish(result, output)
        }
        Command::User(UserCommand::Describe { names, common }) => {
            let output = common.output;
            finish(client_runtime().and_then(|rt| rt.block_on(cli_user::describe(&names, &common))), output)
        }
        Command::User(UserCommand::Delete { name, mechanism, expire_tokens, common }) => {
            let output = common.output;
            let run =
                |rt: tokio::runtime::Runtime| rt.block_on(cli_user::delete(&name, &mechanism, expire_tokens, &common));
            finish(client_runtime().and_then(run), output)
        }
        Command::Config(ConfigCommand::Show { common }) => {
            let output = common.output;
            finish(kafka_token_broker::cli::config_show(&common), output)
        }
        Command::Health { url, timeout_ms } => health(&url, timeout_ms),
        Command::KafkaDelegationTokens { args } => ExitCode::from(cli::kdt::run(&args)),
        Command::Store(StoreCommand::Migrate { data_dir, to_etcd, prefix, config, overrides }) => {
            match store_migrate(&data_dir, &to_etcd, prefix, config.as_deref(), overrides) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_STARTUP)
                }
            }
        }
        Command::Secret(SecretCommand::Rotate { data_dir, keyring_file, key_id, output }) => finish(
            kafka_token_broker::cli::secret::rotate(
                data_dir.as_deref(),
                keyring_file.as_deref(),
                key_id.as_deref(),
                output,
            ),
            output,
        ),
        Command::Secret(SecretCommand::Status { url, data_dir, keyring_file, output }) => {
            let run = |rt: tokio::runtime::Runtime| {
                rt.block_on(kafka_token_broker::cli::secret::status(
                    data_dir.as_deref(),
                    keyring_file.as_deref(),
                    url.as_deref(),
                    output,
                ))
            };
            finish(client_runtime().and_then(run), output)
        }
        Command::Token(cmd) => {
            let output = token_output(&cmd);
            finish(client_runtime().and_then(|rt| rt.block_on(kafka_token_broker::cli::token::run(cmd))), output)
        }
    }
}

fn token_output(cmd: &TokenCommand) -> Output {
    match cmd {
        TokenCommand::Create(a) => a.common.output,
        TokenCommand::Renew(a) | TokenCommand::Expire(a) => a.common.output,
        TokenCommand::Describe(a) => a.common.output,
        TokenCommand::Revoke(a) => a.common.output,
        TokenCommand::Refresh(a) => a.common.output,
    }
}

/// A single-threaded runtime for the client commands.
fn client_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("cannot start the async runtime: {e}")))
}

/// Prints a client command's error (T-CLI-5) and turns the result into the exit code.
fn finish(result: Result<(), CliError>, output: Output) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match output {
                Output::Json => kafka_token_broker::cli::print_json(&e.to_json()),
                Output::Table => eprintln!("error: {e}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// The password for a new user: from stdin, generated, or typed twice on a terminal.
fn new_password(
    name: &str,
    iterations: u32,
    password_stdin: bool,
    generate: bool,
    common: &CommonFlags,
) -> Result<(String, bool), String> {
    check_user_name(name)?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!("--iterations {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"));
    }
    if password_stdin && common.connection.sasl_password_stdin {
        return Err("--password-stdin and --sasl-password-stdin both want standard input; use KTB_SASL_PASSWORD or \
                    a --command-config file for the login"
            .into());
    }
    read_new_password(name, password_stdin, generate).map(|p| (p, generate))
}

fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!(
            "user name {name:?} cannot log in with SCRAM: use printable ASCII characters only (T-USER-10)"
        ));
    }
    Ok(())
}

fn read_new_password(name: &str, password_stdin: bool, generate: bool) -> Result<String, String> {
    let password = if generate {
        use base64::Engine;
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    } else if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(format!("Password for {name}: ")).map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Repeat it: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ; nothing was changed".into());
        }
        first
    } else {
        return Err("no password: pass --password-stdin or --generate-password".into());
    };
    if password.is_empty() {
        return Err("the password is empty; nothing was changed".into());
    }
    Ok(password)
}

fn serve(file: Option<PathBuf>, overrides: Vec<(String, String)>, print_config: bool) -> ExitCode {
    let (config, resolved) = match Config::load(file.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            error!("configuration error: {e}");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    for w in &resolved.warnings {
        warn!("{w}");
    }
    if print_config {
        print!("{}", resolved.dump());
        return ExitCode::SUCCESS;
    }
    private_umask();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        // Signals first: a SIGTERM or SIGHUP while the store loads must not kill the
        // process the default way.
        let mut signal = Box::pin(shutdown_signal());
        let probe = Arc::new(Probe::default());
        reopen_on_sighup(probe.clone());
        let metrics = Arc::new(Metrics::for_config(&config));
        if let Some(addr) = &config.metrics_listener {
            match http::bind(addr).await {
                Ok(listener) => {
                    tokio::spawn(http::serve(listener, metrics.clone(), probe.clone()));
                }
                Err(e) => {
                    error!("cannot start: {e}");
                    return ExitCode::from(EXIT_STARTUP);
                }
            }
        }
        let options = StartOptions {
            admin_password: std::env::var("KTB_ADMIN_PASSWORD").ok(),
            metrics: Some(metrics),
            ..StartOptions::default()
        };
        // A stop asked for while the store loads ends the start: nothing is served yet, and
        // what the store committed so far is durable.
        let opened = tokio::select! {
            opened = Broker::open(config, options) => opened,
            _ = &mut signal => {
                info!("stopped before the broker started");
                return ExitCode::SUCCESS;
            }
        };
        let broker = match opened {
            Ok(mut b) => {
                if let Some(password) = b.generated_admin_password.take() {
                    print_password_banner(&b.config.bootstrap_user, &password);
                }
                b
            }
            Err(e) => {
                error!("cannot start: {e}");
                return ExitCode::from(EXIT_STARTUP);
            }
        };
        let server = match Server::bind(broker).await {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start: {e}");
                return ExitCode::from(EXIT_STARTUP);
            }
        };
        probe.started(server.broker());
        let shutdown = async move {
            signal.await;
            probe.stopping();
        };
        match server.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// `ktb health`.
fn health(url: &str, timeout_ms: u64) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return ExitCode::from(EXIT_FAILURE);
    };
    let timeout = std::time::Duration::from_millis(timeout_ms.max(1));
    use kafka_token_broker::cli::health::{self, HealthError};
    match runtime.block_on(health::get(url, timeout)) {
        Ok((200, body)) => {
            print!("{}", health::printable(&body));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("{status}: {}", health::printable(&body));
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e @ HealthError::BadUrl(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_STARTUP)
        }
        Err(e @ HealthError::NoAnswer(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(kafka_token_broker::cli::exit::CONNECTION)
        }
    }
}

/// Shows a generated bootstrap password once, on stderr and never in the log (T-ZERO-4).
fn print_password_banner(user: &str, password: &str) {
    let line = "=".repeat(72);
    eprintln!(
        "{line}\n  ktb created the SCRAM user {user:?} (super user) with this password:\n\n      {password}\n\n  \
         It is shown only this once. Save it now; set KTB_ADMIN_PASSWORD before the\n  first start to choose it \
         instead, or reset it offline with\n  `ktb user add {user} --data-dir DIR --generate-password`.\n{line}"
    );
}

/// `ktb user add --data-dir`: writes credentials straight into a stopped broker's store.
fn user_add(
    name: &str,
    data_dir: &std::path::Path,
    mechanism: &str,
    iterations: u32,
    password_stdin: bool,
    generate: bool,
) -> Result<(), String> {
    private_umask();
    check_user_name(name)?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!("--iterations {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"));
    }
    let dir = DataDir::open_existing(data_dir).map_err(|e| e.0)?;
    let password = read_new_password(name, password_stdin, generate)?;
    let store = SledStore::open(&dir.store_path()).map_err(|e| e.to_string())?;
    let users = Users::new(std::sync::Arc::new(store));
    let changes: Vec<(String, Alteration)> = new_user_credentials(&password, iterations)
        .map_err(|e| e.0)?
        .into_iter()
        .filter(|a| match a {
            Alteration::Upsert(m, _) => mechanism == "both" || mechanism == m.name(),
            Alteration::Delete(_) => false,
        })
        .map(|a| (name.to_owned(), a))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    runtime.block_on(users.alter(&changes, Vec::new())).map_err(|e| e.to_string())?;
    if generate {
        println!("{password}");
    }
    let mechs = if mechanism == "both" { "SCRAM-SHA-256 and SCRAM-SHA-512" } else { mechanism };
    eprintln!("user {name}: {mechs} credentials written to {} ({iterations} iterations)", data_dir.display());
    Ok(())
}

/// `ktb store migrate`: a sled store into etcd, then what to set on the brokers.
fn store_migrate(
    data_dir: &std::path::Path,
    endpoints: &str,
    prefix: Option<String>,
    file: Option<&std::path::Path>,
    mut overrides: Vec<(String, String)>,
) -> Result<(), String> {
    private_umask();
    overrides.push(("ktb.store".into(), "etcd".into()));
    overrides.push(("ktb.etcd.endpoints".into(), endpoints.into()));
    if let Some(p) = prefix {
        overrides.push(("ktb.etcd.prefix".into(), p));
    }
    let (config, _) = Config::load(file, std::env::vars(), &overrides).map_err(|e| format!("configuration: {e}"))?;
    let kafka_token_broker::config::StoreKind::Etcd(etcd) = &config.store else { unreachable!("set above") };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let done = runtime.block_on(kafka_token_broker::migrate::sled_to_etcd(&config, data_dir))?;
    eprintln!(
        "{} user credential(s) and {} token(s) of {} are in etcd prefix {} ({} record(s) written, {} there already)",
        done.credentials,
        done.tokens,
        data_dir.display(),
        etcd.prefix,
        done.written,
        done.already_there
    );
    eprintln!(
        "start each broker with ktb.store=etcd, ktb.etcd.endpoints={endpoints}, ktb.etcd.prefix={}, its own node.id,",
        etcd.prefix
    );
    if done.generated_secret {
        eprintln!(
            "and delegation.token.secret.key set to the contents of {} (the secret the tokens were made with; keep \
             it secret)",
            data_dir.join(kafka_token_broker::tokens::SECRET_FILE).display()
        );
    } else if done.data_dir_keyring {
        eprintln!(
            "and delegation.token.secret.keyring.file naming a copy (mode 0600) of {} (the keys the tokens were made \
             with; keep them secret)",
            data_dir.join(kafka_token_broker::tokens::keyring::KEYRING_FILE).display()
        );
    } else if done.fingerprint {
        eprintln!("and the same delegation.token.secret.key as before (brokers with another one are refused)");
    } else {
        eprintln!("and a delegation.token.secret.key of your choice (tokens were disabled)");
    }
    Ok(())
}

/// Reopens the audit log (log rotation, T-OPS-2) and reloads the keyring (T-ROTATE-6) on
/// every SIGHUP once the broker runs; before that a SIGHUP is ignored.
fn reopen_on_sighup(probe: Arc<Probe>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP received");
                    if let Some(broker) = probe.broker() {
                        broker.audit.reopen();
                        let rotation = broker.rotation.clone();
                        drop(broker);
                        match rotation.reload("SIGHUP").await {
                            Ok(Some(_)) => {}
                            Ok(None) => info!("no keyring to reload (delegation.token.secret.key is a single secret)"),
                            Err(e) => error!("the keyring was not reloaded; the keys in force stay: {e}"),
                        }
                    }
                }
            });
        }
        Err(e) => warn!("cannot watch SIGHUP ({e}); the audit log is not reopened on it"),
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a signal that arrives just after the listeners
/// announce themselves must stop the broker gracefully, not kill it unflushed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    async move {
        match handlers {
            Ok((mut term, mut int)) => tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("SIGINT received"),
            },
            Err(e) => {
                warn!("cannot watch SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
