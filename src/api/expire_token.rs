//! ExpireDelegationToken (key 40), versions 0–2 (SPEC §4.8).

use kafka_protocol::messages::{ExpireDelegationTokenRequest, ExpireDelegationTokenResponse};
use ktb_protocol::error_code;

use super::{Context, Target};

/// Expires (period ≥ 0) or deletes (period < 0) the token the request's HMAC names; also
/// returns that token's id and owner when the HMAC matched one.
pub async fn handle(
    ctx: &Context<'_>,
    req: &ExpireDelegationTokenRequest,
    now: i64,
) -> (ExpireDelegationTokenResponse, Target) {
    if ctx.token_apis_refused() {
        return (refused(error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED), None);
    }
    let super_user = ctx.is_super_user();
    let mut target = None;
    let outcome = ctx
        .broker
        .tokens
        .expire(&req.hmac, ctx.principal(), super_user, req.expiry_time_period_ms, now, &mut target)
        .await;
    let resp = match outcome {
        Ok(expiry) => ExpireDelegationTokenResponse::default().with_expiry_timestamp_ms(expiry),
        Err(e) => refused(e.code()),
    };
    (resp, target)
}

/// An error answer: the code and expiry −1 (D-6).
pub fn refused(code: i16) -> ExpireDelegationTokenResponse {
    ktb_protocol::answers::expire_token_refused(code)
}
