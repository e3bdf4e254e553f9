//! CreateDelegationToken (key 38), versions 0–3 (SPEC §4.6).

use bytes::Bytes;
use kafka_protocol::messages::{CreateDelegationTokenRequest, CreateDelegationTokenResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

use super::Context;
use crate::auth::Principal;

/// The owner a request asks for: the v3 owner fields when a name is given, otherwise the
/// requester. A missing owner type is kept as `None` (D-4 refuses it).
pub fn requested_owner(
    ctx: &Context<'_>,
    version: i16,
    req: &CreateDelegationTokenRequest,
) -> (Option<String>, String) {
    match &req.owner_principal_name {
        Some(name) if version >= 3 && !name.is_empty() => {
            (req.owner_principal_type.as_ref().map(|t| t.to_string()), name.to_string())
        }
        _ => (Some(ctx.principal().kind.clone()), ctx.principal().name.clone()),
    }
}

/// Creates a token after SPEC §4.6's checks, in their order.
pub async fn handle(
    ctx: &Context<'_>,
    version: i16,
    req: &CreateDelegationTokenRequest,
    now: i64,
) -> CreateDelegationTokenResponse {
    let requester = ctx.principal();
    let (owner_type, owner_name) = requested_owner(ctx, version, req);
    let owner_is_user = owner_type.as_deref() == Some("User");
    let owner = Principal { kind: owner_type.unwrap_or_default(), name: owner_name };
    let refuse = |code| error_response(version, &owner, requester, code);
    if ctx.token_apis_refused() {
        return refuse(error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED);
    }
    // T-CREATE-1: anyone may create for itself; only super users for others (D-11).
    if owner != *requester && !ctx.is_super_user() {
        return refuse(error_code::DELEGATION_TOKEN_AUTHORIZATION_FAILED);
    }
    if req.renewers.iter().any(|r| r.principal_type.as_str() != "User") || !owner_is_user {
        return refuse(error_code::INVALID_PRINCIPAL_TYPE);
    }
    let tokens = &ctx.broker.tokens;
    if !tokens.enabled() {
        return refuse(error_code::DELEGATION_TOKEN_AUTH_DISABLED);
    }
    let renewers = req.renewers.iter().map(|r| Principal::new(&r.principal_type, &r.principal_name)).collect();
    match tokens.create(owner.clone(), requester.clone(), renewers, req.max_lifetime_ms, now).await {
        Ok((t, hmac)) => {
            let mut resp = CreateDelegationTokenResponse::default()
                .with_principal_type(StrBytes::from_string(t.owner.kind))
                .with_principal_name(StrBytes::from_string(t.owner.name))
                .with_issue_timestamp_ms(t.issue_ts)
                .with_expiry_timestamp_ms(t.expiry_ts)
                .with_max_timestamp_ms(t.max_ts)
                .with_token_id(StrBytes::from_string(t.token_id))
                .with_hmac(Bytes::copy_from_slice(hmac.expose()));
            if version >= 3 {
                resp.token_requester_principal_type = StrBytes::from_string(t.requester.kind);
                resp.token_requester_principal_name = StrBytes::from_string(t.requester.name);
            }
            resp
        }
        Err(e) => {
            if let crate::tokens::TokenError::LimitExceeded(reason) = &e {
                tracing::info!(requester = %requester.logged(), "token not created (42): {reason}");
            }
            refuse(e.code())
        }
    }
}

/// An error answer naming `owner` and `requester` (the requester only from v3): the
/// code, timestamps −1, empty token id and HMAC (T-CREATE-5).
pub fn error_response(
    version: i16,
    owner: &Principal,
    requester: &Principal,
    code: i16,
) -> CreateDelegationTokenResponse {
    ktb_protocol::answers::create_token_refused(
        version,
        (&owner.kind, &owner.name),
        (&requester.kind, &requester.name),
        code,
    )
}
