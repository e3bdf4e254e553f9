//! The background task that deletes expired tokens (T-SWEEP-1, T-SWEEP-3).

use std::sync::Arc;

use tokio::sync::watch;
use tracing::error;

use super::Tokens;
use crate::clock::Clock;

/// Sweeps every `interval_ms` on `clock` until `stop` turns true. The first sweep comes
/// one interval after the call; the broker sweeps once more at startup itself.
pub async fn run(tokens: Arc<Tokens>, clock: Arc<dyn Clock>, interval_ms: i64, mut stop: watch::Receiver<bool>) {
    loop {
        let next = clock.now_ms().saturating_add(interval_ms.max(1));
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = tokens.sweep(clock.now_ms()).await {
            error!("the expired-token sweep failed; it runs again in {interval_ms} ms: {e}");
        }
    }
}
