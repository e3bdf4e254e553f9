//! Every Kafka error code the broker can answer with, in one place.
//!
//! Values are Kafka's (`Errors.java`); names follow Kafka's enum.

/// Persistence failure or another unexpected internal error.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// Success.
pub const NONE: i16 = 0;
/// A Metadata topic entry: ktb serves no topics.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The request did not complete in time (the etcd store did not answer, T-CLUSTER-7); retriable.
pub const REQUEST_TIMED_OUT: i16 = 7;
/// Describe/AlterUserScramCredentials by a principal that is not a super user.
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// SaslHandshake with a mechanism that is not enabled; AlterUserScram with a bad mechanism.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// A request that is not valid in the connection's SASL state.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// ApiVersions at a version the broker does not know.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// ApiVersions v3+ with a malformed client software name or version.
pub const INVALID_REQUEST: i16 = 42;
/// A failed SASL exchange.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// A delegation-token API while no master secret is configured.
pub const DELEGATION_TOKEN_AUTH_DISABLED: i16 = 61;
/// Renew/Expire with an HMAC that matches no token.
pub const DELEGATION_TOKEN_NOT_FOUND: i16 = 62;
/// Renew/Expire by a principal that is neither owner nor renewer.
pub const DELEGATION_TOKEN_OWNER_MISMATCH: i16 = 63;
/// A delegation-token API on a token-authenticated or unauthenticated connection.
pub const DELEGATION_TOKEN_REQUEST_NOT_ALLOWED: i16 = 64;
/// Create for another owner without permission.
pub const DELEGATION_TOKEN_AUTHORIZATION_FAILED: i16 = 65;
/// Renew or Expire(period >= 0) of an expired token.
pub const DELEGATION_TOKEN_EXPIRED: i16 = 66;
/// A principal whose type is not `User`.
pub const INVALID_PRINCIPAL_TYPE: i16 = 67;
/// Describe/AlterUserScram of something that does not exist.
pub const RESOURCE_NOT_FOUND: i16 = 91;
/// Describe/AlterUserScram naming the same user twice.
pub const DUPLICATE_RESOURCE: i16 = 92;
/// AlterUserScram validation failure.
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
/// Metadata v12 topic requested by id.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// DescribeCluster v1 asking for controllers from a broker endpoint.
pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
/// DescribeCluster v1 with an endpoint type that is neither 1 nor 2.
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;

/// Every code above with Kafka's name, in ascending order of code (SPEC §7): the one list
/// both [`name`] and the metrics read.
pub const ALL: [(i16, &str); 23] = [
    (UNKNOWN_SERVER_ERROR, "UNKNOWN_SERVER_ERROR"),
    (NONE, "NONE"),
    (UNKNOWN_TOPIC_OR_PARTITION, "UNKNOWN_TOPIC_OR_PARTITION"),
    (REQUEST_TIMED_OUT, "REQUEST_TIMED_OUT"),
    (CLUSTER_AUTHORIZATION_FAILED, "CLUSTER_AUTHORIZATION_FAILED"),
    (UNSUPPORTED_SASL_MECHANISM, "UNSUPPORTED_SASL_MECHANISM"),
    (ILLEGAL_SASL_STATE, "ILLEGAL_SASL_STATE"),
    (UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION"),
    (INVALID_REQUEST, "INVALID_REQUEST"),
    (SASL_AUTHENTICATION_FAILED, "SASL_AUTHENTICATION_FAILED"),
    (DELEGATION_TOKEN_AUTH_DISABLED, "DELEGATION_TOKEN_AUTH_DISABLED"),
    (DELEGATION_TOKEN_NOT_FOUND, "DELEGATION_TOKEN_NOT_FOUND"),
    (DELEGATION_TOKEN_OWNER_MISMATCH, "DELEGATION_TOKEN_OWNER_MISMATCH"),
    (DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED"),
    (DELEGATION_TOKEN_AUTHORIZATION_FAILED, "DELEGATION_TOKEN_AUTHORIZATION_FAILED"),
    (DELEGATION_TOKEN_EXPIRED, "DELEGATION_TOKEN_EXPIRED"),
    (INVALID_PRINCIPAL_TYPE, "INVALID_PRINCIPAL_TYPE"),
    (RESOURCE_NOT_FOUND, "RESOURCE_NOT_FOUND"),
    (DUPLICATE_RESOURCE, "DUPLICATE_RESOURCE"),
    (UNACCEPTABLE_CREDENTIAL, "UNACCEPTABLE_CREDENTIAL"),
    (UNKNOWN_TOPIC_ID, "UNKNOWN_TOPIC_ID"),
    (MISMATCHED_ENDPOINT_TYPE, "MISMATCHED_ENDPOINT_TYPE"),
    (UNSUPPORTED_ENDPOINT_TYPE, "UNSUPPORTED_ENDPOINT_TYPE"),
];

/// Kafka's name for an error code, for logs and the command line.
pub fn name(code: i16) -> &'static str {
    ALL.binary_search_by_key(&code, |(c, _)| *c).map_or("UNKNOWN", |i| ALL[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code in [`ALL`] has a name, once, in ascending order.
    #[test]
    fn all_codes_are_named_and_sorted() {
        assert!(ALL.iter().all(|(c, n)| name(*c) == *n));
        assert!(ALL.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(name(DELEGATION_TOKEN_NOT_FOUND), "DELEGATION_TOKEN_NOT_FOUND");
        assert_eq!(name(12345), "UNKNOWN");
    }
}
