//! The bounded pool for key derivations that a client can trigger at will (T-LIMIT-6).
//!
//! A PLAIN login costs one PBKDF2 whatever the password, and so does a token's first SCRAM
//! login per mechanism. Run on tokio's blocking pool, a flood of them would take every
//! core and queue without bound; here they run on a few threads of their own, at most half
//! the cores, behind a queue that refuses work when full. The caller fails the login
//! instead (58 after the usual delay), and everything else keeps its cores.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The pool refused the work: its queue is full (or it is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the key-derivation queue is full")]
pub struct Busy;

/// A fixed set of threads running key derivations from a bounded queue.
pub struct KdfPool {
    queue: SyncSender<Job>,
    threads: usize,
}

impl KdfPool {
    /// A pool of `threads` threads (at least one) behind a queue of `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Arc<KdfPool>> {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("ktb-kdf-{i}")).spawn(move || work(&rx))?;
        }
        Ok(Arc::new(KdfPool { queue: tx, threads }))
    }

    /// The pool T-LIMIT-6 asks for on this machine: half the cores (at least one), each
    /// with room for [`QUEUE_PER_THREAD`] waiting derivations.
    pub fn for_this_machine() -> std::io::Result<Arc<KdfPool>> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = (cores / 2).max(1);
        Self::start(threads, threads * QUEUE_PER_THREAD)
    }

    /// How many threads derive keys.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the pool and waits for its result, or refuses at once when the queue
    /// is full.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

/// Waiting derivations per pool thread: a 4096-iteration PBKDF2 takes a few milliseconds,
/// so a full queue is well under a second of work.
pub const QUEUE_PER_THREAD: usize = 64;

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running it.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match next {
            // A job that panics fails its own login (its result channel drops), never
            // the thread: the pool keeps its size.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            // The pool was dropped.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// T-LIMIT-6: work beyond the threads and the queue is refused at once, not queued;
    /// once the pool drains it accepts work again.
    #[tokio::test]
    async fn t_limit_6_full_queue_refuses_at_once() {
        let pool = KdfPool::start(1, 2).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let started = Arc::new(AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let (pool, rx, counter) = (pool.clone(), release_rx.clone(), started.clone());
            waiting.push(tokio::spawn(async move {
                pool.run(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
            // Let this job reach the pool (the first one its thread) before the next.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 1, "one job runs, the others wait in the queue");
        // One running, two queued: the fourth is refused without waiting.
        let refused = tokio::time::timeout(Duration::from_secs(1), pool.run(|| ())).await;
        assert!(matches!(refused, Ok(Err(Busy))), "refused at once");
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
        for w in waiting {
            assert!(w.await.unwrap().is_ok());
        }
        assert_eq!(pool.run(|| 41 + 1).await.unwrap(), 42);
    }

    /// A job that panics fails alone; the pool keeps its thread.
    #[tokio::test]
    async fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = KdfPool::start(1, 4).unwrap();
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
