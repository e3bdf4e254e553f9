//! DescribeUserScramCredentials (key 50), version 0 (SPEC §5.2).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;
use ktb_protocol::scram::ScramMechanism;

use super::Context;

/// Describes users for a super user (T-USER-3..5): every user for a null or empty list,
/// otherwise one result per distinct requested name, sorted by name.
pub async fn handle(
    ctx: &Context<'_>,
    req: &DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = match ctx.broker.users.list().await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("cannot list users: {e}");
            return refused(req, error_code::UNKNOWN_SERVER_ERROR, None);
        }
    };
    let infos = |mechs: &Vec<(ScramMechanism, u32)>| {
        mechs
            .iter()
            .map(|(m, i)| CredentialInfo::default().with_mechanism(m.code()).with_iterations(*i as i32))
            .collect::<Vec<_>>()
    };
    let ok = |name: &str, mechs| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(name.to_owned()))
            .with_error_message(None)
            .with_credential_infos(infos(mechs))
    };
    let results = match req.users.as_deref() {
        None | Some([]) => users.iter().map(|(name, mechs)| ok(name, mechs)).collect(),
        Some(requested) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for u in requested {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|(name, count)| {
                    let failed = |code, message: String| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(StrBytes::from_string(name.to_owned()))
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    };
                    match users.get(name) {
                        _ if count > 1 => failed(
                            error_code::DUPLICATE_RESOURCE,
                            format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                            ),
                        ),
                        None => failed(
                            error_code::RESOURCE_NOT_FOUND,
                            format!("Attempt to describe a user credential that does not exist: {name}"),
                        ),
                        Some(mechs) => ok(name, mechs),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_error_message(None).with_results(results)
}

/// A refusal (T-USER-2, or 34 mid-authentication): the code at the top and in one result
/// per requested user; none for a null or empty list (D-17).
pub fn refused(
    req: &DescribeUserScramCredentialsRequest,
    code: i16,
    message: Option<StrBytes>,
) -> DescribeUserScramCredentialsResponse {
    let results = req
        .users
        .iter()
        .flatten()
        .map(|u| {
            DescribeUserScramCredentialsResult::default()
                .with_user(u.name.clone())
                .with_error_code(code)
                .with_error_message(message.clone())
        })
        .collect();
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_results(results)
}
