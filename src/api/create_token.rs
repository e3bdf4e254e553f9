//! CreateDelegationToken (key 38), versions 0–3 (SPEC §4.6).

use kafka_protocol::messages::{CreateDelegationTokenRequest, CreateDelegationTokenResponse};
use kafka_protocol::protocol::StrBytes;

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

/// An error answer (T-CREATE-5): the derived owner, the requester (v3+), timestamps −1,
/// empty token id and HMAC.
pub fn refused(
    ctx: &Context<'_>,
    version: i16,
    req: &CreateDelegationTokenRequest,
    code: i16,
) -> CreateDelegationTokenResponse {
    let (owner_type, owner_name) = requested_owner(ctx, version, req);
    let owner = Principal { kind: owner_type.unwrap_or_default(), name: owner_name };
    error_response(version, &owner, ctx.principal(), code)
}

/// An error answer naming `owner` and `requester` (the requester only from v3).
pub fn error_response(
    version: i16,
    owner: &Principal,
    requester: &Principal,
    code: i16,
) -> CreateDelegationTokenResponse {
    let mut resp = CreateDelegationTokenResponse::default()
        .with_error_code(code)
        .with_principal_type(StrBytes::from_string(owner.kind.clone()))
        .with_principal_name(StrBytes::from_string(owner.name.clone()))
        .with_issue_timestamp_ms(-1)
        .with_expiry_timestamp_ms(-1)
        .with_max_timestamp_ms(-1);
    if version >= 3 {
        resp.token_requester_principal_type = StrBytes::from_string(requester.kind.clone());
        resp.token_requester_principal_name = StrBytes::from_string(requester.name.clone());
    }
    resp
}
