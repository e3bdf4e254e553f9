//! The network shell around the handlers: listeners, connection tasks, limits and
//! graceful shutdown.

mod connection;
mod listener;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

use crate::auth::Principal;
use crate::config::{Config, HostPort, SecurityProtocol, StoreKind};
use crate::datadir::DataDir;
use crate::store::{SledStore, Store};

/// A reason the broker cannot start (exit code 2, T-LIFE-2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

/// State shared by every connection.
pub struct Broker {
    /// The typed configuration.
    pub config: Config,
    /// This cluster's id (T-ZERO-5).
    pub cluster_id: String,
    /// Durable storage.
    pub store: Arc<dyn Store>,
    data_dir: DataDir,
}

impl Broker {
    /// Opens the data directory and the store (T-PERSIST-4's first steps).
    pub fn open(config: Config) -> Result<Broker, StartupError> {
        let data_dir = DataDir::open(&config.data_dir, config.node_id).map_err(|e| StartupError(e.0))?;
        let store: Arc<dyn Store> =
            match &config.store {
                StoreKind::Sled => Arc::new(SledStore::open(&data_dir.store_path()).map_err(|e| {
                    StartupError(format!("cannot open the store in {}: {e}", data_dir.path().display()))
                })?),
                StoreKind::Etcd { .. } => {
                    return Err(StartupError(
                        "ktb.store=etcd is not available in this build; use ktb.store=sled".into(),
                    ));
                }
            };
        Ok(Broker {
            cluster_id: data_dir.cluster_id.clone(),
            config,
            store,
            data_dir,
        })
    }

    /// True when `principal` is listed in `super.users`.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.config.super_users.contains(principal)
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }
}

/// A bound listener and what it tells clients about itself.
pub(crate) struct BoundListener {
    name: String,
    protocol: SecurityProtocol,
    tcp: TcpListener,
    advertised: HostPort,
}

/// A broker whose listeners are bound and which is ready to [`Server::run`].
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
}

impl Server {
    /// Binds every configured listener. Fails, with nothing left listening, if one cannot
    /// be bound or uses a protocol this build does not serve yet.
    pub async fn bind(broker: Broker) -> Result<Server, StartupError> {
        let mut listeners = Vec::new();
        for l in &broker.config.listeners {
            if l.protocol != SecurityProtocol::Plaintext {
                return Err(StartupError(format!(
                    "listener {}: {} is not served by this build yet; use a PLAINTEXT listener",
                    l.name,
                    l.protocol.name()
                )));
            }
            let host = if l.bind.host.is_empty() {
                "0.0.0.0"
            } else {
                l.bind.host.as_str()
            };
            let tcp = TcpListener::bind((host, l.bind.port))
                .await
                .map_err(|e| StartupError(format!("listener {}: cannot bind {host}:{}: {e}", l.name, l.bind.port)))?;
            let local = tcp
                .local_addr()
                .map_err(|e| StartupError(format!("listener {}: {e}", l.name)))?;
            let advertised = l.advertised.clone().unwrap_or_else(|| HostPort {
                host: if l.bind.host.is_empty() {
                    gethostname::gethostname().to_string_lossy().into_owned()
                } else {
                    l.bind.host.clone()
                },
                port: local.port(),
            });
            listeners.push(BoundListener {
                name: l.name.clone(),
                protocol: l.protocol,
                tcp,
                advertised,
            });
        }
        Ok(Server {
            broker: Arc::new(broker),
            listeners,
        })
    }

    /// The bound address of each listener, in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.tcp.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each connection finish
    /// the request it is handling (for at most `ktb.shutdown.grace.ms`), closes the
    /// connections and flushes the store (T-LIFE-1).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), crate::store::StoreError> {
        let Server { broker, listeners } = self;
        for l in &listeners {
            if let Ok(addr) = l.tcp.local_addr() {
                info!(
                    "listening on {}://{addr} (advertised as {}:{})",
                    l.name, l.advertised.host, l.advertised.port
                );
            }
            if l.protocol == SecurityProtocol::Plaintext {
                warn!(
                    "listener {} is PLAINTEXT: its clients are User:ANONYMOUS and cannot manage delegation tokens",
                    l.name
                );
            }
        }
        info!("data directory {}", broker.data_dir().display());

        let (stop_tx, stop_rx) = watch::channel(false);
        // Each connection task holds a clone of `done_tx`; when all are gone, `done_rx` ends.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let permits = Arc::new(Semaphore::new(broker.config.max_connections as usize));
        let mut accept_tasks = Vec::new();
        for l in listeners {
            accept_tasks.push(tokio::spawn(listener::accept_loop(
                broker.clone(),
                l,
                permits.clone(),
                stop_rx.clone(),
                done_tx.clone(),
            )));
        }
        drop(done_tx);

        shutdown.await;
        info!("shutting down: no new connections; finishing requests in flight");
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            let _ = t.await;
        }
        let grace = Duration::from_millis(broker.config.shutdown_grace_ms.max(0) as u64);
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            warn!("shutdown grace period of {grace:?} ended with connections still busy; closing them");
        }
        broker.store.flush()?;
        info!("store flushed; stopped");
        Ok(())
    }
}
