//! One module per Kafka API the broker serves; [`handle`] routes a decoded request.
//!
//! Handlers see a decoded request and the connection's [`Context`], never a socket.

pub mod alter_user_scram;
pub mod api_versions;
pub mod create_token;
pub mod describe_cluster;
pub mod describe_tokens;
pub mod describe_user_scram;
pub mod expire_token;
pub mod metadata;
pub mod renew_token;
pub mod sasl;

use std::net::SocketAddr;

use kafka_protocol::messages::{BrokerId, CreateDelegationTokenResponse, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;
use ktb_protocol::request::Header;

use crate::audit::{Caller, Subject};
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

    /// Writes `event` about `subject`, answered with `code`, to the audit log (T-OPS-2).
    fn audit(&self, event: &str, subject: &Subject<'_>, code: i16) {
        let caller = Caller { principal: Some(&self.session.principal), client: self.peer, listener: self.listener };
        self.broker.audit.record(event, subject, Some(&caller), code);
    }

    /// Audits a Renew or Expire of `target` answered with `code`.
    fn audit_target(&self, event: &str, target: &Target, code: i16) {
        let (token_id, owner) = target.as_ref().map_or((None, None), |(id, owner)| (Some(id.as_str()), Some(owner)));
        self.audit(event, &Subject { token_id, owner, ..Subject::default() }, code);
    }

    /// Audits a Create answered with `resp`.
    fn audit_created(&self, resp: &CreateDelegationTokenResponse) {
        let owner = Principal::new(&resp.principal_type, &resp.principal_name);
        let token_id = Some(resp.token_id.as_str()).filter(|id| !id.is_empty());
        let subject =
            Subject { token_id, owner: Some(&owner), requester: Some(&self.session.principal), ..Subject::default() };
        self.audit("token_created", &subject, resp.error_code);
    }

    /// Audits each user of an AlterUserScramCredentials answer.
    fn audit_users(&self, resp: &ResponseKind) {
        let ResponseKind::AlterUserScramCredentials(r) = resp else { return };
        for u in &r.results {
            self.audit("user_altered", &Subject { user: Some(u.user.as_str()), ..Subject::default() }, u.error_code);
        }
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
            ctx.audit_created(&resp);
            resp.into()
        }
        RequestKind::RenewDelegationToken(req) => {
            let (resp, target) = renew_token::handle(ctx, &req, now).await;
            ctx.audit_target("token_renewed", &target, resp.error_code);
            resp.into()
        }
        RequestKind::ExpireDelegationToken(req) => {
            let (resp, target) = expire_token::handle(ctx, &req, now).await;
            ctx.audit_target("token_expired", &target, resp.error_code);
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
                alter_user_scram::handle(ctx, &req).await.into()
            } else {
                let refusal = "Cluster authorization failed.";
                alter_user_scram::refused(&req, error_code::CLUSTER_AUTHORIZATION_FAILED, refusal).into()
            };
            ctx.audit_users(&resp);
            resp
        }
        _ => return None,
    })
}
