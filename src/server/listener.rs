//! The accept loop of one listener.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, error};

use super::limits::ConnectionQuotas;
use super::{BoundListener, connection};
use crate::broker::Broker;

/// Accepts connections until `stop` turns true. A permit from `permits` is taken
/// *before* accepting, so at `max.connections` new clients wait in the listen backlog
/// instead of being accepted and closed (T-WIRE-6).
pub(super) async fn accept_loop(
    broker: Arc<Broker>,
    listener: BoundListener,
    permits: Arc<Semaphore>,
    quotas: Arc<ConnectionQuotas>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    // Connections get their own copy of the advertised endpoint, so the listening socket
    // closes as soon as this loop ends.
    let advertised = Arc::new(listener.advertised.clone());
    let name: Arc<str> = listener.name.as_str().into();
    let protocol = listener.protocol;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.tcp.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // T-LIMIT-5: at its address's limit a connection is closed at once, and
                // its `max.connections` permit goes back with it.
                let Some(ip_slot) = quotas.try_open(peer.ip()) else {
                    debug!(%peer, listener = %listener.name, "closing: max.connections.per.ip reached");
                    drop(stream);
                    continue;
                };
                debug!(%peer, listener = %listener.name, "connection accepted");
                let _ = stream.set_nodelay(true);
                let (broker, advertised, stop, done) = (broker.clone(), advertised.clone(), stop.clone(), done.clone());
                let tls = listener.tls.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let _active = broker.metrics.connection();
                    match tls {
                        None => {
                            connection::serve(broker.clone(), &name, &advertised, protocol, stream, peer, stop).await
                        }
                        Some(acceptor) => {
                            // The handshake gets the idle timeout; a client that never
                            // finishes it holds its permit no longer than an idle one.
                            let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
                            match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    connection::serve(broker.clone(), &name, &advertised, protocol, tls, peer, stop)
                                        .await
                                }
                                Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                                Err(_) => debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    }
                    drop(ip_slot);
                    drop(permit);
                    drop(done);
                });
            }
            Err(e) => {
                // Usually out of file descriptors: wait instead of spinning.
                error!(listener = %listener.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
