//! The metrics listener (T-OPS-1): `/metrics`, `/healthz` and `/readyz` over HTTP/1.1.
//!
//! It is bound before the store is opened, so an orchestrator sees a live process that is
//! not ready yet while tokens load. Like the Kafka listeners it is bounded (§9.1): a few
//! connections at a time (more are closed at once), a deadline on the request head and
//! on the whole connection, small buffers, and no request body is ever read.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::broker::{Broker, StartupError};
use crate::config::HostPort;
use crate::metrics::{CONTENT_TYPE as METRICS_TYPE, Metrics, Snapshot};

/// Connections served at once; a scraper and a prober need two.
const MAX_CONNECTIONS: usize = 16;
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

/// Binds the metrics listener.
pub async fn bind(addr: &HostPort) -> Result<TcpListener, StartupError> {
    let host = if addr.host.is_empty() { "0.0.0.0" } else { addr.host.as_str() };
    TcpListener::bind((host, addr.port))
        .await
        .map_err(|e| StartupError(format!("ktb.metrics.listener: cannot bind {host}:{}: {e}", addr.port)))
}

/// Serves the metrics listener until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, probe: Arc<Probe>) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics, health and readiness on http://{addr} (/metrics, /healthz, /readyz)");
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "metrics listener: too many connections; closing");
            continue;
        };
        let (metrics, probe) = (metrics.clone(), probe.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (metrics, probe) = (metrics.clone(), probe.clone());
                async move { Ok::<_, Infallible>(answer(&req, &metrics, &probe).await) }
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

async fn answer(req: &Request<Incoming>, metrics: &Metrics, probe: &Probe) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD\n".into());
        resp.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/metrics" => {
            let snapshot = match probe.broker() {
                Some(b) => Some(snapshot(&b).await),
                None => None,
            };
            text(StatusCode::OK, METRICS_TYPE, metrics.encode(snapshot))
        }
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match readiness(probe).await {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("not ready: {reason}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

/// Whether the store answers a barrier (a linearizable read on etcd) in time.
async fn store_answers(b: &Broker) -> Result<(), String> {
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, b.store.barrier()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the store does not answer: {e}")),
        Err(_) => Err(format!("the store did not answer within {} s", STORE_PROBE_TIMEOUT.as_secs())),
    }
}

async fn snapshot(b: &Broker) -> Snapshot {
    Snapshot { tokens: b.tokens.len(), brokers: b.cluster.size().max(1), store_up: store_answers(b).await.is_ok() }
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
    if let Err(e) = store_answers(&b).await {
        reasons.push(e);
    }
    if !b.cluster.registered() {
        reasons.push("this broker's cluster registration has lapsed".to_owned());
    }
    if b.tokens.newer_schema_seen() {
        reasons.push("a token record of a newer schema was seen; upgrade this broker".to_owned());
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons.join("; ")) }
}
