//! What each audited API's answer means for the audit log (T-OPS-2): the dispatch in
//! [`super::handle`] calls these once per request, before the answer is sent.

use kafka_protocol::messages::{
    AlterUserScramCredentialsResponse, CreateDelegationTokenRequest, CreateDelegationTokenResponse,
};
use ktb_protocol::error_code;

use super::{Context, Target};
use crate::audit::{Caller, Event, Subject};
use crate::auth::Principal;

/// Users named one by one per refusal code in an AlterUserScramCredentials answer; the
/// rest of that code's users are counted in one line (a refused request can name
/// thousands).
const NAMED_REFUSALS: usize = 10;

async fn write(ctx: &Context<'_>, events: &[Event<'_>]) {
    let caller = Caller { principal: Some(&ctx.session.principal), client: ctx.peer, listener: ctx.listener };
    ctx.broker.audit.record(events, Some(&caller)).await;
}

/// A Create answered with `resp`; the owner is the one asked for (the caller's when none
/// was), so a refusal still says whose token was asked for.
pub async fn created(
    ctx: &Context<'_>,
    version: i16,
    req: &CreateDelegationTokenRequest,
    resp: &CreateDelegationTokenResponse,
) {
    if !ctx.broker.audit.enabled() {
        return;
    }
    let (kind, name) = super::create_token::requested_owner(ctx, version, req);
    let owner = Principal { kind: kind.unwrap_or_default(), name };
    let token_id = Some(resp.token_id.as_str()).filter(|id| !id.is_empty());
    let subject = Subject { token_id, owner: Some(&owner), requester: Some(ctx.principal()), ..Subject::default() };
    write(ctx, &[Event { event: "token_created", subject, code: resp.error_code }]).await;
}

/// A Renew or Expire (`event`) of `target` answered with `code`.
pub async fn changed(ctx: &Context<'_>, event: &'static str, target: &Target, code: i16) {
    if !ctx.broker.audit.enabled() {
        return;
    }
    let (token_id, owner) = target.as_ref().map_or((None, None), |(id, owner)| (Some(id.as_str()), Some(owner)));
    write(ctx, &[Event { event, subject: Subject { token_id, owner, ..Subject::default() }, code }]).await;
}

/// Each user of an AlterUserScramCredentials answer: every one altered (at most
/// `ktb.user.max.alterations.per.request`), and per refusal code the first
/// [`NAMED_REFUSALS`] and a count of the others; all in one write.
pub async fn users_altered(ctx: &Context<'_>, resp: &AlterUserScramCredentialsResponse) {
    if !ctx.broker.audit.enabled() {
        return;
    }
    let mut events = Vec::new();
    let mut refused: Vec<(i16, u64)> = Vec::new();
    for u in &resp.results {
        let code = u.error_code;
        if code != error_code::NONE {
            let seen = match refused.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => n,
                None => {
                    refused.push((code, 0));
                    &mut refused.last_mut().expect("just pushed").1
                }
            };
            *seen += 1;
            if *seen as usize > NAMED_REFUSALS {
                continue;
            }
        }
        events.push(Event {
            event: "user_altered",
            subject: Subject { user: Some(u.user.as_str()), ..Subject::default() },
            code,
        });
    }
    for (code, n) in refused {
        if let Some(more) = (n as usize).checked_sub(NAMED_REFUSALS).filter(|m| *m > 0) {
            let subject = Subject { suppressed: Some(more as u64), ..Subject::default() };
            events.push(Event { event: "user_altered", subject, code });
        }
    }
    write(ctx, &events).await;
}
