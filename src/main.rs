//! The `ktb` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafka_token_broker::config::Config;
use kafka_token_broker::server::{Broker, Server};
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
    /// With no arguments it listens on 127.0.0.1:9092 and keeps its data in ./ktb-data.
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
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

const EXIT_FAILURE: u8 = 1;
const EXIT_STARTUP: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KTB_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    match cli.command {
        Command::Serve {
            config,
            overrides,
            print_config,
        } => serve(config, overrides, print_config),
    }
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let broker = match Broker::open(config) {
            Ok(b) => b,
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
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch SIGTERM ({e}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
