//! RenewDelegationToken (key 39), versions 0–2 (SPEC §4.7).

use kafka_protocol::messages::{RenewDelegationTokenRequest, RenewDelegationTokenResponse};
use ktb_protocol::error_code;

use super::{Context, Target};

/// Renews the token the request's HMAC names; also returns that token's id and owner
/// when the HMAC matched one.
pub async fn handle(
    ctx: &Context<'_>,
    req: &RenewDelegationTokenRequest,
    now: i64,
) -> (RenewDelegationTokenResponse, Target) {
    if ctx.token_apis_refused() {
        return (refused(error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED), None);
    }
    let super_user = ctx.is_super_user();
    let mut target = None;
    let outcome =
        ctx.broker.tokens.renew(&req.hmac, ctx.principal(), super_user, req.renew_period_ms, now, &mut target).await;
    let resp = match outcome {
        Ok(expiry) => RenewDelegationTokenResponse::default().with_expiry_timestamp_ms(expiry),
        Err(e) => refused(e.code()),
    };
    (resp, target)
}

/// An error answer: the code and expiry −1 (T-RENEW-4, D-6).
pub fn refused(code: i16) -> RenewDelegationTokenResponse {
    ktb_protocol::answers::renew_token_refused(code)
}
