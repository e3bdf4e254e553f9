//! AlterUserScramCredentials (key 51), version 0 (SPEC §5.3).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;
use ktb_protocol::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism};
use tracing::info;

use super::Context;
use crate::auth::users::{Alteration, Users};
use crate::store::Guard;

type Failure = (i16, &'static str);

/// The message of an alteration past `ktb.user.max.alterations.per.request`.
const TOO_MANY_ALTERATIONS: &str = "Too many alterations in one request (ktb.user.max.alterations.per.request)";

/// Validates and applies a super user's alterations (T-USER-7, T-USER-8): first every
/// deletion, then every upsertion, in request order; at most one alteration per user;
/// all valid ones applied atomically and durably; one result per distinct user, sorted.
pub async fn handle(ctx: &Context<'_>, req: &AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    // A deletion is guarded by the credential it found; another broker's change in between
    // makes the whole request start again from fresh reads (T-CLUSTER-2).
    for _ in 0..RETRIES {
        if let Some(answer) = attempt(ctx, req).await {
            return answer;
        }
    }
    tracing::error!("user alterations kept conflicting with concurrent ones; refused");
    refused(req, error_code::REQUEST_TIMED_OUT, "The credentials kept changing; retry")
}

/// How many times a request that met a concurrent change is tried again.
const RETRIES: usize = 8;

/// One try at `handle`: `None` when a concurrent change refused the commit.
async fn attempt(
    ctx: &Context<'_>,
    req: &AlterUserScramCredentialsRequest,
) -> Option<AlterUserScramCredentialsResponse> {
    let users = &ctx.broker.users;
    let max = ctx.broker.config.user_max_alterations_per_request;
    // The credentials the deletions name, read before the checks (the first `max` only).
    let mut found: BTreeMap<(String, i8), Result<Option<i64>, ()>> = BTreeMap::new();
    for d in req.deletions.iter().take(max) {
        let Some(m) = ScramMechanism::from_code(d.mechanism) else { continue };
        let read = users.stamped(d.name.as_str(), m).await.map(|c| c.map(|(_, stamp)| stamp)).map_err(|_| ());
        found.insert((d.name.to_string(), d.mechanism), read);
    }
    let mut guards = Vec::new();
    let mut errors: BTreeMap<String, Failure> = BTreeMap::new();
    let mut pending: BTreeMap<String, Alteration> = BTreeMap::new();
    // §9.7: alterations past `ktb.user.max.alterations.per.request` get 42 each, and their
    // user nothing else, so a huge request costs no store reads.
    let mut considered = 0usize;
    let mut consider = |name: &str, check: &dyn Fn() -> Result<(Alteration, Option<Guard>), Failure>| {
        considered += 1;
        if considered > max {
            pending.remove(name);
            errors.insert(name.to_owned(), (error_code::INVALID_REQUEST, TOO_MANY_ALTERATIONS));
            return;
        }
        if errors.contains_key(name) {
            return;
        }
        if pending.remove(name).is_some() {
            errors.insert(
                name.to_owned(),
                (error_code::DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
            );
            return;
        }
        match check() {
            Ok((a, guard)) => {
                pending.insert(name.to_owned(), a);
                guards.extend(guard);
            }
            Err(f) => {
                errors.insert(name.to_owned(), f);
            }
        }
    };
    let mechanism = |code: i8| {
        ScramMechanism::from_code(code).ok_or((error_code::UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"))
    };
    let named = |name: &str| {
        if name.is_empty() { Err((error_code::UNACCEPTABLE_CREDENTIAL, "Username must not be empty")) } else { Ok(()) }
    };
    let mut lookup_failed = false;
    for d in &req.deletions {
        let name = d.name.as_str();
        consider(name, &|| {
            named(name)?;
            let m = mechanism(d.mechanism)?;
            match found.get(&(name.to_owned(), d.mechanism)) {
                Some(Ok(Some(stamp))) => Ok((Alteration::Delete(m), Some(Users::unchanged(name, m, *stamp)))),
                Some(Ok(None)) => {
                    Err((error_code::RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"))
                }
                _ => Err((error_code::UNKNOWN_SERVER_ERROR, "The store could not be read")),
            }
        });
    }
    for u in &req.upsertions {
        let name = u.name.as_str();
        consider(name, &|| {
            named(name)?;
            let m = mechanism(u.mechanism)?;
            if u.iterations < MIN_ITERATIONS as i32 {
                return Err((error_code::UNACCEPTABLE_CREDENTIAL, "Too few iterations"));
            }
            if u.iterations > MAX_ITERATIONS as i32 {
                return Err((error_code::UNACCEPTABLE_CREDENTIAL, "Too many iterations"));
            }
            if u.salted_password.len() != m.hash_len() || u.salt.is_empty() {
                return Err((error_code::UNACCEPTABLE_CREDENTIAL, "Invalid salted password or salt"));
            }
            // The salted password is used here and dropped: only the derived keys are kept.
            let cred =
                ScramCredential::from_salted_password(m, &u.salted_password, u.salt.to_vec(), u.iterations as u32);
            Ok((Alteration::Upsert(m, cred), None))
        });
    }

    let extra = (req.deletions.len() + req.upsertions.len()).saturating_sub(max);
    if extra > 0 {
        info!(by = %ctx.principal().logged(), extra, max, "user alterations refused: ktb.user.max.alterations.per.request");
    }
    let changes: Vec<(String, Alteration)> = pending.iter().map(|(n, a)| (n.clone(), a.clone())).collect();
    let mut stored_code = error_code::UNKNOWN_SERVER_ERROR;
    match users.alter(&changes, guards).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::error!("cannot store user credentials: {e}");
            if matches!(e, crate::store::StoreError::Unavailable(_)) {
                stored_code = error_code::REQUEST_TIMED_OUT;
            }
            lookup_failed = true;
        }
    }
    let mut results: BTreeMap<String, Option<Failure>> = errors.into_iter().map(|(n, f)| (n, Some(f))).collect();
    for (name, alteration) in &changes {
        let outcome = lookup_failed.then_some((stored_code, "The change could not be stored"));
        if outcome.is_none() {
            let (op, m) = match alteration {
                Alteration::Delete(m) => ("deleted", m),
                Alteration::Upsert(m, _) => ("upserted", m),
            };
            info!(
                user = %crate::logsafe::Untrusted(name),
                mechanism = m.name(),
                by = %ctx.principal().logged(),
                "user credential {op}"
            );
        }
        results.insert(name.clone(), outcome);
    }
    let results = results
        .into_iter()
        .map(|(user, failure)| {
            let (code, message) = match failure {
                Some((code, message)) => (code, Some(StrBytes::from_static_str(message))),
                None => (error_code::NONE, None),
            };
            AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    Some(AlterUserScramCredentialsResponse::default().with_results(results))
}

/// A refusal (T-USER-6, or 34 mid-authentication): one result per distinct named user,
/// sorted by name; nothing changes.
pub fn refused(req: &AlterUserScramCredentialsRequest, code: i16, message: &str) -> AlterUserScramCredentialsResponse {
    let users: BTreeSet<&StrBytes> =
        req.deletions.iter().map(|d| &d.name).chain(req.upsertions.iter().map(|u| &u.name)).collect();
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(user.clone())
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message.to_owned())))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
