//! AlterUserScramCredentials (key 51), version 0 (SPEC §5.3).

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

/// The answer to a principal that is not a super user (T-USER-6): one 31 result per
/// distinct named user, sorted by name; nothing changes.
pub fn unauthorized(req: &AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let users: BTreeSet<&StrBytes> = req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
        .collect();
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(user.clone())
                .with_error_code(error_code::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str("Cluster authorization failed.")))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
