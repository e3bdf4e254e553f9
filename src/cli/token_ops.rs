//! What the token commands and the refresh sidecar share: the token calls to a broker,
//! the created token as printed and stored, and the formats of times and client settings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kafka_protocol::messages::create_delegation_token_request::CreatableRenewers;
use kafka_protocol::messages::describe_delegation_token_request::DescribeDelegationTokenOwner;
use kafka_protocol::messages::describe_delegation_token_response::DescribedDelegationToken;
use kafka_protocol::messages::{
    ApiKey, CreateDelegationTokenRequest, DescribeDelegationTokenRequest, ExpireDelegationTokenRequest,
    RenewDelegationTokenRequest, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::CliError;
use crate::auth::Principal;
use crate::client::Client;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

pub use crate::clock::rfc3339;

/// "in 23h 59m" or "3m ago".
pub fn relative(ms: i64, now: i64) -> String {
    let d = ms.saturating_sub(now).unsigned_abs().saturating_add(500) / 1000;
    let text = match d {
        d if d >= 86_400 => format!("{}d {}h", d / 86_400, d % 86_400 / 3600),
        d if d >= 3600 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        d if d >= 60 => format!("{}m {}s", d / 60, d % 60),
        d => format!("{d}s"),
    };
    if ms >= now { format!("in {text}") } else { format!("{text} ago") }
}

pub fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// The ready-to-paste client settings for a token (T-CLI-4).
pub fn snippets(protocol: &str, mechanism: &str, bootstrap: &str, token_id: &str, hmac_b64: &str) -> [String; 3] {
    let java = format!(
        "security.protocol={protocol}\nsasl.mechanism={mechanism}\nsasl.jaas.config=org.apache.kafka.common.security.\
         scram.ScramLoginModule required username=\"{token_id}\" password=\"{hmac_b64}\" tokenauth=\"true\";"
    );
    let librdkafka = format!(
        "security.protocol={protocol}\nsasl.mechanisms={mechanism}\nsasl.username={token_id}\nsasl.password={hmac_b64}"
    );
    let kcat = format!(
        "kcat -b {bootstrap} -X security.protocol={protocol} -X sasl.mechanisms={mechanism} -X sasl.username={token_id} \
         -X sasl.password={hmac_b64} -L"
    );
    [java, librdkafka, kcat]
}

/// A created token, as the CLI and the refresh sidecar print and store it (its `Debug`
/// hides the HMAC).
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CreatedToken {
    /// The token id.
    pub token_id: String,
    /// The HMAC, standard base64.
    pub hmac: String,
    /// `Type:name`.
    pub owner: String,
    /// `Type:name` (empty before CreateDelegationToken v3).
    pub requester: String,
    /// `Type:name` each.
    pub renewers: Vec<String>,
    /// Issue time, epoch ms.
    pub issue_timestamp_ms: i64,
    /// Expiry time, epoch ms.
    pub expiry_timestamp_ms: i64,
    /// Max time, epoch ms.
    pub max_timestamp_ms: i64,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token_id", &self.token_id)
            .field("owner", &self.owner)
            .field("expiry_timestamp_ms", &self.expiry_timestamp_ms)
            .field("max_timestamp_ms", &self.max_timestamp_ms)
            .finish_non_exhaustive()
    }
}

impl CreatedToken {
    /// The JSON of T-CLI-4 for this token.
    pub fn to_json(&self, protocol: &str, mechanism: &str, bootstrap: &str) -> serde_json::Value {
        let [java, librdkafka, kcat] = snippets(protocol, mechanism, bootstrap, &self.token_id, &self.hmac);
        json!({
            "token_id": self.token_id, "hmac": self.hmac, "owner": self.owner, "requester": self.requester,
            "renewers": self.renewers, "issue_timestamp_ms": self.issue_timestamp_ms,
            "expiry_timestamp_ms": self.expiry_timestamp_ms, "max_timestamp_ms": self.max_timestamp_ms,
            "issue_time": rfc3339(self.issue_timestamp_ms), "expiry_time": rfc3339(self.expiry_timestamp_ms),
            "max_time": rfc3339(self.max_timestamp_ms),
            "snippets": {"java": java, "librdkafka": librdkafka, "kcat": kcat},
        })
    }
}

/// Sends CreateDelegationToken on an authenticated connection.
pub async fn create_token(
    client: &mut Client,
    owner: Option<&Principal>,
    renewers: &[Principal],
    max_lifetime_ms: i64,
) -> Result<CreatedToken, CliError> {
    let version = client.version(ApiKey::CreateDelegationToken)?;
    let mut req = CreateDelegationTokenRequest::default().with_max_lifetime_ms(max_lifetime_ms).with_renewers(
        renewers
            .iter()
            .map(|r| CreatableRenewers::default().with_principal_type(s(&r.kind)).with_principal_name(s(&r.name)))
            .collect(),
    );
    if let Some(o) = owner {
        if version < 3 {
            return Err(CliError::Usage(format!(
                "--owner needs CreateDelegationToken v3; the broker offers up to v{version}"
            )));
        }
        req.owner_principal_type = Some(s(&o.kind));
        req.owner_principal_name = Some(s(&o.name));
    }
    let ResponseKind::CreateDelegationToken(r) =
        client.call(ApiKey::CreateDelegationToken, version, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to CreateDelegationToken".into()));
    };
    if r.error_code != 0 {
        return Err(CliError::Kafka { code: r.error_code, message: String::new() });
    }
    let requester = if version >= 3 {
        format!("{}:{}", r.token_requester_principal_type, r.token_requester_principal_name)
    } else {
        String::new()
    };
    Ok(CreatedToken {
        token_id: r.token_id.to_string(),
        hmac: STANDARD.encode(&r.hmac),
        owner: format!("{}:{}", r.principal_type, r.principal_name),
        requester,
        renewers: renewers.iter().map(|p| p.to_string()).collect(),
        issue_timestamp_ms: r.issue_timestamp_ms,
        expiry_timestamp_ms: r.expiry_timestamp_ms,
        max_timestamp_ms: r.max_timestamp_ms,
    })
}

/// Sends RenewDelegationToken (`expire == false`) or ExpireDelegationToken; returns the
/// new expiry.
pub async fn change_token(client: &mut Client, hmac: &[u8], period_ms: i64, expire: bool) -> Result<i64, CliError> {
    let hmac = Bytes::copy_from_slice(hmac);
    let (code, expiry) = if expire {
        let req = ExpireDelegationTokenRequest::default().with_hmac(hmac).with_expiry_time_period_ms(period_ms);
        match client.request(ApiKey::ExpireDelegationToken, req.into()).await? {
            (_, ResponseKind::ExpireDelegationToken(r)) => (r.error_code, r.expiry_timestamp_ms),
            _ => return Err(CliError::Internal("unexpected answer to ExpireDelegationToken".into())),
        }
    } else {
        let req = RenewDelegationTokenRequest::default().with_hmac(hmac).with_renew_period_ms(period_ms);
        match client.request(ApiKey::RenewDelegationToken, req.into()).await? {
            (_, ResponseKind::RenewDelegationToken(r)) => (r.error_code, r.expiry_timestamp_ms),
            _ => return Err(CliError::Internal("unexpected answer to RenewDelegationToken".into())),
        }
    };
    if code != 0 {
        return Err(CliError::Kafka { code, message: String::new() });
    }
    Ok(expiry)
}

/// Sends DescribeDelegationToken; `None` sends null owners (every visible token), an
/// empty list matches no token (as Kafka answers it).
pub async fn describe_tokens(
    client: &mut Client,
    owners: Option<&[Principal]>,
) -> Result<(i16, Vec<DescribedDelegationToken>), CliError> {
    let owners = owners.map(|owners| {
        owners
            .iter()
            .map(|o| {
                DescribeDelegationTokenOwner::default().with_principal_type(s(&o.kind)).with_principal_name(s(&o.name))
            })
            .collect()
    });
    let req = DescribeDelegationTokenRequest::default().with_owners(owners);
    let (version, ResponseKind::DescribeDelegationToken(r)) =
        client.request(ApiKey::DescribeDelegationToken, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to DescribeDelegationToken".into()));
    };
    if r.error_code != 0 {
        return Err(CliError::Kafka { code: r.error_code, message: String::new() });
    }
    Ok((version, r.tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_relative() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(relative(90_000_000 + 5_000, 5_000), "in 1d 1h");
        assert_eq!(relative(0, 180_000), "3m 0s ago");
    }
}
