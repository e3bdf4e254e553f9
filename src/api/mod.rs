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

use kafka_protocol::messages::{RequestKind, ResponseKind};
use ktb_protocol::request::Header;

use crate::auth::{Principal, Session};
use crate::config::HostPort;
use crate::server::Broker;

/// What a handler may know about the request's connection.
pub struct Context<'a> {
    /// Shared broker state.
    pub broker: &'a Broker,
    /// The advertised endpoint of the listener the request arrived on (SPEC §2.8).
    pub endpoint: &'a HostPort,
    /// Who the connection is.
    pub session: &'a Session,
}

impl Context<'_> {
    /// True when the connection's principal is listed in `super.users` (SPEC §5.4).
    pub fn is_super_user(&self) -> bool {
        self.broker.is_super_user(&self.session.principal)
    }

    /// The principal of the connection.
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }
}

/// Answers a request on an authenticated (or PLAINTEXT) connection; `None` closes the
/// connection without a response.
pub fn handle(ctx: &Context<'_>, header: &Header, body: RequestKind) -> Option<ResponseKind> {
    let v = header.version;
    // D-10: a connection that never authenticated (PLAINTEXT) cannot use the token APIs
    // (64, T-GATE-1) and is no super user for the user APIs (31).
    let anonymous = !ctx.session.authenticated;
    Some(match body {
        RequestKind::ApiVersions(req) => api_versions::handle(v, &req).into(),
        RequestKind::Metadata(req) => metadata::handle(ctx, v, &req)?.into(),
        RequestKind::DescribeCluster(req) => describe_cluster::handle(ctx, v, &req).into(),
        RequestKind::SaslHandshake(_) => sasl::handshake_after_authentication().into(),
        RequestKind::SaslAuthenticate(_) => sasl::authenticate_after_authentication().into(),
        RequestKind::CreateDelegationToken(req) if anonymous => create_token::refused(
            ctx,
            v,
            &req,
            ktb_protocol::error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED,
        )
        .into(),
        RequestKind::RenewDelegationToken(_) if anonymous => {
            renew_token::refused(ktb_protocol::error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED).into()
        }
        RequestKind::ExpireDelegationToken(_) if anonymous => {
            expire_token::refused(ktb_protocol::error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED).into()
        }
        RequestKind::DescribeDelegationToken(_) if anonymous => {
            describe_tokens::refused(ktb_protocol::error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED).into()
        }
        RequestKind::DescribeUserScramCredentials(req) if anonymous => describe_user_scram::unauthorized(&req).into(),
        RequestKind::AlterUserScramCredentials(req) if anonymous => alter_user_scram::unauthorized(&req).into(),
        // Authenticated connections exist only once SASL is served; until then every
        // other request is one the broker does not handle.
        _ => return None,
    })
}
