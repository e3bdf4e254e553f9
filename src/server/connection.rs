//! One connection: read frames, authenticate, answer requests in order, close on
//! anything malformed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{MetadataRequest, RequestKind, ResponseKind};
use ktb_protocol::answers::top_level_error_code;
use ktb_protocol::error_code;
use ktb_protocol::frame::{begin_frame, decode_frame, finish_frame};
use ktb_protocol::metadata::MetadataTopics;
use ktb_protocol::request::{Header, Request, parse_request_with};
use ktb_protocol::response::{EncodeError, encode_metadata_response, encode_response, encode_unsupported_api_versions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, error, info};

use super::limits::write_with_deadline;
use crate::api::{self, Context};
use crate::audit::{Caller, Subject};
use crate::auth::sasl::LoginOutcome;
use crate::auth::sasl::{Action, Authenticator};
use crate::broker::Broker;
use crate::config::{HostPort, SecurityProtocol};

/// The bodies worth decoding before a connection has authenticated: the others get an
/// error answer that needs only the header, so a large one costs no decoding (T-LIMIT-2).
fn decoded_before_authentication(key: ApiKey) -> bool {
    matches!(key, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

/// The token a session logged in with, and its expiry as it changes (D-22).
type Revocation = Option<(String, watch::Receiver<i64>)>;

/// Waits until the token the connection logged in with is deleted or expires (D-22);
/// forever when it did not log in with a token.
async fn revoked(broker: &Broker, signal: &mut Revocation) {
    let Some((id, rx)) = signal else { return std::future::pending().await };
    let mut expiry = *rx.borrow_and_update();
    loop {
        if expiry == crate::tokens::DELETED {
            return;
        }
        // Expired once the broker's clock passes the expiry; the store has the last word
        // then (it also catches a change the signal has not carried yet).
        tokio::select! {
            changed = rx.changed() => {
                // A dropped sender means the broker's tokens are gone: treated as revoked.
                if changed.is_err() {
                    return;
                }
                expiry = *rx.borrow_and_update();
            }
            _ = broker.clock.sleep_until(expiry.saturating_add(1)) => {
                match broker.tokens.live_until(id, broker.clock.now_ms()).await {
                    // Live means its expiry is now or later: never a wait in the past.
                    Some(current) => expiry = current,
                    None => return,
                }
            }
        }
    }
}

/// Serves one connection until the client leaves, it idles out (T-WIRE-5), it sends
/// something that closes it, its token is revoked (D-22), it stops taking its answers
/// (T-LIMIT-3), or the broker stops. Requests are handled one at a time in arrival
/// order; frames a client pipelines wait in the read buffer (T-WIRE-4).
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    broker: Arc<Broker>,
    listener: &str,
    endpoint: &HostPort,
    protocol: SecurityProtocol,
    mut stream: S,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let write_deadline = idle.min(Duration::from_millis(broker.config.write_timeout_ms.max(1) as u64));
    let mut revocation: Revocation = None;
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
                _ = revoked(&broker, &mut revocation) => {
                    info!(%peer, "closing: the session's token was expired or deleted");
                    return;
                }
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

        let started = Instant::now();
        // D-22: a request that was already waiting when the session's token was expired
        // or deleted is not served.
        if token_gone(&broker, &revocation) {
            info!(%peer, "closing: the session's token was expired or deleted");
            return;
        }

        // Work out the action; `header` is absent only for raw SASL frames.
        let (action, header) = if auth.expects_raw() {
            (auth.on_raw(&broker, &frame).await, None)
        } else {
            let complete = auth.is_complete();
            match parse_request_with(frame, |key| complete || decoded_before_authentication(key)) {
                Ok(Request::UnsupportedApiVersions(header)) => {
                    (auth.on_unsupported_api_versions(&broker), Some(header))
                }
                Ok(Request::Api(header, body)) => {
                    let action = match auth.on_request(&broker, &header, &body).await {
                        Action::Serve => {
                            let ctx = Context { broker: &broker, endpoint, listener, peer, session: auth.session() };
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
                Ok(Request::Metadata(header, req, topics)) => {
                    let action = match auth.on_request(&broker, &header, &RequestKind::Metadata((*req).clone())).await {
                        Action::Serve => {
                            let ctx = Context { broker: &broker, endpoint, listener, peer, session: auth.session() };
                            match metadata_answer(&ctx, &header, &req, &topics) {
                                Some(Ok(frame)) => Action::ReplyEncoded(frame),
                                Some(Err(e)) => {
                                    error!(%peer, "{e}");
                                    return;
                                }
                                None => {
                                    debug!(%peer, "closing: a Metadata topic without a name below v12");
                                    return;
                                }
                            }
                        }
                        other => other,
                    };
                    (action, Some(header))
                }
                Ok(Request::Undecoded(header)) => (auth.on_undecoded(&header), Some(header)),
                Err(e) => {
                    debug!(%peer, "closing: {e}");
                    return;
                }
            }
        };
        if let Some(outcome) = auth.take_outcome() {
            record_login(&broker, &outcome, peer, listener).await;
        }
        if !watch_token(&broker, &auth, &mut revocation).await {
            info!(%peer, "closing: the session's token was expired or deleted");
            return;
        }

        // What metrics count the request under: an ApiVersions at an unknown version is
        // answered at version 0.
        let counted = header.as_ref().map(|h| {
            let code = match &action {
                Action::Reply(r) | Action::FailAndClose(Some(r)) => top_level_error_code(r),
                Action::ReplyUnsupportedApiVersions => error_code::UNSUPPORTED_VERSION,
                _ => error_code::NONE,
            };
            let version = if matches!(action, Action::ReplyUnsupportedApiVersions) { 0 } else { h.version };
            (h.api_key, version, code)
        });
        let mut delayed = Duration::ZERO;
        let encode = |resp: &ResponseKind| {
            header.as_ref().map(|h| encode_response(h.correlation_id, h.api_key, h.version, resp))
        };
        let (bytes, close) = match action {
            Action::Reply(resp) => (encode(&resp), false),
            Action::ReplyEncoded(frame) => (Some(Ok(frame)), false),
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
                delayed = Duration::from_millis(broker.config.failed_authentication_delay_ms.max(0) as u64);
                tokio::time::sleep(delayed).await;
                (resp.as_ref().and_then(encode), true)
            }
            // Serve was turned into a reply above.
            Action::Close | Action::Serve => return,
        };
        if let Some((key, version, code)) = counted {
            broker.metrics.request(key, version, code, started.elapsed().saturating_sub(delayed));
        }
        if let Some(encoded) = bytes {
            let encoded = match encoded {
                Ok(b) => b,
                Err(e) => {
                    error!(%peer, "{e}");
                    return;
                }
            };
            if let Err(e) = write_with_deadline(&mut stream, &encoded, write_deadline).await {
                // Returning drops the answer and the buffers with the connection.
                debug!(%peer, "closing: {e}");
                return;
            }
        }
        if close {
            // A TLS close_notify waits for the socket too: bounded like any write.
            let _ = tokio::time::timeout(write_deadline, stream.shutdown()).await;
            return;
        }
    }
}

/// Counts a finished SASL exchange and writes a failed one to the audit log (T-LIFE-3,
/// T-OPS-2).
async fn record_login(broker: &Broker, o: &LoginOutcome, client: SocketAddr, listener: &str) {
    broker.metrics.login(o.mechanism, o.token, o.reauth, o.ok);
    if o.ok || o.unreachable {
        return;
    }
    let name = o.user.as_deref();
    let subject = if o.token {
        Subject { token_id: name, owner: o.owner.as_ref(), ..Subject::default() }
    } else {
        Subject { user: name, ..Subject::default() }
    };
    let code = match o.mechanism {
        None => error_code::UNSUPPORTED_SASL_MECHANISM,
        Some(_) => error_code::SASL_AUTHENTICATION_FAILED,
    };
    broker.audit.login_failed(subject, &Caller { principal: None, client, listener }, code).await;
}

/// The encoded answer to a Metadata request; `None` when the request closes the
/// connection instead (a topic without a name below v12).
fn metadata_answer(
    ctx: &Context<'_>,
    header: &Header,
    req: &MetadataRequest,
    topics: &MetadataTopics,
) -> Option<Result<BytesMut, EncodeError>> {
    let (resp, unknown) = api::metadata::handle(ctx, header.version, req, topics)?;
    Some(encode_metadata_response(header.correlation_id, header.version, &resp, &unknown))
}

/// True when the session's token is deleted or past its expiry, as its revocation signal
/// tells (no store read: the signal follows every change to the token).
fn token_gone(broker: &Broker, revocation: &Revocation) -> bool {
    revocation.as_ref().is_some_and(|(_, rx)| {
        let expiry = *rx.borrow();
        expiry == crate::tokens::DELETED || expiry < broker.clock.now_ms()
    })
}

/// Keeps `revocation` on the token the session logged in with (D-22): subscribed once per
/// token, so a re-authentication with another token follows it. False when the token is
/// already gone.
async fn watch_token(broker: &Broker, auth: &Authenticator, revocation: &mut Revocation) -> bool {
    let Some(id) = auth.session().token_id.as_deref() else {
        *revocation = None;
        return true;
    };
    if revocation.as_ref().is_some_and(|(watched, _)| watched == id) {
        return true;
    }
    let rx = broker.tokens.revocation(id, broker.clock.now_ms()).await;
    let live = *rx.borrow() != crate::tokens::DELETED;
    *revocation = Some((id.to_owned(), rx));
    live
}
