//! The background task that deletes expired tokens (T-SWEEP-1, T-SWEEP-3).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::error;

use super::{TokenDetails, Tokens};
use crate::clock::Clock;
use crate::cluster::Cluster;

/// Sweeps every `interval_ms` on `clock` until `stop` turns true, whenever `cluster`
/// says this broker is the sweeper (T-CLUSTER-6). Alone, the first sweep comes one
/// interval after the call (the broker swept at startup); in a cluster at once, if elected.
/// `swept` is told of each token deleted.
pub async fn run(
    cluster: Arc<Cluster>,
    tokens: Arc<Tokens>,
    clock: Arc<dyn Clock>,
    interval_ms: i64,
    swept: Arc<dyn Fn(&TokenDetails) + Send + Sync>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = cluster.size() <= 1 && !cluster.clustered();
    loop {
        if wait {
            let next = clock.now_ms().saturating_add(interval_ms.max(1));
            tokio::select! {
                _ = clock.sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        wait = true;
        if !cluster.may_sweep().await {
            continue;
        }
        if let Err(e) = tokens.sweep(clock.now_ms(), swept.as_ref()).await {
            error!("the expired-token sweep failed; it runs again in {interval_ms} ms: {e}");
        }
    }
}
