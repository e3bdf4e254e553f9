//! The bounded pool for key derivations that a client can trigger at will (T-LIMIT-6).
//!
//! A PLAIN login costs one PBKDF2 whatever the password, and so does a token's first SCRAM
//! login per mechanism. Run on tokio's blocking pool, a flood of them would take every
//! core and queue without bound; here they run on a few threads of their own, at most half
//! the cores, behind a queue per kind of login that refuses work when full. The caller
//! fails the login instead (58 after the usual delay), and everything else keeps its
//! cores; a PLAIN flood cannot refuse token logins, which go first.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Who asks for a derivation: each kind has its own queue, so a flood of one cannot
/// refuse the other, and token logins go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A token's first SCRAM login per mechanism (bounded by the tokens that exist).
    TokenLogin,
    /// A PLAIN login, right or wrong (as many as clients care to send).
    Plain,
}

/// The pool refused the work: its queue is full (or it is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the key-derivation queue is full")]
pub struct Busy;

#[derive(Default)]
struct Queues {
    token: VecDeque<Job>,
    plain: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
    /// Waiting jobs allowed per kind.
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fixed set of threads running key derivations from bounded queues.
pub struct KdfPool {
    shared: Arc<Shared>,
    threads: usize,
}

impl Drop for KdfPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl KdfPool {
    /// A pool of `threads` threads (at least one) with room for `queue` waiting jobs of
    /// each [`Work`] kind.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Arc<KdfPool>> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared { queues: Mutex::default(), ready: Condvar::new(), capacity: queue });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new().name(format!("ktb-kdf-{i}")).spawn(move || work(&shared))?;
        }
        Ok(Arc::new(KdfPool { shared, threads }))
    }

    /// The pool T-LIMIT-6 asks for on this machine: half the cores (at least one), each
    /// with room for [`QUEUE_PER_THREAD`] waiting derivations of each kind.
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
    /// of its kind is full.
    pub async fn run<T: Send + 'static>(&self, kind: Work, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let mut q = self.shared.lock();
            let queue = match kind {
                Work::TokenLogin => &mut q.token,
                Work::Plain => &mut q.plain,
            };
            if queue.len() >= self.shared.capacity {
                return Err(Busy);
            }
            queue.push_back(job);
        }
        self.shared.ready.notify_one();
        rx.await.map_err(|_| Busy)
    }
}

/// Waiting derivations per pool thread and kind: a 4096-iteration PBKDF2 takes a few
/// milliseconds, so a full queue is well under a second of work.
pub const QUEUE_PER_THREAD: usize = 64;

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                // Token logins first: PLAIN is the kind a client can send without end.
                if let Some(job) = q.token.pop_front().or_else(|| q.plain.pop_front()) {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A job that panics fails its own login (its result channel drops), never the
        // thread: the pool keeps its size.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
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
                pool.run(Work::Plain, move || {
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
        let refused = tokio::time::timeout(Duration::from_secs(1), pool.run(Work::Plain, || ())).await;
        assert!(matches!(refused, Ok(Err(Busy))), "refused at once");
        // A token login still finds room, and runs before the queued PLAIN jobs.
        let token = tokio::spawn({
            let (pool, started) = (pool.clone(), started.clone());
            async move { pool.run(Work::TokenLogin, move || started.load(Ordering::SeqCst)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
        assert_eq!(token.await.unwrap().unwrap(), 1, "it ran while the PLAIN jobs were still queued");
        for w in waiting {
            assert!(w.await.unwrap().is_ok());
        }
        assert_eq!(pool.run(Work::Plain, || 41 + 1).await.unwrap(), 42);
    }

    /// A job that panics fails alone; the pool keeps its thread.
    #[tokio::test]
    async fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = KdfPool::start(1, 4).unwrap();
        assert!(pool.run(Work::Plain, || panic!("boom")).await.is_err());
        assert_eq!(pool.run(Work::TokenLogin, || 7).await.unwrap(), 7);
    }
}
