//! The small Kafka client behind `ktb token` and `ktb user` (SPEC §6.8, T-CLI-3).
//!
//! It speaks through the same codec and SCRAM state machine as the broker: connect,
//! negotiate versions with ApiVersions, log in, then send requests at the highest version
//! both sides support. It works against ktb and against Apache Kafka alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind, ResponseKind, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::apis;
use ktb_protocol::client::{decode_response, encode_request};
use ktb_protocol::frame::decode_frame;
use ktb_protocol::scram::{ScramClient, ScramMechanism};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The largest response frame the client accepts (T-LIMIT-7). The answers ktb asks for
/// are small (Metadata for no topics, a few thousand tokens or users fit in well under a
/// megabyte), a non-Kafka peer (a TLS alert, an HTTP server) announces far more, and the
/// frame decoder reserves the announced size before the bytes arrive, so this is also
/// what a hostile server can make the client allocate for a frame it never sends.
const MAX_RESPONSE_BYTES: i32 = 8 << 20;

/// The client id ktb sends.
const CLIENT_ID: &str = "ktb-cli";

/// How a client logs in.
#[derive(Clone)]
pub struct Credentials {
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
    pub mechanism: String,
    /// The user name (or token id).
    pub username: String,
    /// The password (or base64 HMAC).
    pub password: String,
    /// Send the SCRAM extension `tokenauth=true` (a token login, Java style).
    pub token_auth: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("token_auth", &self.token_auth)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to any bootstrap server.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The last server reached refused the TLS handshake (a certificate it does not trust,
    /// or a name that does not match).
    #[error("cannot connect to {0}")]
    Tls(String),
    /// The server did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The login was refused.
    #[error("authentication failed: {message}")]
    Auth {
        /// The Kafka error code (58, 33, ...).
        code: i16,
        /// The server's message.
        message: String,
    },
    /// SaslHandshake refused the mechanism (33), or the handshake (34).
    #[error("the server does not offer {requested}; it offers {}", offered.join(", "))]
    Mechanism {
        /// The error code.
        code: i16,
        /// The mechanism asked for.
        requested: String,
        /// The mechanisms the server named.
        offered: Vec<String>,
    },
    /// The connection broke or the server sent something unexpected.
    #[error("{0}")]
    Protocol(String),
    /// The server does not offer a version of this API that ktb speaks.
    #[error("the server does not support {0}")]
    Unsupported(String),
}

/// One authenticated connection.
pub struct Client {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    next_correlation: i32,
    /// The server's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
    /// The `host:port` this connection reached.
    pub address: String,
}

impl Client {
    /// Connects to the first reachable server of `bootstrap` (`host:port[,host:port]`),
    /// over TLS when `tls` is given, and negotiates API versions.
    pub async fn connect(
        bootstrap: &str,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Client, ClientError> {
        let (mut last, mut tls_refused) = (String::new(), false);
        for address in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    let stream: Box<dyn Stream> = match &tls {
                        None => Box::new(tcp),
                        Some(config) => {
                            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
                            let host = host.trim_start_matches('[').trim_end_matches(']');
                            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                                .map_err(|e| ClientError::Connect(format!("{address}: bad TLS server name: {e}")))?;
                            let connector = tokio_rustls::TlsConnector::from(config.clone());
                            match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                                Ok(Ok(s)) => Box::new(s),
                                Ok(Err(e)) => {
                                    (last, tls_refused) = (format!("{address}: TLS handshake failed: {e}"), true);
                                    continue;
                                }
                                Err(_) => {
                                    (last, tls_refused) =
                                        (format!("{address}: no TLS handshake within {timeout:?}"), false);
                                    continue;
                                }
                            }
                        }
                    };
                    let mut c = Client {
                        stream,
                        buf: BytesMut::with_capacity(4096),
                        next_correlation: 1,
                        versions: HashMap::new(),
                        timeout,
                        address: address.to_owned(),
                    };
                    c.negotiate().await?;
                    return Ok(c);
                }
                Ok(Err(e)) => (last, tls_refused) = (format!("{address}: {e}"), false),
                Err(_) => (last, tls_refused) = (format!("{address}: no connection within {timeout:?}"), false),
            }
        }
        if tls_refused {
            return Err(ClientError::Tls(last));
        }
        Err(ClientError::Connect(if last.is_empty() { "no bootstrap server given".into() } else { last }))
    }

    /// ApiVersions at v4, or at the highest version the server names when it refuses v4
    /// with the v0-format answer (T-APIV-4).
    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let mut version = 4;
        for _ in 0..2 {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("ktb"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let id = self.send(ApiKey::ApiVersions, version, &req.into()).await?;
            let frame = self.read_frame().await?;
            // Every version's body starts with the error code after the 4-byte v0 header;
            // UNSUPPORTED_VERSION comes as a v0 body whatever was asked (T-APIV-4), and is
            // decoded as v0 through the same guarded decoder (T-LIMIT-7).
            let code = frame.get(4..6).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(i16::from_be_bytes);
            let body_version = if code == Some(ktb_protocol::error_code::UNSUPPORTED_VERSION) { 0 } else { version };
            let resp = match decode_response(ApiKey::ApiVersions, body_version, frame) {
                Ok((got, ResponseKind::ApiVersions(r))) if got == id => r,
                Ok((got, ResponseKind::ApiVersions(_))) => {
                    return Err(ClientError::Protocol(format!("answer {got} to request {id}")));
                }
                Ok(_) => return Err(ClientError::Protocol("unexpected answer to ApiVersions".into())),
                Err(e) => return Err(ClientError::Protocol(format!("bad ApiVersions answer: {e}"))),
            };
            if resp.error_code == ktb_protocol::error_code::UNSUPPORTED_VERSION {
                let max = resp.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).map(|k| k.max_version);
                match max {
                    Some(m) if (0..version).contains(&m) => {
                        version = m;
                        continue;
                    }
                    // A refusal that names no lower version is a broken answer, not a
                    // missing feature: exit 3 like any malformed answer (T-LIMIT-7).
                    _ => {
                        return Err(ClientError::Protocol(format!(
                            "the ApiVersions v{version} refusal names no lower version ({max:?})"
                        )));
                    }
                }
            }
            if resp.error_code != 0 {
                return Err(ClientError::Protocol(format!("ApiVersions answered error {}", resp.error_code)));
            }
            self.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
            return Ok(());
        }
        Err(ClientError::Protocol("ApiVersions refused at every version the server named".into()))
    }

    /// The highest version of `key` both sides support.
    pub fn version(&self, key: ApiKey) -> Result<i16, ClientError> {
        let ours = apis::supported(key).ok_or_else(|| ClientError::Unsupported(format!("{key:?}")))?;
        let (min, max) =
            self.versions.get(&(key as i16)).copied().ok_or_else(|| ClientError::Unsupported(format!("{key:?}")))?;
        let v = max.min(ours.max);
        if v < min.max(ours.min) {
            return Err(ClientError::Unsupported(format!("{key:?} v{}..v{}", ours.min, ours.max)));
        }
        Ok(v)
    }

    /// Logs in with SASL (SaslHandshake v1, then SaslAuthenticate).
    pub async fn authenticate(&mut self, creds: &Credentials) -> Result<(), ClientError> {
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(creds.mechanism.clone()));
        let ResponseKind::SaslHandshake(hs) = self.call(ApiKey::SaslHandshake, 1, req.into()).await? else {
            return Err(ClientError::Protocol("unexpected answer to SaslHandshake".into()));
        };
        if hs.error_code != 0 {
            let offered: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(ClientError::Mechanism { code: hs.error_code, requested: creds.mechanism.clone(), offered });
        }
        if creds.mechanism == "PLAIN" {
            let msg = format!("\0{}\0{}", creds.username, creds.password);
            self.sasl_step(msg.into_bytes()).await?;
            return Ok(());
        }
        let mech = ScramMechanism::from_name(&creds.mechanism)
            .ok_or_else(|| ClientError::Protocol(format!("unknown SASL mechanism {}", creds.mechanism)))?;
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| ClientError::Protocol(format!("no randomness: {e}")))?;
        let scram = ScramClient::new(mech, &creds.username, &URL_SAFE_NO_PAD.encode(nonce), creds.token_auth);
        let server_first = self.sasl_step(scram.client_first()).await?;
        let (sent, client_final) = scram
            .client_final(&server_first, creds.password.as_bytes())
            .map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))?;
        let server_final = self.sasl_step(client_final).await?;
        sent.verify_server_final(&server_final)
            .map_err(|e| ClientError::Protocol(format!("the server failed to prove it knows the credential: {e}")))
    }

    async fn sasl_step(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let v = self.version(ApiKey::SaslAuthenticate)?;
        let req = SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
        let ResponseKind::SaslAuthenticate(r) = self.call(ApiKey::SaslAuthenticate, v, req.into()).await? else {
            return Err(ClientError::Protocol("unexpected answer to SaslAuthenticate".into()));
        };
        if r.error_code != 0 {
            let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(ClientError::Auth { code: r.error_code, message });
        }
        Ok(r.auth_bytes.to_vec())
    }

    /// The `host:port` of the controller, from Metadata (T-CLI-3).
    pub async fn controller_address(&mut self) -> Result<String, ClientError> {
        let v = self.version(ApiKey::Metadata)?;
        // v1+: an empty list asks for no topics (null would mean all of them); v0 cannot
        // ask for none, and an empty list there means all.
        let req = MetadataRequest::default().with_topics(Some(Vec::new()));
        let ResponseKind::Metadata(m) = self.call(ApiKey::Metadata, v, req.into()).await? else {
            return Err(ClientError::Protocol("unexpected answer to Metadata".into()));
        };
        m.brokers.iter().find(|b| b.node_id == m.controller_id).map(|b| format!("{}:{}", b.host, b.port)).ok_or_else(
            || ClientError::Protocol(format!("Metadata names no broker for controller {:?}", m.controller_id)),
        )
    }

    /// Sends `body` at the highest common version of `key` and returns the answer.
    pub async fn request(&mut self, key: ApiKey, body: RequestKind) -> Result<(i16, ResponseKind), ClientError> {
        let v = self.version(key)?;
        Ok((v, self.call(key, v, body).await?))
    }

    /// Sends `body` at `version` and returns the answer.
    pub async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind, ClientError> {
        let id = self.send(key, version, &body).await?;
        let frame = self.read_frame().await?;
        let (got, resp) = decode_response(key, version, frame)
            .map_err(|e| ClientError::Protocol(format!("cannot decode the answer: {e}")))?;
        if got != id {
            return Err(ClientError::Protocol(format!("answer {got} to request {id}")));
        }
        Ok(resp)
    }

    async fn send(&mut self, key: ApiKey, version: i16, body: &RequestKind) -> Result<i32, ClientError> {
        let id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_request(key, version, id, CLIENT_ID, body)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?;
        match tokio::time::timeout(self.timeout, self.stream.write_all(&frame)).await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(ClientError::Protocol(format!("connection to {} lost: {e}", self.address))),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    async fn read_frame(&mut self) -> Result<bytes::Bytes, ClientError> {
        loop {
            match decode_frame(&mut self.buf, MAX_RESPONSE_BYTES) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol(format!(
                        "{} sent something that is not a Kafka response ({e}); is it a Kafka port, and is \
                         security.protocol right (SASL_SSL vs SASL_PLAINTEXT)?",
                        self.address
                    )));
                }
            }
            match tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(ClientError::Timeout(self.timeout)),
                Ok(Ok(0)) => {
                    return Err(ClientError::Protocol(format!("{} closed the connection", self.address)));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ClientError::Protocol(format!("connection to {} lost: {e}", self.address))),
            }
        }
    }
}
