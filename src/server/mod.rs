//! The network shell around the handlers: listeners, connection tasks, limits and
//! graceful shutdown.

mod connection;
pub mod http;
pub mod limits;
mod listener;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

use crate::broker::{Broker, StartupError};
use crate::config::{HostPort, SecurityProtocol};

/// A bound listener and what it tells clients about itself.
pub(crate) struct BoundListener {
    name: String,
    protocol: SecurityProtocol,
    tcp: TcpListener,
    advertised: HostPort,
    /// The TLS acceptor of a SASL_SSL listener.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A broker whose listeners are bound and which is ready to [`Server::run`].
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
}

impl Server {
    /// Binds every configured listener. Fails, with nothing left listening, if one cannot
    /// be bound or a SASL_SSL listener has no usable keystore.
    pub async fn bind(broker: Broker) -> Result<Server, StartupError> {
        let mut listeners = Vec::new();
        for l in &broker.config.listeners {
            let tls = match l.protocol {
                SecurityProtocol::SaslSsl => Some(tokio_rustls::TlsAcceptor::from(
                    crate::tls::server_config(&broker.config.keystore)
                        .map_err(|e| StartupError(format!("listener {}: {e}", l.name)))?,
                )),
                _ => None,
            };
            let host = l.bind.bind_host();
            let tcp = TcpListener::bind((host, l.bind.port))
                .await
                .map_err(|e| StartupError(format!("listener {}: cannot bind {host}:{}: {e}", l.name, l.bind.port)))?;
            let local = tcp.local_addr().map_err(|e| StartupError(format!("listener {}: {e}", l.name)))?;
            let advertised = l.advertised.clone().unwrap_or_else(|| HostPort {
                host: if l.bind.host.is_empty() {
                    gethostname::gethostname().to_string_lossy().into_owned()
                } else {
                    l.bind.host.clone()
                },
                port: local.port(),
            });
            listeners.push(BoundListener { name: l.name.clone(), protocol: l.protocol, tcp, advertised, tls });
        }
        let endpoints = listeners.iter().map(|l| (l.name.clone(), l.advertised.clone())).collect();
        broker.cluster.register(endpoints).await?;
        broker.rotation.serve().await;
        Ok(Server { broker: Arc::new(broker), listeners })
    }

    /// The broker this server serves.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
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
                info!("listening on {}://{addr} (advertised as {}:{})", l.name, l.advertised.host, l.advertised.port);
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
        let open_files = limits::open_file_limit();
        let max_connections = limits::effective_max_connections(broker.config.max_connections, open_files);
        info!(
            max_connections,
            configured = broker.config.max_connections,
            open_file_limit = open_files,
            max_connections_per_ip = broker.config.max_connections_per_ip,
            "connection limits"
        );
        let (quotas, unresolved) = limits::ConnectionQuotas::new(
            broker.config.max_connections_per_ip,
            &broker.config.max_connections_per_ip_overrides,
        );
        for host in unresolved {
            warn!(host = %host, "max.connections.per.ip.overrides: the host does not resolve; its override is ignored");
        }
        let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
        let mut accept_tasks = Vec::new();
        for l in listeners {
            accept_tasks.push(tokio::spawn(listener::accept_loop(
                broker.clone(),
                l,
                permits.clone(),
                quotas.clone(),
                stop_rx.clone(),
                done_tx.clone(),
            )));
        }
        drop(done_tx);
        let sweeper = tokio::spawn(crate::tokens::sweeper::run(
            broker.cluster.clone(),
            broker.tokens.clone(),
            broker.clock.clone(),
            broker.config.token_expiry_check_interval_ms,
            {
                let b = broker.clone();
                Arc::new(move |t: &crate::tokens::TokenDetails| crate::broker::record_swept(&b.metrics, &b.audit, t))
            },
            stop_rx.clone(),
        ));
        // The failed-login limiter's summary lines, once a second, when there is a log.
        let audit_flush = broker.audit.enabled().then(|| {
            let b = Arc::downgrade(&broker);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let Some(b) = b.upgrade() else { return };
                    b.audit.flush_suppressed();
                }
            })
        });

        shutdown.await;
        info!("shutting down: no new connections; finishing requests in flight");
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            let _ = t.await;
        }
        let _ = sweeper.await;
        if let Some(t) = audit_flush {
            let _ = t.await;
        }
        let grace = Duration::from_millis(broker.config.shutdown_grace_ms.max(0) as u64);
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            warn!("shutdown grace period of {grace:?} ended with connections still busy; closing them");
        }
        broker.cluster.leave().await;
        broker.audit.flush().await;
        broker.store.close().await?;
        // Connection tasks that signalled they are done drop their share a moment later;
        // waiting for them means the store (and its directory lock) is closed when this
        // returns, so the same directory can be opened again at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&broker) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        info!("store flushed; stopped");
        Ok(())
    }
}
