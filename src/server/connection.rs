//! One connection: read frames, answer them in order, close on anything malformed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ktb_protocol::frame::decode_frame;
use ktb_protocol::request::{Request, parse_request};
use ktb_protocol::response::{encode_response, encode_unsupported_api_versions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, error};

use super::Broker;
use crate::api::{self, Context};
use crate::auth::Session;
use crate::config::HostPort;

/// Serves one connection until the client leaves, it idles out (T-WIRE-5), it sends
/// something that closes it, or the broker stops. Requests are handled one at a time in
/// arrival order; frames a client pipelines wait in the read buffer (T-WIRE-4).
pub(super) async fn serve(
    broker: Arc<Broker>,
    endpoint: &HostPort,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let session = Session::plaintext();
    // PLAINTEXT connections never authenticate, so the post-authentication limit applies.
    let limit = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
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

        let encoded = match parse_request(frame) {
            Ok(Request::UnsupportedApiVersions(header)) => encode_unsupported_api_versions(header.correlation_id),
            Ok(Request::Api(header, body)) => {
                let ctx = Context {
                    broker: &broker,
                    endpoint,
                    session: &session,
                };
                let (key, version, correlation_id) = (header.api_key, header.version, header.correlation_id);
                match api::handle(&ctx, &header, *body) {
                    Some(resp) => encode_response(correlation_id, key, version, &resp),
                    None => {
                        debug!(%peer, ?key, version, "closing: request not served on this connection");
                        return;
                    }
                }
            }
            Err(e) => {
                debug!(%peer, "closing: {e}");
                return;
            }
        };
        let bytes = match encoded {
            Ok(b) => b,
            Err(e) => {
                error!(%peer, "{e}");
                return;
            }
        };
        if let Err(e) = stream.write_all(&bytes).await {
            debug!(%peer, "write failed: {e}");
            return;
        }
    }
}
