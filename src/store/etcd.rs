//! The etcd store: one state shared by every broker with the same endpoints and prefix
//! (T-CLUSTER-1, T-CLUSTER-2).
//!
//! Each record is one key under the prefix. Reads are etcd's default linearizable ranges.
//! A commit is one transaction: its guards compare create revisions (absent) or mod
//! revisions (unchanged), and a success is answered after etcd has committed it on a
//! quorum. Every commit also puts a marker key, so the marker's mod revision is the
//! revision of the last commit: a barrier is one linearizable read of it, and a feed that
//! has seen that revision holds every commit before the barrier.
//!
//! A feed is one watch on the whole prefix from a known revision, resumed after a
//! disconnect from the last revision it told; when etcd has compacted that history it
//! reloads the prefix and says so (§9.7, watch lifecycle). Every etcd call is bounded by
//! `ktb.etcd.request.timeout.ms`; a call that runs out answers [`StoreError::Unavailable`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Change, FeedEvent, Guard, Op, Record, Revision, Store, StoreError, StoreFuture, Versioned, Visit};
use crate::config::EtcdSettings;

/// The schema version this build writes and reads.
const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"meta/schema_version";
/// Put by every commit: its mod revision is the revision of the last commit.
const MARKER_KEY: &[u8] = b"meta/revision";
/// The keys the store writes for itself under its prefix, beside the records.
pub const OWN_KEYS: [&[u8]; 2] = [SCHEMA_KEY, MARKER_KEY];
/// Records per page of a load or scan (well under etcd's 1.5 MiB request limit).
const PAGE: i64 = 1_000;
/// Keys per read transaction (etcd's default `--max-txn-ops` is 128).
const READS_PER_TXN: usize = 128;

/// Store key → (value and mod revision, or absent; when confirmed).
type Confirmed = Arc<dashmap::DashMap<Vec<u8>, (Option<(Vec<u8>, i64)>, Instant)>>;
/// The most confirmed entries kept (absent keys are only remembered below it, so unknown
/// names sent by a client cannot grow it without bound).
const MAX_CONFIRMED: usize = 200_000;

/// A store under one prefix of an etcd cluster.
pub struct EtcdStore {
    client: Client,
    prefix: Vec<u8>,
    timeout: Duration,
    /// The feeds' watch tasks, stopped with the store.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The last value each key read with [`Store::get`] had, and when that was confirmed
    /// (by the read or by the watch): within `stale` of it a read that cannot reach etcd
    /// is answered from here, so logins carry on through a short outage (T-CLUSTER-7).
    confirmed: Confirmed,
    /// `ktb.etcd.stale.ms`.
    stale: Duration,
    /// Single-key reads wait here to share one read transaction (see [`batch_reads`]).
    reads: UnboundedSender<PendingRead>,
    /// False while this broker holds no registration lease: commits answer 7
    /// (T-CLUSTER-4). Offline tools never register and never clear it.
    writable: std::sync::atomic::AtomicBool,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

/// An etcd client error, as the store reports it: transport failures, timeouts and a
/// missing quorum are [`StoreError::Unavailable`] (the caller answers 7).
fn etcd_err(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match &e {
        E::TransportError(_) | E::IoError(_) => StoreError::Unavailable(e.to_string()),
        E::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Io(format!("etcd: {e}")),
    }
}

/// A read waiting for its batch: the full etcd key and where its answer goes.
type PendingRead = (Vec<u8>, tokio::sync::oneshot::Sender<Result<Option<Versioned>, StoreError>>);

/// How many read transactions may be in flight at once.
const READ_BATCHES_IN_FLIGHT: usize = 4;

/// Serves single-key reads in shared read-only transactions: whatever reads are waiting
/// when a transaction is sent go in it (at most 128), so concurrent logins cost etcd one
/// linearizable read between them (§9.7) and a lone read waits for nobody.
async fn batch_reads(client: Client, timeout: Duration, mut pending: UnboundedReceiver<PendingRead>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(READ_BATCHES_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < READS_PER_TXN {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let client = client.clone();
        tokio::spawn(async move {
            let reads: Vec<TxnOp> = batch.iter().map(|(k, _)| TxnOp::get(k.clone(), None)).collect();
            let answer = retry(timeout, Instant::now() + timeout, || {
                let mut kv = client.kv_client();
                let txn = Txn::new().and_then(reads.clone());
                async move { kv.txn(txn).await }
            })
            .await;
            match answer {
                Ok(resp) => {
                    let found: Vec<Option<Versioned>> = resp
                        .op_responses()
                        .into_iter()
                        .map(|r| match r {
                            TxnOpResponse::Get(g) => g
                                .kvs()
                                .first()
                                .map(|kv| Versioned { value: kv.value().to_vec(), stamp: kv.mod_revision() }),
                            _ => None,
                        })
                        .collect();
                    if found.len() != batch.len() {
                        for (_, tx) in batch {
                            let _ = tx.send(Err(StoreError::Io("etcd answered fewer reads than asked".into())));
                        }
                    } else {
                        for ((_, tx), v) in batch.into_iter().zip(found) {
                            let _ = tx.send(Ok(v));
                        }
                    }
                }
                Err(e) => {
                    for (_, tx) in batch {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// How long one attempt of a call may take: a quarter of the request timeout, at least
/// 500 ms, so a call survives one hung attempt during an etcd leader election.
fn attempt_timeout(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(500)).min(timeout)
}

/// Runs an etcd call, again after a retriable failure (a member down, a leader
/// election), until it succeeds or `deadline` has passed.
async fn retry<T, F, Fut>(timeout: Duration, deadline: Instant, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut pause = Duration::from_millis(20);
    loop {
        // An attempt sent to a member that has just lost its leader can hang until etcd's
        // own timeout: it is given up early and tried again while the deadline allows.
        let left = deadline.saturating_duration_since(Instant::now()).min(attempt_timeout(timeout));
        let err = match tokio::time::timeout(left, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => etcd_err(e),
            Err(_) => StoreError::Unavailable(format!("etcd did not answer within {timeout:?}")),
        };
        if !matches!(err, StoreError::Unavailable(_)) || Instant::now() + pause >= deadline {
            return Err(err);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Runs `futures` together and returns their outputs in order.
async fn join_all<T, F: std::future::Future<Output = T>>(futures: impl Iterator<Item = F>) -> Vec<T> {
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> = futures.map(Box::pin).enumerate().collect();
    let mut out: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future completed")).collect()
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Io(format!("cannot read {what} {}: {e}", path.display())))
}

impl EtcdStore {
    /// Connects to the cluster in `settings` and checks the schema version under the
    /// prefix; every later call is bounded by `timeout`.
    pub async fn connect(settings: &EtcdSettings, timeout: Duration) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options.with_user(user.clone(), password.clone()).with_auto_token_refresh(true);
        }
        if settings.endpoints.iter().any(|e| e.starts_with("https://")) {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &settings.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "ktb.etcd.ca.file")?));
            }
            if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
                tls = tls.identity(Identity::from_pem(
                    read_pem(cert, "ktb.etcd.cert.file")?,
                    read_pem(key, "ktb.etcd.key.file")?,
                ));
            }
            options = options.with_tls(tls);
        }
        let client = tokio::time::timeout(timeout, Client::connect(&settings.endpoints, Some(options)))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no etcd endpoint answered within {timeout:?}")))?
            .map_err(etcd_err)?;
        let (reads, pending) = unbounded_channel();
        let batcher = tokio::spawn(batch_reads(client.clone(), timeout, pending));
        let store = EtcdStore {
            reads,
            client,
            prefix: settings.prefix.as_bytes().to_vec(),
            timeout,
            tasks: Mutex::new(vec![batcher]),
            confirmed: Confirmed::default(),
            stale: Duration::from_millis(settings.stale_ms.max(0) as u64),
            writable: true.into(),
        };
        store.check_schema().await?;
        Ok(store)
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        if super::put_new(self, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().to_vec()).await? {
            info!(prefix = %String::from_utf8_lossy(&self.prefix), "initialized an empty etcd prefix");
            return Ok(());
        }
        let raw = self.get(SCHEMA_KEY).await?.map(|v| v.value).unwrap_or_default();
        let found = <[u8; 4]>::try_from(raw.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::Corrupt { key: "meta/schema_version".into(), reason: "not 4 bytes".into() })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found, supported: SCHEMA_VERSION });
        }
        Ok(())
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    fn unprefixed(&self, key: &[u8]) -> Vec<u8> {
        key.strip_prefix(self.prefix.as_slice()).unwrap_or(key).to_vec()
    }

    /// Runs an etcd call, again after a retriable failure (a member down, a leader
    /// election), until it succeeds or the request timeout has passed.
    async fn call<T, F, Fut>(&self, deadline: Instant, f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        retry(self.timeout, deadline, f).await
    }

    /// The deadline of a call starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Whether a commit whose answer was lost took effect: every put holds the value it
    /// wrote and every deleted key is gone. Returns the marker's revision if so (at or
    /// after the commit's).
    async fn took_effect(&self, deadline: Instant, ops: &[Op]) -> Result<Option<Revision>, StoreError> {
        let mut reads: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, _) | Op::Delete(k) => TxnOp::get(self.key(k), None),
            })
            .collect();
        reads.push(TxnOp::get(self.key(MARKER_KEY), None));
        let resp = self
            .call(deadline, || {
                let mut kv = self.client.kv_client();
                let txn = Txn::new().and_then(reads.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        let found: Vec<Option<(Vec<u8>, i64)>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
                _ => None,
            })
            .collect();
        let applied = ops.iter().zip(&found).all(|(op, now)| match (op, now) {
            (Op::Put(_, v), Some((held, _))) => held == v,
            (Op::Delete(_), None) => true,
            _ => false,
        });
        Ok(applied.then(|| found.last().cloned().flatten().map(|(_, r)| r).unwrap_or(0)))
    }

    /// The client, for the cluster's own keys (membership, election).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The full etcd key of a store key.
    pub fn full_key(&self, key: &[u8]) -> Vec<u8> {
        self.key(key)
    }

    /// Lets commits through or refuses them with [`StoreError::Unavailable`].
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, std::sync::atomic::Ordering::SeqCst);
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls `visit` with every record under `prefix` (a store key prefix) as of one
    /// revision (`at`, or the current one), page by page; returns that revision.
    async fn pages(
        &self,
        prefix: &[u8],
        at: Option<Revision>,
        visit: &mut (dyn FnMut(Vec<u8>, Vec<u8>) -> Result<(), StoreError> + Send),
    ) -> Result<Revision, StoreError> {
        let full = self.key(prefix);
        let end = prefix_end(&full);
        let mut start = full;
        let mut revision = at.unwrap_or(0);
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let resp = self
                .call(self.deadline(), || {
                    let (mut kv, start, options) = (self.client.kv_client(), start.clone(), options.clone());
                    async move { kv.get(start, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let mut last = None;
            for kv in resp.kvs() {
                visit(self.unprefixed(kv.key()), kv.value().to_vec())?;
                last = Some(kv.key().to_vec());
            }
            match (more, last) {
                (true, Some(mut last)) => {
                    last.push(0);
                    start = last;
                }
                _ => return Ok(revision),
            }
        }
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let stopped = || StoreError::Io("the etcd read batcher has stopped".into());
            self.reads.send((self.key(key), tx)).map_err(|_| stopped())?;
            let read = rx.await.map_err(|_| stopped())?;
            let found = match read {
                Ok(found) => found,
                Err(StoreError::Unavailable(why)) => {
                    return match self.confirmed.get(key).filter(|c| c.1.elapsed() < self.stale) {
                        Some(c) => Ok(c.0.clone().map(|(value, stamp)| Versioned { value, stamp })),
                        None => Err(StoreError::Unavailable(why)),
                    };
                }
                Err(e) => return Err(e),
            };
            if !self.stale.is_zero() && (found.is_some() || self.confirmed.len() < MAX_CONFIRMED) {
                let kept = found.as_ref().map(|v| (v.value.clone(), v.stamp));
                self.confirmed.insert(key.to_vec(), (kept, Instant::now()));
            }
            Ok(found)
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        // Each key through the read batcher: they go out together, in as few read
        // transactions as the batches allow.
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(READS_PER_TXN) {
                let reads = chunk.iter().map(|k| self.get(k));
                for r in join_all(reads).await {
                    out.push(r?);
                }
            }
            Ok(out)
        })
    }

    fn scan_prefix<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Vec<Record>> {
        Box::pin(async move {
            let mut out = Vec::new();
            self.pages(prefix, None, &mut |k, v| {
                out.push((k, v));
                Ok(())
            })
            .await?;
            Ok(out)
        })
    }

    fn load<'a>(&'a self, prefix: &'a [u8], visit: &'a mut Visit<'_>) -> StoreFuture<'a, Revision> {
        Box::pin(async move { self.pages(prefix, None, &mut |k, v| visit(&k, &v)).await })
    }

    fn commit(&self, guards: Vec<Guard>, ops: Vec<Op>) -> StoreFuture<'_, Option<Revision>> {
        Box::pin(async move {
            if !self.writable.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable(
                    "this broker has lost its cluster registration and is renewing it".into(),
                ));
            }
            let compares: Vec<Compare> = guards
                .into_iter()
                .map(|g| match g {
                    Guard::Absent(k) => Compare::create_revision(self.key(&k), CompareOp::Equal, 0),
                    Guard::Unchanged(k, stamp) => Compare::mod_revision(self.key(&k), CompareOp::Equal, stamp),
                })
                .collect();
            let mut writes: Vec<TxnOp> = ops
                .iter()
                .cloned()
                .map(|op| match op {
                    Op::Put(k, v) => TxnOp::put(self.key(&k), v, None),
                    Op::Delete(k) => TxnOp::delete(self.key(&k), None),
                })
                .collect();
            writes.push(TxnOp::put(self.key(MARKER_KEY), Vec::new(), None));
            let txn = Txn::new().when(compares).and_then(writes);
            // A failure after the request left may hide a commit: it is looked for before
            // the transaction is sent again (T-CLUSTER-7).
            let deadline = self.deadline();
            let mut pause = Duration::from_millis(20);
            loop {
                let mut kv = self.client.kv_client();
                let left = deadline.saturating_duration_since(Instant::now()).min(attempt_timeout(self.timeout));
                let err = match tokio::time::timeout(left, kv.txn(txn.clone())).await {
                    Ok(Ok(resp)) => {
                        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                        return Ok(resp.succeeded().then_some(revision));
                    }
                    Ok(Err(e)) => etcd_err(e),
                    Err(_) => StoreError::Unavailable(format!("etcd did not answer within {:?}", self.timeout)),
                };
                if !matches!(err, StoreError::Unavailable(_)) {
                    return Err(err);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
                if Instant::now() >= deadline {
                    return Err(err);
                }
                match self.took_effect(deadline, &ops).await {
                    Ok(Some(revision)) => return Ok(Some(revision)),
                    Ok(None) => {}
                    // Not even a read went through in time: the outcome stays unknown (7).
                    Err(_) => return Err(err),
                }
            }
        })
    }

    fn feed(&self, prefix: &[u8], after: Revision) -> Result<UnboundedReceiver<FeedEvent>, StoreError> {
        let (tx, rx) = unbounded_channel();
        let watcher = Watcher {
            confirmed: self.confirmed.clone(),
            client: self.client.clone(),
            store_prefix: self.prefix.clone(),
            prefix: prefix.to_vec(),
            timeout: self.timeout,
            tx,
        };
        let task = tokio::spawn(watcher.run(after));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        Ok(rx)
    }

    fn barrier(&self) -> StoreFuture<'_, Revision> {
        Box::pin(async move {
            let marker = self.key(MARKER_KEY);
            let resp = self
                .call(self.deadline(), || {
                    let (mut kv, marker) = (self.client.kv_client(), marker.clone());
                    async move { kv.get(marker, None).await }
                })
                .await?;
            Ok(resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0))
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The task behind one feed.
struct Watcher {
    /// The store's confirmed values, which the watch keeps current.
    confirmed: Confirmed,
    client: Client,
    /// The store's prefix in etcd.
    store_prefix: Vec<u8>,
    /// The store-key prefix the feed tells changes of.
    prefix: Vec<u8>,
    timeout: Duration,
    tx: UnboundedSender<FeedEvent>,
}

impl Watcher {
    /// Watches from `after + 1` until the receiver is gone, resuming after every break.
    async fn run(self, mut after: Revision) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.watch(&mut after).await {
                Ok(()) => return,
                Err(WatchBreak::Compacted(at)) => {
                    warn!(compacted_at = at, "the etcd history after revision {after} was compacted; reloading");
                    match self.reload().await {
                        Ok(revision) => after = revision,
                        Err(Some(e)) => warn!("reloading from etcd failed, retrying: {e}"),
                        Err(None) => return,
                    }
                }
                Err(WatchBreak::Failed(e)) => {
                    warn!("the etcd watch broke at revision {after}; resuming: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
            backoff = Duration::from_millis(50);
        }
    }

    /// One watch; `Ok` when the receiver is gone.
    async fn watch(&self, after: &mut Revision) -> Result<(), WatchBreak> {
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.store_prefix))
            .with_start_revision(*after + 1)
            .with_prev_key();
        let mut client = self.client.clone();
        let mut stream = tokio::time::timeout(self.timeout, client.watch(self.store_prefix.clone(), Some(options)))
            .await
            .map_err(|_| WatchBreak::Failed("no answer to the watch request".into()))?
            .map_err(|e| WatchBreak::Failed(e.to_string()))?;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = self.tx.closed() => return Ok(()),
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err(WatchBreak::Failed("the watch stream ended".into())),
                Err(e) => return Err(WatchBreak::Failed(e.to_string())),
            };
            if resp.compact_revision() > 0 {
                return Err(WatchBreak::Compacted(resp.compact_revision()));
            }
            if resp.canceled() {
                return Err(WatchBreak::Failed(format!("the watch was cancelled: {}", resp.cancel_reason())));
            }
            let mut changes = Vec::new();
            let mut revision = *after;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                revision = revision.max(kv.mod_revision());
                let Some(key) = kv.key().strip_prefix(self.store_prefix.as_slice()) else { continue };
                // A deletion's key-value has version 0 (a tombstone).
                let value = (kv.version() > 0).then(|| kv.value().to_vec());
                if let Some(mut c) = self.confirmed.get_mut(key) {
                    *c = (value.clone().map(|v| (v, kv.mod_revision())), Instant::now());
                }
                if !key.starts_with(&self.prefix) {
                    continue;
                }
                let prev = event.prev_kv().map(|p| p.value().to_vec());
                changes.push(Change { key: key.to_vec(), value, prev });
            }
            if revision > *after {
                *after = revision;
                if self.tx.send(FeedEvent::Changes { revision, changes }).is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// Loads the prefix afresh and tells it as a reload; `Err(None)` when the receiver is gone.
    async fn reload(&self) -> Result<Revision, Option<StoreError>> {
        let full = [self.store_prefix.as_slice(), self.prefix.as_slice()].concat();
        let end = prefix_end(&full);
        let mut start = full;
        let mut revision = 0;
        let mut records = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut kv = self.client.kv_client();
            let resp = tokio::time::timeout(self.timeout, kv.get(start.clone(), Some(options)))
                .await
                .map_err(|_| Some(StoreError::Unavailable("etcd did not answer".into())))?
                .map_err(|e| Some(etcd_err(e)))?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let mut last = None;
            for kv in resp.kvs() {
                let key = kv.key().strip_prefix(self.store_prefix.as_slice()).unwrap_or(kv.key());
                records.push((key.to_vec(), kv.value().to_vec()));
                last = Some(kv.key().to_vec());
            }
            match (resp.more(), last) {
                (true, Some(mut last)) => {
                    last.push(0);
                    start = last;
                }
                _ => break,
            }
        }
        self.tx.send(FeedEvent::Reload { revision, records }).map_err(|_| None)?;
        Ok(revision)
    }
}

/// Why a watch stopped.
enum WatchBreak {
    /// etcd compacted the revisions the watch asked for.
    Compacted(Revision),
    /// The stream broke or could not start.
    Failed(String),
}
