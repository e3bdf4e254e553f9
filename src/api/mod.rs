//! One module per Kafka API the broker serves; [`handle`] routes a decoded request.
//!
//! Handlers see a decoded request and the connection's [`Context`], never a socket.

pub mod alter_user_scram;
pub mod api_versions;
mod audit;
pub mod create_token;
pub mod describe_cluster;
pub mod describe_tokens;
pub mod describe_user_scram;
pub mod expire_token;
pub mod metadata;
pub mod renew_token;
pub mod sasl;

use std::net::SocketAddr;

use kafka_protocol::messages::{BrokerId, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;
use ktb_protocol::request::Header;

use crate::auth::{Principal, Session};
use crate::broker::Broker;
use crate::config::HostPort;

/// What a handler may know about the request's connection.
pub struct Context<'a> {
    /// Shared broker state.
    pub broker: &'a Broker,
    /// The advertised endpoint of the listener the request arrived on (SPEC §2.8).
    pub endpoint: &'a HostPort,
    /// The name of that listener.
    pub listener: &'a str,
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the connection is.
    pub session: &'a Session,
}

impl Context<'_> {
    /// True when the connection's principal is listed in `super.users` (SPEC §5.4).
    pub fn is_super_user(&self) -> bool {
        self.broker.is_super_user(&self.session.principal)
    }

    /// T-GATE-1: token-authenticated connections, and connections that never
    /// authenticated (PLAINTEXT, D-10), cannot use the token APIs (64).
    pub fn token_apis_refused(&self) -> bool {
        self.session.token_authenticated() || !self.session.authenticated
    }

    /// The principal of the connection.
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }

    /// Every live broker as advertised on this request's listener, shaped by `entry`
    /// (node id, host, port) into the answer's broker type (T-CLUSTER-4).
    pub fn live_brokers<T>(&self, entry: impl Fn(BrokerId, StrBytes, i32) -> T) -> Vec<T> {
        let brokers = self.broker.cluster.brokers(self.endpoint);
        brokers
            .into_iter()
            .map(|(id, hp)| entry(BrokerId(id), StrBytes::from_string(hp.host), i32::from(hp.port)))
            .collect()
    }
}

/// The id and owner of the token a Renew or Expire acted on, when its HMAC matched one.
pub type Target = Option<(String, Principal)>;

/// Answers a request on an authenticated (or PLAINTEXT) connection; `None` closes the
/// connection without a response. Metadata has its own path ([`metadata::handle`]): its
/// topics are read in place and its answer's topics written directly (T-LIMIT-1). Every
/// token and user change, refused or not, is audited here, before the answer is sent.
pub async fn handle(ctx: &Context<'_>, header: &Header, body: RequestKind) -> Option<ResponseKind> {
    let v = header.version;
    let now = ctx.broker.clock.now_ms();
    let super_user = ctx.is_super_user();
    Some(match body {
        RequestKind::ApiVersions(req) => api_versions::handle(v, &req).into(),
        RequestKind::DescribeCluster(req) => describe_cluster::handle(ctx, v, &req).into(),
        RequestKind::SaslHandshake(_) => sasl::handshake_after_authentication().into(),
        RequestKind::SaslAuthenticate(_) => sasl::authenticate_after_authentication().into(),
        RequestKind::CreateDelegationToken(req) => {
            let resp = create_token::handle(ctx, v, &req, now).await;
            audit::created(ctx, v, &req, &resp).await;
            resp.into()
        }
        RequestKind::RenewDelegationToken(req) => {
            let (resp, target) = renew_token::handle(ctx, &req, now).await;
            audit::changed(ctx, "token_renewed", &target, resp.error_code).await;
            resp.into()
        }
        RequestKind::ExpireDelegationToken(req) => {
            let (resp, target) = expire_token::handle(ctx, &req, now).await;
            audit::changed(ctx, "token_expired", &target, resp.error_code).await;
            resp.into()
        }
        RequestKind::DescribeDelegationToken(req) => describe_tokens::handle(ctx, v, &req).await.into(),
        RequestKind::DescribeUserScramCredentials(req) if super_user => {
            describe_user_scram::handle(ctx, &req).await.into()
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            describe_user_scram::refused(&req, error_code::CLUSTER_AUTHORIZATION_FAILED, None).into()
        }
        RequestKind::AlterUserScramCredentials(req) => {
            let resp = if super_user {
                alter_user_scram::handle(ctx, &req).await
            } else {
                let refusal = "Cluster authorization failed.";
                alter_user_scram::refused(&req, error_code::CLUSTER_AUTHORIZATION_FAILED, refusal)
            };
            audit::users_altered(ctx, &resp).await;
            resp.into()
        }
        _ => return None,
    })
}
