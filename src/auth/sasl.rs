//! The per-connection SASL state machine (SPEC §3.1–3.3, §3.9).
//!
//! It takes decoded requests (or raw SASL frames after a v0 handshake) and returns what
//! the connection should do; it never touches a socket. The connection task performs the
//! action, including the failed-authentication delay.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kafka_protocol::messages::{RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::plain::parse_plain;
use ktb_protocol::request::Header;
use ktb_protocol::scram::{self, ScramError, ScramMechanism, ServerFirstSent};
use ktb_protocol::{answers, error_code};
use tracing::{info, warn};

use super::{Identity, Principal, Session};
use crate::broker::Broker;
use crate::config::Mechanism;
use crate::logsafe::Untrusted;

/// The largest SCRAM client-first accepted: a name, a nonce and extensions fit in far less.
pub const MAX_SCRAM_CLIENT_FIRST: usize = 16 * 1024;

/// What the connection should do with a frame.
#[derive(Debug)]
pub enum Action {
    /// Send this response and carry on.
    Reply(ResponseKind),
    /// Send this already encoded response frame and carry on.
    ReplyEncoded(bytes::BytesMut),
    /// Send these raw SASL bytes as a frame (handshake v0) and carry on.
    RawReply(Vec<u8>),
    /// Answer ApiVersions at an unknown version (T-APIV-4) and carry on.
    ReplyUnsupportedApiVersions,
    /// Authentication failed: wait `connection.failed.authentication.delay.ms`, send this
    /// response if there is one, then close (T-SASL-11).
    FailAndClose(Option<ResponseKind>),
    /// Close at once without a response.
    Close,
    /// The connection is authenticated: hand the request to the API layer.
    Serve,
}

enum Step {
    ScramFirst(ScramMechanism),
    ScramFinal(Box<ServerFirstSent>, Option<Identity>),
    Plain,
}

struct Exchange {
    mechanism: Mechanism,
    /// Handshake v0: SASL messages arrive as raw frames.
    raw: bool,
    reauth: bool,
    step: Step,
}

enum State {
    /// Fresh, or after an ApiVersions error reply: ApiVersions or SaslHandshake.
    VersionsOrHandshake,
    /// After a successful ApiVersions: only SaslHandshake.
    Handshake,
    /// After SaslHandshake: the mechanism's messages.
    Authenticating(Exchange),
    /// A re-authentication handshake named a mechanism other than the original one: the
    /// next frame closes the connection (T-REAUTH-4).
    ReauthWithOtherMechanism,
    /// Authenticated.
    Complete,
}

/// How a SASL exchange ended, for the metrics and the audit log (the connection loop
/// records it; this state machine only reports it).
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The mechanism; `None` for one that is not enabled.
    pub mechanism: Option<Mechanism>,
    /// A delegation token was (or was tried as) the credential.
    pub token: bool,
    /// A re-authentication (KIP-368).
    pub reauth: bool,
    /// True for a login that succeeded.
    pub ok: bool,
    /// The store could not be read to decide it: the connection closed without an answer
    /// (counted as a failure, but no login failed).
    pub unreachable: bool,
    /// The user name a failed login tried, when it got that far (client-controlled).
    pub user: Option<String>,
    /// The owner of the token a failed login named, when the token exists.
    pub owner: Option<Principal>,
}

impl LoginOutcome {
    /// A failed exchange that named no user.
    fn failed(mechanism: Option<Mechanism>, token: bool, reauth: bool) -> LoginOutcome {
        LoginOutcome { mechanism, token, reauth, ok: false, unreachable: false, user: None, owner: None }
    }
}

/// One connection's authentication state.
pub struct Authenticator {
    peer: SocketAddr,
    /// The end of the last exchange, until the connection loop takes it.
    outcome: Option<LoginOutcome>,
    /// What the failing step knew about the name tried: (name, token owner).
    attempt: Option<(String, Option<Principal>)>,
    state: State,
    session: Session,
    mechanism: Option<Mechanism>,
    /// When the session ends (absent: it never does).
    session_expiry_ms: Option<i64>,
    last_reauth_start_ms: Option<i64>,
}

/// The session lifetime and expiry for an authentication completing at `now`
/// (T-REAUTH-1), with the lifetime clamped to `i32::MAX` ms (D-19).
pub fn session_lifetime(now: i64, max_reauth_ms: i64, token_expiry_ms: Option<i64>) -> (i64, Option<i64>) {
    let lifetime = match (token_expiry_ms, max_reauth_ms > 0) {
        (None, false) => return (0, None),
        (None, true) => max_reauth_ms,
        (Some(x), false) => x.saturating_sub(now).max(0),
        (Some(x), true) => x.saturating_sub(now).min(max_reauth_ms).max(0),
    };
    let lifetime = lifetime.min(i32::MAX as i64);
    (lifetime, Some(now.saturating_add(lifetime)))
}

fn mechanism_names(broker: &Broker) -> Vec<StrBytes> {
    broker.config.sasl_mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect()
}

fn scram_of(m: Mechanism) -> Option<ScramMechanism> {
    match m {
        Mechanism::ScramSha256 => Some(ScramMechanism::Sha256),
        Mechanism::ScramSha512 => Some(ScramMechanism::Sha512),
        Mechanism::Plain => None,
    }
}

/// A fresh 128-bit server nonce in URL-safe base64 (T-SCRAM-7).
fn server_nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Why a SASL message failed, mapped to the text the client sees (SPEC §3.7).
enum Failure {
    Generic,
    Specific(String),
    /// The store could not be read: close without an answer (T-CLUSTER-7).
    Unreachable,
}

/// Why a SASL step failed.
enum StepError {
    /// The client gets this message (58), then the connection closes.
    Failed(String),
    /// The store could not be read: the connection closes without an answer, so a client
    /// retries another broker instead of giving up on a 58 (T-CLUSTER-7, §9.7).
    Unreachable,
}

impl Authenticator {
    /// A connection on a SASL listener, not yet authenticated.
    pub fn sasl(peer: SocketAddr) -> Self {
        Authenticator {
            peer,
            outcome: None,
            attempt: None,
            state: State::VersionsOrHandshake,
            session: Session::plaintext(),
            mechanism: None,
            session_expiry_ms: None,
            last_reauth_start_ms: None,
        }
    }

    /// A connection on a PLAINTEXT listener: authenticated as `User:ANONYMOUS` at once.
    pub fn plaintext(peer: SocketAddr) -> Self {
        Authenticator { state: State::Complete, ..Self::sasl(peer) }
    }

    /// How the last SASL exchange ended, once, after the action that ended it.
    pub fn take_outcome(&mut self) -> Option<LoginOutcome> {
        self.outcome.take()
    }

    /// The session, meaningful once [`Action::Serve`] has been returned.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// True when the next frame is a raw SASL message (after a v0 handshake).
    pub fn expects_raw(&self) -> bool {
        matches!(&self.state, State::Authenticating(e) if e.raw)
    }

    /// The frame size limit in force (T-WIRE-2).
    pub fn frame_limit(&self, broker: &Broker) -> i32 {
        match self.state {
            State::Complete => broker.config.socket_request_max_bytes,
            _ => broker.config.sasl_server_max_receive_size,
        }
    }

    fn expired(&self, now: i64) -> bool {
        self.session_expiry_ms.is_some_and(|e| now > e)
    }

    /// ApiVersions at a version outside 0–4.
    pub fn on_unsupported_api_versions(&mut self, broker: &Broker) -> Action {
        match self.state {
            State::VersionsOrHandshake => Action::ReplyUnsupportedApiVersions,
            State::Complete if self.expired(broker.clock.now_ms()) => Action::Close,
            State::Complete => Action::ReplyUnsupportedApiVersions,
            _ => Action::Close,
        }
    }

    /// A decoded request.
    pub async fn on_request(&mut self, broker: &Broker, header: &Header, body: &RequestKind) -> Action {
        let now = broker.clock.now_ms();
        match &mut self.state {
            State::VersionsOrHandshake | State::Handshake => self.pre_auth(broker, header, body),
            State::ReauthWithOtherMechanism => Action::Close,
            State::Authenticating(e) if e.raw => Action::Close,
            State::Authenticating(_) => match body {
                RequestKind::SaslAuthenticate(req) => {
                    let version = header.version;
                    match self.step(broker, &req.auth_bytes).await {
                        Err(StepError::Unreachable) => Action::Close,
                        Ok((bytes, lifetime)) => {
                            let mut resp = SaslAuthenticateResponse::default()
                                .with_error_message(None)
                                .with_auth_bytes(bytes.into());
                            if version >= 1 {
                                resp.session_lifetime_ms = lifetime;
                            }
                            Action::Reply(resp.into())
                        }
                        Err(StepError::Failed(message)) => Action::FailAndClose(Some(
                            SaslAuthenticateResponse::default()
                                .with_error_code(error_code::SASL_AUTHENTICATION_FAILED)
                                .with_error_message(Some(StrBytes::from_string(message)))
                                .into(),
                        )),
                    }
                }
                // T-REAUTH-6 and §3.1: another request mid-exchange gets 34, then close.
                _ => Self::unexpected_during_exchange(header),
            },
            State::Complete => match body {
                RequestKind::SaslHandshake(req) if self.may_begin_reauth(now, header.version) => {
                    self.last_reauth_start_ms = Some(now);
                    self.handshake(broker, header.version, req.mechanism.as_str(), true)
                }
                _ if self.expired(now) => {
                    info!(peer = %self.peer, principal = %self.session.principal.logged(), "session expired; closing");
                    Action::Close
                }
                _ => Action::Serve,
            },
        }
    }

    /// True once the connection may send requests beyond authentication: only then are
    /// bodies of other APIs worth decoding (T-LIMIT-2).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// A request whose body was not decoded because the connection has not authenticated
    /// (T-LIMIT-2): before the handshake it closes the connection (T-SASL-1); during an
    /// exchange it gets 34 with no per-entry results, then the connection closes.
    pub fn on_undecoded(&mut self, header: &Header) -> Action {
        match &self.state {
            State::Authenticating(e) if !e.raw => Self::unexpected_during_exchange(header),
            _ => Action::Close,
        }
    }

    fn unexpected_during_exchange(header: &Header) -> Action {
        Action::FailAndClose(answers::error_response(
            header,
            error_code::ILLEGAL_SASL_STATE,
            &format!("Unexpected Kafka request of type {} during SASL handshake.", answers::kafka_name(header.api_key)),
        ))
    }

    /// T-REAUTH-3: a v1 handshake on a session that has an expiry, at least one second
    /// after the previous re-authentication began.
    fn may_begin_reauth(&self, now: i64, version: i16) -> bool {
        version >= 1
            && self.session_expiry_ms.is_some()
            && self.last_reauth_start_ms.is_none_or(|last| now.saturating_sub(last) >= 1000)
    }

    fn pre_auth(&mut self, broker: &Broker, header: &Header, body: &RequestKind) -> Action {
        match (&self.state, body) {
            (State::VersionsOrHandshake, RequestKind::ApiVersions(req)) => {
                let resp = answers::api_versions(header.version, req);
                self.state = if answers::is_error(&resp) { State::VersionsOrHandshake } else { State::Handshake };
                Action::Reply(resp.into())
            }
            (_, RequestKind::SaslHandshake(req)) => {
                self.handshake(broker, header.version, req.mechanism.as_str(), false)
            }
            // A second ApiVersions, or anything else before the handshake (T-SASL-1).
            _ => Action::Close,
        }
    }

    fn handshake(&mut self, broker: &Broker, version: i16, name: &str, reauth: bool) -> Action {
        let enabled = broker.config.sasl_mechanisms.iter().copied().find(|m| m.name() == name);
        let resp = SaslHandshakeResponse::default().with_mechanisms(mechanism_names(broker));
        let Some(mechanism) = enabled else {
            info!(peer = %self.peer, mechanism = %Untrusted(name), "unsupported SASL mechanism");
            self.outcome = Some(LoginOutcome::failed(None, false, reauth));
            return Action::FailAndClose(Some(resp.with_error_code(error_code::UNSUPPORTED_SASL_MECHANISM).into()));
        };
        if reauth && self.mechanism != Some(mechanism) {
            // T-REAUTH-4: the connection closes at its next frame; the re-authentication failed.
            self.outcome = Some(LoginOutcome::failed(Some(mechanism), self.session.token_authenticated(), reauth));
            self.state = State::ReauthWithOtherMechanism;
            return Action::Reply(resp.into());
        }
        let step = match scram_of(mechanism) {
            Some(m) => Step::ScramFirst(m),
            None => Step::Plain,
        };
        self.state = State::Authenticating(Exchange { mechanism, raw: version == 0, reauth, step });
        Action::Reply(resp.into())
    }

    /// A raw SASL frame after a v0 handshake: raw reply, or close with no response.
    pub async fn on_raw(&mut self, broker: &Broker, bytes: &[u8]) -> Action {
        match self.step(broker, bytes).await {
            Ok((reply, _)) => Action::RawReply(reply),
            Err(StepError::Unreachable) => Action::Close,
            Err(StepError::Failed(_)) => Action::FailAndClose(None),
        }
    }

    /// Feeds one client message to the exchange, noting how the exchange ended if it did.
    async fn step(&mut self, broker: &Broker, msg: &[u8]) -> Result<(Vec<u8>, i64), StepError> {
        let State::Authenticating(e) = &self.state else { return self.exchange(broker, msg).await };
        let (mechanism, reauth) = (e.mechanism, e.reauth);
        let tried_token = match &e.step {
            Step::ScramFinal(sent, identity) => {
                identity.as_ref().map_or(sent.client_first().token_auth, Identity::token_authenticated)
            }
            _ => false,
        };
        self.attempt = None;
        let result = self.exchange(broker, msg).await;
        let outcome = |ok, unreachable, token, attempt: Option<(String, Option<Principal>)>| {
            let (user, owner) = attempt.map_or((None, None), |(u, o)| (Some(u), o));
            Some(LoginOutcome { mechanism: Some(mechanism), token, reauth, ok, unreachable, user, owner })
        };
        match &result {
            Ok(_) if self.is_complete() => {
                self.outcome = outcome(true, false, self.session.token_authenticated(), None);
            }
            Ok(_) => {}
            Err(StepError::Failed(_)) => {
                let attempt = self.attempt.take();
                let token = tried_token || attempt.as_ref().is_some_and(|(_, owner)| owner.is_some());
                self.outcome = outcome(false, false, token, attempt);
            }
            Err(StepError::Unreachable) => self.outcome = outcome(false, true, tried_token, None),
        }
        result
    }

    /// Feeds one client message to the exchange. Returns the server's reply and, when the
    /// exchange completes, the session lifetime; or the client-visible failure message.
    async fn exchange(&mut self, broker: &Broker, msg: &[u8]) -> Result<(Vec<u8>, i64), StepError> {
        let State::Authenticating(exchange) = std::mem::replace(&mut self.state, State::Complete) else {
            return Err(StepError::Failed("no SASL exchange in progress".into()));
        };
        let Exchange { mechanism, raw, reauth, step } = exchange;
        let phase = if reauth { "re-authentication" } else { "authentication" };
        let generic = || {
            format!(
                "Authentication failed during {phase} due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            )
        };
        let outcome = match step {
            // The client-first is kept until client-final: a huge one would hold memory
            // for as long as the connection idles (T-LIMIT-1).
            Step::ScramFirst(_) if msg.len() > MAX_SCRAM_CLIENT_FIRST => {
                info!(peer = %self.peer, bytes = msg.len(), "SCRAM client-first too large");
                Err(Failure::Generic)
            }
            Step::ScramFirst(m) => match scram::parse_client_first(msg) {
                Ok(cf) => {
                    let Ok((credential, identity)) = broker.scram_lookup(&cf.username, m, cf.token_auth).await else {
                        info!(peer = %self.peer, "closing: the store cannot be read to check the login");
                        return Err(StepError::Unreachable);
                    };
                    // Only a login that will fail needs the fake salt (T-SCRAM-6, T-SCRAM-8).
                    let fake_salt = match &credential {
                        Some(c) if c.iterations >= scram::MIN_ITERATIONS => Vec::new(),
                        _ => scram::fake_salt(&broker.fake_salt_key, m, &cf.username),
                    };
                    let Some(snonce) = server_nonce() else {
                        warn!("no randomness for a SCRAM nonce");
                        return Err(StepError::Failed(generic()));
                    };
                    let (sent, server_first) = scram::server_first(m, cf, credential, fake_salt, &snonce);
                    self.state = State::Authenticating(Exchange {
                        mechanism,
                        raw,
                        reauth,
                        step: Step::ScramFinal(Box::new(sent), identity),
                    });
                    return Ok((server_first, 0));
                }
                Err(ScramError::AuthzidMismatch) => Err(Failure::Specific(
                    "Authentication failed: Client requested an authorization id that is different from username"
                        .into(),
                )),
                Err(ScramError::InvalidCredentials) => Err(Failure::Generic),
            },
            Step::ScramFinal(sent, identity) => {
                let username = sent.client_first().username.clone();
                match (sent.client_final(msg), identity) {
                    (Ok(server_final), Some(identity)) if !identity.token_authenticated() => {
                        Ok((server_final, identity))
                    }
                    // D-2, T-TLOGIN-3: the token must still be live when the login completes;
                    // a renewal since client-first counts.
                    (Ok(server_final), Some(mut identity)) => {
                        match broker.tokens.live_until(&username, broker.clock.now_ms()).await {
                            Some(expiry_ts) => {
                                identity.token_expiry_ms = Some(expiry_ts);
                                Ok((server_final, identity))
                            }
                            None => {
                                self.log_failure(mechanism, &username, Some(&identity));
                                Err(Failure::Generic)
                            }
                        }
                    }
                    (_, identity) => {
                        self.log_failure(mechanism, &username, identity.as_ref());
                        Err(Failure::Generic)
                    }
                }
            }
            Step::Plain => match parse_plain(msg) {
                Err(e) => Err(Failure::Specific(e.to_string())),
                Ok(p) => match broker.plain_verify(&p.username, &p.password).await {
                    Err(_) => Err(Failure::Unreachable),
                    Ok(false) => {
                        self.log_failure(mechanism, &p.username, None);
                        Err(Failure::Specific("Authentication failed: Invalid username or password".into()))
                    }
                    Ok(true) if !p.authzid.is_empty() && p.authzid != p.username => Err(Failure::Specific(
                        "Authentication failed: Client requested an authorization id that is different from username"
                            .into(),
                    )),
                    Ok(true) => Ok((
                        Vec::new(),
                        Identity { principal: Principal::user(&p.username), token_expiry_ms: None, token_id: None },
                    )),
                },
            },
        };
        let (reply, identity) = outcome.map_err(|f| match f {
            Failure::Generic => StepError::Failed(generic()),
            Failure::Specific(s) => StepError::Failed(s),
            Failure::Unreachable => StepError::Unreachable,
        })?;
        if reauth && identity.principal != self.session.principal {
            let (old, new) = (&self.session.principal, &identity.principal);
            return Err(StepError::Failed(format!(
                "Cannot change principals during re-authentication from {}.{}: {}.{}",
                old.kind, old.name, new.kind, new.name
            )));
        }
        let now = broker.clock.now_ms();
        let (lifetime, expiry) =
            session_lifetime(now, broker.config.connections_max_reauth_ms, identity.token_expiry_ms);
        info!(
            peer = %self.peer,
            principal = %identity.principal.logged(),
            mechanism = mechanism.name(),
            token = identity.token_authenticated(),
            reauth,
            "authenticated"
        );
        self.session = Session { principal: identity.principal, authenticated: true, token_id: identity.token_id };
        self.mechanism = Some(mechanism);
        self.session_expiry_ms = expiry;
        self.state = State::Complete;
        Ok((reply, lifetime))
    }

    /// T-LOG-2; for a known token (a wrong HMAC) the owner is logged too. The name tried
    /// is kept for the exchange's outcome.
    fn log_failure(&mut self, mechanism: Mechanism, username: &str, identity: Option<&Identity>) {
        let token = identity.filter(|i| i.token_authenticated());
        self.attempt = Some((username.to_owned(), token.map(|t| t.principal.clone())));
        let shown = Untrusted(username);
        match token {
            Some(token) => info!(
                peer = %self.peer,
                mechanism = mechanism.name(),
                token_id = %shown,
                owner = %token.principal.logged(),
                "authentication failed"
            ),
            None => info!(peer = %self.peer, mechanism = mechanism.name(), username = %shown, "authentication failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-REAUTH-1: the four cases of the session-lifetime rule, and D-19's clamp.
    #[test]
    fn t_reauth_1_session_lifetime() {
        let now = 1_000_000;
        assert_eq!(session_lifetime(now, 0, None), (0, None));
        assert_eq!(session_lifetime(now, -5, None), (0, None));
        assert_eq!(session_lifetime(now, 60_000, None), (60_000, Some(now + 60_000)));
        assert_eq!(session_lifetime(now, 0, Some(now + 5_000)), (5_000, Some(now + 5_000)));
        assert_eq!(session_lifetime(now, 0, Some(now - 5)), (0, Some(now)));
        assert_eq!(session_lifetime(now, 60_000, Some(now + 5_000)), (5_000, Some(now + 5_000)));
        assert_eq!(session_lifetime(now, 3_000, Some(now + 5_000)), (3_000, Some(now + 3_000)));
        // D-19: a token a month away still gets at most i32::MAX ms.
        let month = 30 * 24 * 3_600_000;
        assert_eq!(session_lifetime(now, 0, Some(now + month)), (i32::MAX as i64, Some(now + i32::MAX as i64)));
    }
}
