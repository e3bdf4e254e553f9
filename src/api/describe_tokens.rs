//! DescribeDelegationToken (key 41), versions 0–3 (SPEC §4.9).

use bytes::Bytes;
use kafka_protocol::messages::describe_delegation_token_response::{
    DescribedDelegationToken, DescribedDelegationTokenRenewer,
};
use kafka_protocol::messages::{DescribeDelegationTokenRequest, DescribeDelegationTokenResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

use super::Context;
use crate::auth::Principal;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Lists the tokens the caller may see, filtered by the request's owners.
pub async fn handle(
    ctx: &Context<'_>,
    version: i16,
    req: &DescribeDelegationTokenRequest,
) -> DescribeDelegationTokenResponse {
    if ctx.token_apis_refused() {
        return refused(error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED);
    }
    let tokens = &ctx.broker.tokens;
    if !tokens.enabled() {
        return refused(error_code::DELEGATION_TOKEN_AUTH_DISABLED);
    }
    let owners: Option<Vec<Principal>> = req
        .owners
        .as_ref()
        .map(|owners| owners.iter().map(|o| Principal::new(&o.principal_type, &o.principal_name)).collect());
    // T-DESC-1: an empty list asks for nothing.
    if owners.as_ref().is_some_and(|o| o.is_empty()) {
        return DescribeDelegationTokenResponse::default();
    }
    let found = match tokens.describe(owners.as_deref(), ctx.principal(), ctx.is_super_user()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!("describe tokens failed: {e}");
            return refused(e.code());
        }
    };
    let described = found
        .into_iter()
        .map(|(t, hmac)| {
            let mut d = DescribedDelegationToken::default()
                .with_principal_type(text(&t.owner.kind))
                .with_principal_name(text(&t.owner.name))
                .with_issue_timestamp(t.issue_ts)
                .with_expiry_timestamp(t.expiry_ts)
                .with_max_timestamp(t.max_ts)
                .with_token_id(StrBytes::from_string(t.token_id))
                .with_hmac(Bytes::copy_from_slice(hmac.expose()))
                .with_renewers(
                    t.renewers
                        .iter()
                        .map(|r| {
                            DescribedDelegationTokenRenewer::default()
                                .with_principal_type(text(&r.kind))
                                .with_principal_name(text(&r.name))
                        })
                        .collect(),
                );
            if version >= 3 {
                d.token_requester_principal_type = text(&t.requester.kind);
                d.token_requester_principal_name = text(&t.requester.name);
            }
            d
        })
        .collect();
    DescribeDelegationTokenResponse::default().with_tokens(described)
}

/// An error answer with no tokens.
pub fn refused(code: i16) -> DescribeDelegationTokenResponse {
    ktb_protocol::answers::describe_tokens_refused(code)
}
