//! The brokers of a cluster (T-CLUSTER-4..6): who is live, which node.id each holds, which
//! one sweeps, and whether their master secrets agree.
//!
//! On sled the cluster is this broker alone. On etcd each broker registers
//! `brokers/<node.id>` under a lease it keeps alive, with its instance id (from its data
//! dir) and its advertised listeners; a second live broker with the same node.id is
//! refused, the same data dir restarting reclaims its own registration. Every broker
//! follows the `brokers/` keys through the store's feed, so Metadata and DescribeCluster
//! list every live broker. A broker whose lease is lost refuses writes (7) until it has
//! registered again. The sweeper is whoever holds `sweeper` under its lease.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::HostPort;
use crate::store::etcd::EtcdStore;
use crate::store::{FeedEvent, Store};

const BROKERS: &[u8] = b"brokers/";
const SWEEPER: &[u8] = b"sweeper";
const FINGERPRINTS: &[u8] = b"key_fp/";
const KEYS: &[u8] = b"keys/";
const ACTIVE_KEY: &[u8] = b"active_key";

/// Each live broker's master-key fingerprints: node id → key id (as shown) → fingerprint.
pub type PublishedKeys = BTreeMap<i32, BTreeMap<String, String>>;

/// Where the cluster keeps the fingerprint of key `key_id` (T-CLUSTER-5): written by the
/// first broker (or `ktb store migrate`), checked by every later one.
pub fn fingerprint_key(key_id: &str) -> Vec<u8> {
    [FINGERPRINTS, key_id.as_bytes()].concat()
}

/// Why this broker cannot join its cluster (the broker exits 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

/// What a broker registers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Its data dir's instance id.
    pub instance: String,
    /// Advertised endpoint per listener name.
    pub listeners: BTreeMap<String, (String, u16)>,
    /// Its wall clock when it registered (ms since the epoch).
    pub clock_ms: i64,
}

/// The brokers this broker knows of.
pub struct Cluster {
    node_id: i32,
    /// The live brokers by node id (this one included once registered).
    live: Arc<RwLock<BTreeMap<i32, Registration>>>,
    /// This broker's own listeners, once bound.
    local: RwLock<BTreeMap<String, HostPort>>,
    etcd: Option<EtcdMembership>,
}

/// The etcd side of membership.
struct EtcdMembership {
    store: Arc<EtcdStore>,
    instance: String,
    lease_ttl_s: i64,
    /// The lease currently held; 0 before registration and after it was lost.
    lease: watch::Sender<i64>,
    /// Set when the broker leaves the cluster.
    stop: watch::Sender<bool>,
}

impl Cluster {
    /// This broker alone (the sled store).
    pub fn single(node_id: i32) -> Cluster {
        Cluster { node_id, live: Arc::default(), local: RwLock::default(), etcd: None }
    }

    /// A cluster on etcd; nothing is registered until [`Cluster::register`].
    pub fn on_etcd(store: Arc<EtcdStore>, node_id: i32, instance: String, lease_ms: i64) -> Cluster {
        // Whole seconds, at least 3 (etcd's minimum is 1.5 × its election timeout).
        let lease_ttl_s = ((lease_ms + 999) / 1000).max(3);
        Cluster {
            node_id,
            live: Arc::default(),
            local: RwLock::default(),
            etcd: Some(EtcdMembership {
                store,
                instance,
                lease_ttl_s,
                lease: watch::channel(0).0,
                stop: watch::channel(false).0,
            }),
        }
    }

    /// Checks this broker's master-secret fingerprint against the cluster's (T-CLUSTER-5):
    /// the first broker writes it; a broker whose secret differs is refused. The secret
    /// itself never leaves the broker.
    pub async fn check_fingerprint(&self, key_id: &str, fingerprint: String) -> Result<(), ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(()) };
        let key = fingerprint_key(key_id);
        let err = |e| ClusterError(format!("cannot check the master secret's fingerprint in etcd: {e}"));
        if crate::store::put_new(etcd.store.as_ref(), &key, fingerprint.clone().into_bytes()).await.map_err(err)? {
            info!(key_id, "recorded the fingerprint of this master key in the cluster");
            return Ok(());
        }
        let stored = etcd.store.get(&key).await.map_err(err)?.map(|v| v.value).unwrap_or_default();
        if stored != fingerprint.as_bytes() {
            return Err(ClusterError(format!(
                "master key {key_id} differs from the key of that id the cluster's brokers use: its fingerprint \
                 is {} here and {} in etcd; give every broker the same secret for each key id (a key id is never \
                 reused for another secret)",
                &fingerprint[..16],
                String::from_utf8_lossy(&stored[..stored.len().min(16)])
            )));
        }
        Ok(())
    }

    /// The master-key fingerprints the brokers of `live` published under their leases
    /// (T-ROTATE-4); empty alone.
    pub async fn published_keys(&self, live: &[i32]) -> Result<PublishedKeys, ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(PublishedKeys::new()) };
        let records = etcd
            .store
            .scan_prefix(KEYS)
            .await
            .map_err(|e| ClusterError(format!("cannot read the brokers' key fingerprints from etcd: {e}")))?;
        let mut out = PublishedKeys::new();
        for (k, v) in records {
            let Some(rest) = k.strip_prefix(KEYS).and_then(|r| std::str::from_utf8(r).ok()) else { continue };
            let Some((node, key_id)) = rest.split_once('/') else { continue };
            let Ok(node) = node.parse::<i32>() else { continue };
            if live.contains(&node) {
                out.entry(node).or_default().insert(key_id.to_owned(), String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(out)
    }

    /// Replaces this broker's published fingerprints with `keys` (key id as shown,
    /// fingerprint), under its registration lease so they go when it does. Nothing alone.
    pub async fn publish_keys(&self, keys: &[(String, String)]) -> Result<(), ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(()) };
        let lease = *etcd.lease.borrow();
        if lease == 0 {
            return Err(ClusterError("this broker is not registered; its keys are published once it is".into()));
        }
        let relative = [KEYS, format!("{}/", self.node_id).as_bytes()].concat();
        let mine = etcd.store.full_key(&relative);
        // etcd refuses a delete range that overlaps a put of the same transaction: only
        // the ids that went are deleted, one by one.
        let published = etcd
            .store
            .scan_prefix(&relative)
            .await
            .map_err(|e| ClusterError(format!("cannot read this broker's key fingerprints from etcd: {e}")))?;
        let mut ops = Vec::new();
        for (k, _) in published {
            let id = &k[relative.len()..];
            if !keys.iter().any(|(kept, _)| kept.as_bytes() == id) {
                ops.push(TxnOp::delete(etcd.store.full_key(&k), None));
            }
        }
        for (id, fp) in keys {
            let key = [mine.as_slice(), id.as_bytes()].concat();
            ops.push(TxnOp::put(key, fp.clone(), Some(PutOptions::new().with_lease(lease))));
        }
        let mut kv = etcd.store.client().kv_client();
        match tokio::time::timeout(etcd.store.timeout(), kv.txn(Txn::new().and_then(ops))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClusterError(format!("cannot publish this broker's key fingerprints in etcd: {e}"))),
            Err(_) => Err(ClusterError("etcd did not answer the publication of this broker's keys".into())),
        }
    }

    /// The cluster's active key id (as shown) with the stamp a move is guarded by;
    /// `None` before any broker set it (T-ROTATE-4).
    pub async fn active_key(&self) -> Result<Option<(String, i64)>, ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(None) };
        let found = etcd
            .store
            .get(ACTIVE_KEY)
            .await
            .map_err(|e| ClusterError(format!("cannot read the cluster's active key from etcd: {e}")))?;
        Ok(found.map(|v| (String::from_utf8_lossy(&v.value).into_owned(), v.stamp)))
    }

    /// Moves the cluster's active key to `to` if it is still as read (`from`'s stamp, or
    /// absent); false when another broker moved it first.
    pub async fn move_active_key(&self, from: Option<i64>, to: &str) -> Result<bool, ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(false) };
        let guard = match from {
            Some(stamp) => crate::store::Guard::Unchanged(ACTIVE_KEY.to_vec(), stamp),
            None => crate::store::Guard::Absent(ACTIVE_KEY.to_vec()),
        };
        let put = crate::store::Op::Put(ACTIVE_KEY.to_vec(), to.as_bytes().to_vec());
        etcd.store
            .commit(vec![guard], vec![put])
            .await
            .map(|r| r.is_some())
            .map_err(|e| ClusterError(format!("cannot move the cluster's active key in etcd: {e}")))
    }

    /// The node ids of the brokers registered in etcd now (this one alone on sled), read
    /// from etcd itself rather than the feed: right at startup, before this broker has
    /// registered and followed the others, too.
    pub async fn registered_ids(&self) -> Result<Vec<i32>, ClusterError> {
        let Some(etcd) = &self.etcd else { return Ok(vec![self.node_id]) };
        let records = etcd
            .store
            .scan_prefix(BROKERS)
            .await
            .map_err(|e| ClusterError(format!("cannot read the cluster's brokers from etcd: {e}")))?;
        Ok(records.iter().filter_map(|(k, v)| parse_entry(k, v)).map(|(id, _)| id).collect())
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Registers this broker with its bound listeners and starts keeping the registration
    /// alive and following the others'. Refused when another live broker holds node.id.
    pub async fn register(self: &Arc<Self>, listeners: BTreeMap<String, HostPort>) -> Result<(), ClusterError> {
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = listeners.clone();
        let registration = Registration {
            instance: self.etcd.as_ref().map(|e| e.instance.clone()).unwrap_or_default(),
            listeners: listeners.into_iter().map(|(n, hp)| (n, (hp.host, hp.port))).collect(),
            clock_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
        };
        let Some(etcd) = &self.etcd else {
            self.live.write().unwrap_or_else(|p| p.into_inner()).insert(self.node_id, registration);
            return Ok(());
        };
        // Follow the registrations first, so this broker's own shows up through the feed.
        let mut loaded = BTreeMap::new();
        let revision = etcd
            .store
            .load(BROKERS, &mut |k, v| {
                if let Some(entry) = parse_entry(k, v) {
                    loaded.insert(entry.0, entry.1);
                }
                Ok(())
            })
            .await
            .map_err(|e| ClusterError(format!("cannot read the cluster's brokers from etcd: {e}")))?;
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        let feed = etcd.store.feed(BROKERS, revision).map_err(|e| ClusterError(e.to_string()))?;
        tokio::spawn(follow(Arc::downgrade(&self.live), feed));

        let lease = self.try_register(&registration).await.map_err(ClusterError)?;
        etcd.lease.send_replace(lease);
        etcd.store.set_writable(true);
        info!(node_id = self.node_id, lease_ttl_s = etcd.lease_ttl_s, "registered in the cluster");
        tokio::spawn(keep_alive(self.clone(), registration));
        Ok(())
    }

    /// Puts `brokers/<node.id>` under a new lease, unless another instance holds it.
    async fn try_register(&self, registration: &Registration) -> Result<i64, String> {
        let etcd = self.etcd.as_ref().expect("only called on etcd");
        let mut client = etcd.store.client();
        let timeout = etcd.store.timeout();
        let call = |what: &'static str| move |e: etcd_client::Error| format!("cannot {what} in etcd: {e}");
        let grant = tokio::time::timeout(timeout, client.lease_grant(etcd.lease_ttl_s, None))
            .await
            .map_err(|_| "etcd did not answer the lease request".to_owned())?
            .map_err(call("grant a lease"))?;
        let lease = grant.id();
        let key = etcd.store.full_key(&[BROKERS, self.node_id.to_string().as_bytes()].concat());
        let value = serde_json::to_vec(registration).map_err(|e| e.to_string())?;
        let put = TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(lease)));
        let mut kv = client.kv_client();
        let absent =
            Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([put.clone()]);
        let resp = tokio::time::timeout(timeout, kv.txn(absent))
            .await
            .map_err(|_| "etcd did not answer".to_owned())?
            .map_err(call("register"))?;
        if resp.succeeded() {
            return Ok(lease);
        }
        // Taken: by this data dir's earlier run (reclaimed), or by another live broker.
        let current = tokio::time::timeout(timeout, kv.get(key.clone(), None))
            .await
            .map_err(|_| "etcd did not answer".to_owned())?
            .map_err(call("read the registration"))?;
        let Some(kv_now) = current.kvs().first() else {
            return Err("the registration changed while it was read; start again".into());
        };
        let held: Option<Registration> = serde_json::from_slice(kv_now.value()).ok();
        match held {
            Some(r) if r.instance == registration.instance => {
                let mine = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, kv_now.mod_revision())])
                    .and_then([put]);
                let resp = tokio::time::timeout(timeout, kv.txn(mine))
                    .await
                    .map_err(|_| "etcd did not answer".to_owned())?
                    .map_err(call("reclaim the registration"))?;
                if resp.succeeded() {
                    info!(node_id = self.node_id, "reclaimed this data dir's registration from its earlier run");
                    Ok(lease)
                } else {
                    Err("the registration changed while it was reclaimed; start again".into())
                }
            }
            other => Err(format!(
                "node.id={} is already registered by another live broker{}; give each broker its own node.id",
                self.node_id,
                other.map(|r| format!(" (advertising {:?})", r.listeners)).unwrap_or_default()
            )),
        }
    }

    /// Leaves the cluster on shutdown: the registration goes at once (its lease is revoked)
    /// instead of when the lease runs out.
    pub async fn leave(&self) {
        let Some(etcd) = &self.etcd else { return };
        etcd.stop.send_replace(true);
        etcd.store.set_writable(false);
        let lease = etcd.lease.send_replace(0);
        if lease != 0 {
            let mut client = etcd.store.client();
            match tokio::time::timeout(etcd.store.timeout(), client.lease_revoke(lease)).await {
                Ok(Ok(_)) => info!(node_id = self.node_id, "left the cluster"),
                _ => warn!(node_id = self.node_id, "could not revoke the registration lease; it lapses on its own"),
            }
        }
    }

    /// The live brokers as seen from a listener advertised as `endpoint`: each broker's
    /// endpoint on the same listener name, in node-id order.
    pub fn brokers(&self, endpoint: &HostPort) -> Vec<(i32, HostPort)> {
        let name = self
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, hp)| *hp == endpoint)
            .map(|(n, _)| n.clone());
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(i32, HostPort)> = name
            .map(|name| {
                live.iter()
                    .filter(|(id, _)| **id != self.node_id)
                    .filter_map(|(id, r)| {
                        r.listeners.get(&name).map(|(host, port)| (*id, HostPort { host: host.clone(), port: *port }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // This broker always answers with the endpoint the client reached.
        out.push((self.node_id, endpoint.clone()));
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// The controller id Metadata and DescribeCluster show: the lowest live node id.
    pub fn controller_id(&self) -> i32 {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        live.keys().next().copied().unwrap_or(self.node_id).min(self.node_id)
    }

    /// True while this broker holds its registration: always alone; on etcd while its
    /// lease is alive (T-CLUSTER-4).
    pub fn registered(&self) -> bool {
        match &self.etcd {
            None => true,
            Some(etcd) => *etcd.lease.borrow() != 0,
        }
    }

    /// True on etcd, where brokers share the store.
    pub fn clustered(&self) -> bool {
        self.etcd.is_some()
    }

    /// How many brokers are live.
    pub fn size(&self) -> usize {
        self.live.read().unwrap_or_else(|p| p.into_inner()).len().max(1)
    }

    /// True when this broker may sweep now: always alone; on etcd when it holds the
    /// sweeper key under its lease, taking it if nobody does (T-CLUSTER-6).
    pub async fn may_sweep(&self) -> bool {
        let Some(etcd) = &self.etcd else { return true };
        let lease = *etcd.lease.borrow();
        if lease == 0 {
            return false;
        }
        let key = etcd.store.full_key(SWEEPER);
        let me = self.node_id.to_string();
        let take = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), me.clone(), Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = etcd.store.client().kv_client();
        match tokio::time::timeout(etcd.store.timeout(), kv.txn(take)).await {
            Ok(Ok(resp)) if resp.succeeded() => {
                info!(node_id = self.node_id, "this broker now runs the expired-token sweep");
                true
            }
            Ok(Ok(resp)) => resp.op_responses().into_iter().any(|r| match r {
                etcd_client::TxnOpResponse::Get(g) => {
                    g.kvs().first().is_some_and(|kv| kv.value() == me.as_bytes() && kv.lease() == lease)
                }
                _ => false,
            }),
            _ => false,
        }
    }
}

/// A `brokers/<id>` record.
fn parse_entry(key: &[u8], value: &[u8]) -> Option<(i32, Registration)> {
    let id = std::str::from_utf8(key.strip_prefix(BROKERS)?).ok()?.parse().ok()?;
    Some((id, serde_json::from_slice(value).ok()?))
}

/// Applies registrations and their expiries to `live`.
async fn follow(
    live: std::sync::Weak<RwLock<BTreeMap<i32, Registration>>>,
    mut feed: tokio::sync::mpsc::UnboundedReceiver<FeedEvent>,
) {
    while let Some(event) = feed.recv().await {
        let Some(live) = live.upgrade() else { return };
        let mut live = live.write().unwrap_or_else(|p| p.into_inner());
        match event {
            FeedEvent::Changes { changes, .. } => {
                for c in changes {
                    match &c.value {
                        Some(v) => {
                            if let Some((id, r)) = parse_entry(&c.key, v) {
                                info!(node_id = id, "broker joined the cluster");
                                // The registration was written a moment ago with its
                                // broker's wall clock: expiry uses each broker's clock.
                                let skew = crate::clock::Clock::now_ms(&crate::clock::SystemClock) - r.clock_ms;
                                if skew.abs() > 1_000 {
                                    warn!(
                                        node_id = id,
                                        skew_ms = skew,
                                        "a broker's clock differs from this one's by more than 1 s; token expiry depends on every broker's clock (run NTP)"
                                    );
                                }
                                live.insert(id, r);
                            }
                        }
                        None => {
                            if let Some(id) =
                                std::str::from_utf8(&c.key[BROKERS.len()..]).ok().and_then(|s| s.parse().ok())
                            {
                                info!(node_id = id, "broker left the cluster");
                                live.remove(&id);
                            }
                        }
                    }
                }
            }
            FeedEvent::Reload { records, .. } => {
                *live = records.iter().filter_map(|(k, v)| parse_entry(k, v)).collect();
            }
        }
    }
}

/// Keeps the lease alive, over a new stream (to any member) whenever one breaks; when
/// the lease is lost (etcd says it expired, or no keepalive got through for its TTL),
/// refuses writes and registers again. Ends when the broker leaves the cluster.
async fn keep_alive(c: Arc<Cluster>, registration: Registration) {
    let etcd = c.etcd.as_ref().expect("keep_alive runs on etcd");
    let mut stop = etcd.stop.subscribe();
    let ttl = Duration::from_secs(etcd.lease_ttl_s as u64);
    let period = ttl / 3;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        let lease = *etcd.lease.borrow();
        // One stream; returns why it ended: `true` when etcd says the lease is gone.
        let stream = async {
            let mut client = etcd.store.client();
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.map_err(|e| e.to_string())?;
            loop {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                match tokio::time::timeout(etcd.store.timeout(), stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = tokio::time::Instant::now(),
                    Ok(Ok(Some(_))) => return Ok::<bool, String>(true),
                    Ok(Ok(None)) => return Err("the keepalive stream ended".to_owned()),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("etcd did not answer a keepalive in time".to_owned()),
                }
                tokio::time::sleep(period).await;
            }
        };
        let outcome = tokio::select! {
            r = stream => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let lost = match outcome {
            Ok(expired) => expired,
            Err(e) => {
                // A broken stream is not a lost lease: try another while the lease lasts.
                if last_ok.elapsed() < ttl {
                    warn!(node_id = c.node_id, "the lease keepalive broke ({e}); reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
                true
            }
        };
        if !lost {
            continue;
        }
        // The lease is gone: writes answer 7 until this broker holds a lease again.
        etcd.store.set_writable(false);
        etcd.lease.send_replace(0);
        warn!(node_id = c.node_id, "the cluster registration lapsed; token writes answer 7 until it is renewed");
        loop {
            match c.try_register(&registration).await {
                Ok(lease) => {
                    etcd.lease.send_replace(lease);
                    etcd.store.set_writable(true);
                    last_ok = tokio::time::Instant::now();
                    info!(node_id = c.node_id, "registered in the cluster again");
                    break;
                }
                Err(e) => warn!(node_id = c.node_id, "cannot register yet: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
