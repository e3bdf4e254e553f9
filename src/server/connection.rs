//! One connection: read frames, authenticate, answer requests in order, close on
//! anything malformed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ResponseKind;
use ktb_protocol::frame::{begin_frame, decode_frame, finish_frame};
use ktb_protocol::request::{Request, parse_request};
use ktb_protocol::response::{encode_response, encode_unsupported_api_versions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, error};

use super::Broker;
use crate::api::{self, Context};
use crate::auth::sasl::{Action, Authenticator};
use crate::config::{HostPort, SecurityProtocol};

/// Serves one connection until the client leaves, it idles out (T-WIRE-5), it sends
/// something that closes it, or the broker stops. Requests are handled one at a time in
/// arrival order; frames a client pipelines wait in the read buffer (T-WIRE-4).
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    broker: Arc<Broker>,
    endpoint: &HostPort,
    protocol: SecurityProtocol,
    mut stream: S,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let mut auth = match protocol {
        SecurityProtocol::Plaintext => Authenticator::plaintext(peer),
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => Authenticator::sasl(peer),
    };
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let limit = auth.frame_limit(&broker);
        let frame = loop {
            match decode_frame(&mut buf, limit) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(e) => {
                    debug!(%peer, "closing: {e}");
                    return;
                }
            }
            let read = tokio::select! {
                r = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match read {
                Err(_) => {
                    debug!(%peer, "closing idle connection");
                    return;
                }
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(%peer, "read failed: {e}");
                    return;
                }
            }
        };

        // Work out the action; `header` is absent only for raw SASL frames.
        let (action, header) = if auth.expects_raw() {
            (auth.on_raw(&broker, &frame).await, None)
        } else {
            match parse_request(frame) {
                Ok(Request::UnsupportedApiVersions(header)) => {
                    (auth.on_unsupported_api_versions(&broker), Some(header))
                }
                Ok(Request::Api(header, body)) => {
                    let action = match auth.on_request(&broker, &header, &body).await {
                        Action::Serve => {
                            let ctx = Context { broker: &broker, endpoint, session: auth.session() };
                            match api::handle(&ctx, &header, *body).await {
                                Some(resp) => Action::Reply(resp),
                                None => {
                                    debug!(%peer, key = ?header.api_key, version = header.version, "closing: not served");
                                    return;
                                }
                            }
                        }
                        other => other,
                    };
                    (action, Some(header))
                }
                Err(e) => {
                    debug!(%peer, "closing: {e}");
                    return;
                }
            }
        };

        let encode = |resp: &ResponseKind| {
            header.as_ref().map(|h| encode_response(h.correlation_id, h.api_key, h.version, resp))
        };
        let (bytes, close) = match action {
            Action::Reply(resp) => (encode(&resp), false),
            Action::ReplyUnsupportedApiVersions => {
                (header.as_ref().map(|h| encode_unsupported_api_versions(h.correlation_id)), false)
            }
            Action::RawReply(raw) => {
                let mut b = BytesMut::with_capacity(raw.len() + 4);
                let start = begin_frame(&mut b);
                b.extend_from_slice(&raw);
                finish_frame(&mut b, start);
                (Some(Ok(b)), false)
            }
            Action::FailAndClose(resp) => {
                // T-SASL-11: slow down guessing; only this connection waits.
                let delay = broker.config.failed_authentication_delay_ms.max(0) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                (resp.as_ref().and_then(encode), true)
            }
            // Serve was turned into a reply above.
            Action::Close | Action::Serve => return,
        };
        if let Some(encoded) = bytes {
            let encoded = match encoded {
                Ok(b) => b,
                Err(e) => {
                    error!(%peer, "{e}");
                    return;
                }
            };
            if let Err(e) = stream.write_all(&encoded).await {
                debug!(%peer, "write failed: {e}");
                return;
            }
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
