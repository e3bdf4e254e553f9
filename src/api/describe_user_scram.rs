//! DescribeUserScramCredentials (key 50), version 0 (SPEC §5.2).

use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use ktb_protocol::error_code;

/// The answer to a principal that is not a super user (T-USER-2): top-level 31 with no
/// message, and one 31 result per requested user (none for a null or empty list, D-17).
pub fn unauthorized(req: &DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let results = req
        .users
        .iter()
        .flatten()
        .map(|u| {
            DescribeUserScramCredentialsResult::default()
                .with_user(u.name.clone())
                .with_error_code(error_code::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(None)
        })
        .collect();
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(error_code::CLUSTER_AUTHORIZATION_FAILED)
        .with_error_message(None)
        .with_results(results)
}
