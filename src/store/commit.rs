//! Group commit: many writers, one flush.
//!
//! A writer applies its batch, then waits here until a flush that began after its batch
//! was applied has finished (T-PERSIST-1). Writers that arrive while a flush runs share
//! the next one, so concurrent creates cost one fsync between them rather than one each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::StoreError;

/// What the flusher calls to make every applied write durable.
pub type Flush = Box<dyn Fn() -> Result<(), StoreError> + Send>;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// A handle to the flusher thread of one store. Cloning shares the thread; dropping the
/// last handle stops the thread and waits for it, so the store is closed afterwards.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Flusher>,
}

struct Flusher {
    tx: Option<mpsc::Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Writes announced with [`GroupCommit::note_write`].
    written: Arc<AtomicU64>,
    /// How many of them the last successful flush covered.
    flushed: Arc<AtomicU64>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl GroupCommit {
    /// Starts the flusher thread, which calls `flush`.
    pub fn start(flush: Flush) -> std::io::Result<GroupCommit> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let written = Arc::new(AtomicU64::new(0));
        let flushed = Arc::new(AtomicU64::new(0));
        let (w, f) = (written.clone(), flushed.clone());
        let thread = std::thread::Builder::new().name("ktb-flusher".into()).spawn(move || {
            // Every waiter taken here applied its writes before it was sent, so the
            // flush below covers them all.
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let covered = w.load(Ordering::SeqCst);
                let result = flush();
                if result.is_ok() {
                    f.fetch_max(covered, Ordering::SeqCst);
                }
                for w in batch {
                    let _ = w.send(result.clone());
                }
            }
        })?;
        Ok(GroupCommit { inner: Arc::new(Flusher { tx: Some(tx), thread: Some(thread), written, flushed }) })
    }

    /// Announces a write about to be applied, so [`GroupCommit::settled`] knows of it.
    pub fn note_write(&self) {
        self.inner.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Completes when every write announced before this call is durable; at once when the
    /// last flush already covered them (readers use this, writers use `durable`).
    pub async fn settled(&self) -> Result<(), StoreError> {
        if self.inner.flushed.load(Ordering::SeqCst) >= self.inner.written.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.durable().await
    }

    /// Completes when everything applied before this call is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Io("the flusher thread has stopped".into());
        self.inner.tx.as_ref().ok_or_else(stopped)?.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}
