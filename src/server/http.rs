//! The metrics listener (T-OPS-1): `/metrics`, `/healthz` and `/readyz` over HTTP/1.1.
//!
//! It is bound before the store is opened, so an orchestrator sees a live process that is
//! not ready yet while tokens load. Like the Kafka listeners it is bounded (§9.1): a few
//! connections at a time, fewer per client address, two kept for loopback (the container's
//! own health check), more closed at once; a deadline on the request head and on the
//! whole connection; small buffers; no request body is ever read. The store is asked at
//! most once a second however many probes and scrapes arrive.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::broker::{Broker, StartupError};
use crate::config::HostPort;
use crate::metrics::{CONTENT_TYPE as METRICS_TYPE, Metrics, Snapshot};
use crate::store::Store;

/// Connections served at once; a scraper and a prober need two.
const MAX_CONNECTIONS: usize = 16;
/// Connections from one client address.
const MAX_PER_ADDRESS: usize = 4;
/// Connections only loopback clients may take.
const LOOPBACK_RESERVE: usize = 2;
/// How long one answer of the store serves the probes.
const STORE_CHECK_FRESH: Duration = Duration::from_secs(1);
/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open, keep-alive included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `/readyz` and `/metrics` wait for the store to answer.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probes know about the broker: nothing until it has started.
#[derive(Default)]
pub struct Probe {
    broker: OnceLock<Weak<Broker>>,
    stopping: AtomicBool,
    /// The last check of the store and when it was made; held while a check runs, so
    /// concurrent probes share one.
    store_check: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// The connections open, in all and per client address.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Open`], given back on drop.
struct Admitted {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Admitted {
    /// A place for a connection from `ip`, if the limits leave one.
    fn try_new(open: &Arc<Mutex<Open>>, ip: IpAddr) -> Option<Admitted> {
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        let limit = if ip.is_loopback() { MAX_CONNECTIONS } else { MAX_CONNECTIONS - LOOPBACK_RESERVE };
        let mine = o.by_address.get(&ip).copied().unwrap_or(0);
        if o.total >= limit || mine >= MAX_PER_ADDRESS {
            return None;
        }
        o.total += 1;
        *o.by_address.entry(ip).or_default() += 1;
        Some(Admitted { open: open.clone(), ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.total -= 1;
        if let Some(n) = o.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.by_address.remove(&self.ip);
            }
        }
    }
}

impl Probe {
    /// The broker has loaded its store and registered: the probes may ask it.
    pub fn started(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// The broker is shutting down: `/readyz` answers 503 from now on.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The broker, once started and until it stops.
    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }
}

/// How long `/keys` may take (fingerprints of new keys, a read of etcd).
const KEYS_TIMEOUT: Duration = Duration::from_secs(8);

/// Binds the metrics listener.
pub async fn bind(addr: &HostPort) -> Result<TcpListener, StartupError> {
    let host = addr.bind_host();
    TcpListener::bind((host, addr.port))
        .await
        .map_err(|e| StartupError(format!("ktb.metrics.listener: cannot bind {host}:{}: {e}", addr.port)))
}

/// Serves the metrics listener until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, probe: Arc<Probe>) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics, health and readiness on http://{addr} (/metrics, /healthz, /readyz)");
    }
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = Admitted::try_new(&open, peer.ip()) else {
            debug!(%peer, "metrics listener: too many connections; closing");
            continue;
        };
        let (metrics, probe) = (metrics.clone(), probe.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (metrics, probe) = (metrics.clone(), probe.clone());
                async move { Ok::<_, Infallible>(answer(&req, &metrics, &probe, peer.ip()).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => debug!(%peer, "metrics listener: {e}"),
                Err(_) => debug!(%peer, "metrics listener: connection open too long; closed"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    resp
}

async fn answer(req: &Request<Incoming>, metrics: &Metrics, probe: &Probe, peer: IpAddr) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD\n".into());
        resp.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/metrics" => {
            let snapshot = match probe.broker() {
                Some(b) if !probe.stopping.load(Ordering::SeqCst) => {
                    let (tokens, brokers, store) = (b.tokens.len(), b.cluster.size().max(1), b.store.clone());
                    let audit_write_errors = b.audit.write_errors();
                    // Not held across the store check: a scrape never delays shutdown.
                    drop(b);
                    let store_up = probe.store_answers(store).await.is_ok();
                    Some(Snapshot { tokens, brokers, store_up, audit_write_errors })
                }
                _ => None,
            };
            text(StatusCode::OK, METRICS_TYPE, metrics.encode(snapshot))
        }
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match readiness(probe).await {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("not ready: {reason}\n")),
        },
        // Key ids, fingerprints and token counts: for the operator on the broker's host
        // (`ktb secret status --url`), not for whoever can reach the scrape port.
        "/keys" if !peer.to_canonical().is_loopback() => {
            text(StatusCode::FORBIDDEN, PLAIN, "/keys answers loopback clients only (ktb secret status)\n".into())
        }
        "/keys" => {
            let rotation = probe.broker().map(|b| (b.rotation.clone(), b.clock.now_ms()));
            match rotation {
                None => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready: the broker is starting\n".into()),
                Some((rotation, now)) => match tokio::time::timeout(KEYS_TIMEOUT, rotation.status(now)).await {
                    Ok(Ok(status)) => text(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string(&status).unwrap_or_default() + "\n",
                    ),
                    Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{e}\n")),
                    Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "the key status took too long\n".into()),
                },
            }
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

impl Probe {
    /// Whether the store answers a barrier (a linearizable read on etcd) in time; one
    /// answer serves every probe for [`STORE_CHECK_FRESH`].
    async fn store_answers(&self, store: Arc<dyn Store>) -> Result<(), String> {
        let mut last = self.store_check.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < STORE_CHECK_FRESH
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.barrier()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the store does not answer: {e}")),
            Err(_) => Err(format!("the store did not answer within {} s", STORE_PROBE_TIMEOUT.as_secs())),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// T-OPS-1: ready once the tokens are loaded, while the store answers, the broker holds
/// its registration and no record of a newer schema has been seen (§9.7). Not ready
/// names every reason that applies.
async fn readiness(probe: &Probe) -> Result<(), String> {
    if probe.stopping.load(Ordering::SeqCst) {
        return Err("shutting down".into());
    }
    let Some(b) = probe.broker() else {
        return Err("starting: the store and the tokens are loading".into());
    };
    let mut reasons = Vec::new();
    if !b.cluster.registered() {
        reasons.push("this broker's cluster registration has lapsed".to_owned());
    }
    if b.tokens.newer_schema_seen() {
        reasons.push("a token record of a newer schema was seen; upgrade this broker".to_owned());
    }
    let store = b.store.clone();
    drop(b);
    if let Err(e) = probe.store_answers(store).await {
        reasons.insert(0, e);
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons.join("; ")) }
}
