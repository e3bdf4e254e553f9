//! `ktb health`: asks a broker's metrics listener whether it is ready, for container
//! health checks (the runtime image has no curl).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;

/// The most of an answer's body read.
const MAX_BODY: usize = 64 * 1024;

/// Why no status could be read.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The URL is not one this client can ask (exit 2).
    #[error("{0}")]
    BadUrl(String),
    /// Nothing answered, or not in time (exit 3).
    #[error("{0}")]
    NoAnswer(String),
}

/// GETs `url` (`http://host:port/path`) within `timeout`; returns the status code and the
/// body's text.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, String), HealthError> {
    tokio::time::timeout(timeout, fetch(url))
        .await
        .map_err(|_| HealthError::NoAnswer(format!("no answer from {url} within {} ms", timeout.as_millis())))?
}

/// `body` safe for a terminal: control characters other than newlines shown as `?`.
pub fn printable(body: &str) -> String {
    body.chars().map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect()
}

async fn fetch(url: &str) -> Result<(u16, String), HealthError> {
    let bad = |why: String| HealthError::BadUrl(why);
    let uri: Uri = url.parse().map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(format!("{url:?}: only http:// URLs are supported")));
    }
    let host = uri.host().ok_or_else(|| bad(format!("{url:?} has no host")))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = uri.port_u16().unwrap_or(80);
    let none = |why: String| HealthError::NoAnswer(why);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| none(format!("cannot connect to {host}:{port}: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| none(e.to_string()))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| bad(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| none(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| none(format!("{url}: reading the answer: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
