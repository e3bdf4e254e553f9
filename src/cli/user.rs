//! `ktb user add|describe|delete` against a running broker (SPEC §6.8).

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::scram::ScramMechanism;
use serde_json::json;

use super::settings::Settings;
use super::token_ops::{change_token, describe_tokens};
use super::{CliError, CommonFlags, Output, connect, print_json};
use crate::auth::Principal;
use crate::client::Client;

/// Flags of the online `user add`.
pub struct AddArgs<'a> {
    /// The user name.
    pub name: &'a str,
    /// `both`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: &'a str,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The password.
    pub password: String,
    /// True when the password was generated (it is printed).
    pub generated: bool,
}

fn mechanisms(m: &str) -> Result<Vec<ScramMechanism>, CliError> {
    match m {
        "both" | "all" => Ok(vec![ScramMechanism::Sha256, ScramMechanism::Sha512]),
        other => ScramMechanism::from_name(other)
            .map(|m| vec![m])
            .ok_or_else(|| CliError::Usage(format!("--mechanism {other}: use SCRAM-SHA-256, SCRAM-SHA-512 or both"))),
    }
}

/// A connection to the controller, where AlterUserScramCredentials goes (T-CLI-3).
async fn controller(mut client: Client, s: &Settings, timeout_ms: i64) -> Result<Client, CliError> {
    let address = client.controller_address().await?;
    if address == client.address {
        return Ok(client);
    }
    connect(&s.with_bootstrap(address), timeout_ms).await
}

async fn alter(client: &mut Client, req: AlterUserScramCredentialsRequest) -> Result<(), CliError> {
    let (_, ResponseKind::AlterUserScramCredentials(r)) =
        client.request(ApiKey::AlterUserScramCredentials, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to AlterUserScramCredentials".into()));
    };
    match r.results.iter().find(|x| x.error_code != 0) {
        Some(x) => Err(CliError::Kafka {
            code: x.error_code,
            message: x.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default(),
        }),
        None => Ok(()),
    }
}

/// `ktb user add NAME` against the broker: one AlterUserScramCredentials per mechanism
/// (one alteration per user per request, T-USER-7), the salted password computed here.
pub async fn add(a: AddArgs<'_>, common: &CommonFlags) -> Result<(), CliError> {
    let mechs = mechanisms(a.mechanism)?;
    let s = super::settings(common)?;
    let client = connect(&s, common.timeout).await?;
    let mut client = controller(client, &s, common.timeout).await?;
    for m in &mechs {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| CliError::Internal(format!("no randomness: {e}")))?;
        let salted = m.salted_password(a.password.as_bytes(), &salt, a.iterations);
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(a.name.to_owned()))
                .with_mechanism(m.code())
                .with_iterations(a.iterations as i32)
                .with_salt(Bytes::copy_from_slice(&salt))
                .with_salted_password(Bytes::copy_from_slice(salted.expose())),
        ]);
        alter(&mut client, req).await?;
    }
    let names: Vec<&str> = mechs.iter().map(|m| m.name()).collect();
    match common.output {
        Output::Json => {
            let mut v = json!({"user": a.name, "mechanisms": names, "iterations": a.iterations});
            if a.generated {
                v["password"] = json!(a.password);
            }
            print_json(&v);
        }
        Output::Table => {
            println!("user {} now has {} ({} iterations)", a.name, names.join(" and "), a.iterations);
            if a.generated {
                println!("password: {}", a.password);
            }
        }
    }
    Ok(())
}

/// The users and their `(mechanism, iterations)`; `names` empty asks for every user.
async fn describe_users(client: &mut Client, names: &[String]) -> Result<Vec<(String, Vec<(String, i32)>)>, CliError> {
    let users = (!names.is_empty())
        .then(|| names.iter().map(|n| UserName::default().with_name(StrBytes::from_string(n.clone()))).collect());
    let req = DescribeUserScramCredentialsRequest::default().with_users(users);
    let (_, ResponseKind::DescribeUserScramCredentials(r)) =
        client.request(ApiKey::DescribeUserScramCredentials, req.into()).await?
    else {
        return Err(CliError::Internal("unexpected answer to DescribeUserScramCredentials".into()));
    };
    if r.error_code != 0 {
        return Err(CliError::Kafka { code: r.error_code, message: String::new() });
    }
    let mut out = Vec::new();
    for res in r.results {
        if res.error_code != 0 {
            return Err(CliError::Kafka {
                code: res.error_code,
                message: res.error_message.map(|m| m.to_string()).unwrap_or_else(|| res.user.to_string()),
            });
        }
        let infos = res
            .credential_infos
            .iter()
            .map(|c| {
                let name = ScramMechanism::from_code(c.mechanism)
                    .map(|m| m.name().to_owned())
                    .unwrap_or_else(|| c.mechanism.to_string());
                (name, c.iterations)
            })
            .collect();
        out.push((res.user.to_string(), infos));
    }
    Ok(out)
}

/// `ktb user describe [NAME]...`.
pub async fn describe(names: &[String], common: &CommonFlags) -> Result<(), CliError> {
    let s = super::settings(common)?;
    let mut client = connect(&s, common.timeout).await?;
    let users = describe_users(&mut client, names).await?;
    match common.output {
        Output::Json => {
            let list: Vec<_> = users
                .iter()
                .map(|(u, infos)| {
                    let creds: Vec<_> = infos.iter().map(|(m, i)| json!({"mechanism": m, "iterations": i})).collect();
                    json!({"user": u, "credentials": creds})
                })
                .collect();
            print_json(&json!({"users": list}));
        }
        Output::Table => {
            println!("{:<24}  CREDENTIALS", "USER");
            for (u, infos) in users {
                let creds: Vec<String> = infos.iter().map(|(m, i)| format!("{m} ({i} iterations)")).collect();
                println!("{u:<24}  {}", creds.join(", "));
            }
        }
    }
    Ok(())
}

/// `ktb user delete NAME [--mechanism M|all] [--expire-tokens]`.
pub async fn delete(name: &str, mechanism: &str, expire_tokens: bool, common: &CommonFlags) -> Result<(), CliError> {
    let s = super::settings(common)?;
    let mut client = connect(&s, common.timeout).await?;
    let mechs = if mechanism == "all" {
        let users = describe_users(&mut client, &[name.to_owned()]).await?;
        users.into_iter().flat_map(|(_, infos)| infos).filter_map(|(m, _)| ScramMechanism::from_name(&m)).collect()
    } else {
        mechanisms(mechanism)?
    };
    // Credentials first, so no token can be created between the two steps.
    let mut admin = controller(client, &s, common.timeout).await?;
    for m in &mechs {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(StrBytes::from_string(name.to_owned()))
                .with_mechanism(m.code()),
        ]);
        alter(&mut admin, req).await?;
    }
    let mut client = connect(&s, common.timeout).await?;
    let mut expired = Vec::new();
    if expire_tokens {
        let owner = Principal::user(name);
        let (_, tokens) = describe_tokens(&mut client, Some(std::slice::from_ref(&owner))).await?;
        for t in tokens.iter().filter(|t| t.principal_type.as_str() == "User" && t.principal_name.as_str() == name) {
            change_token(&mut client, &t.hmac, -1, true).await?;
            expired.push(t.token_id.to_string());
        }
    }
    let names: Vec<&str> = mechs.iter().map(|m| m.name()).collect();
    match common.output {
        Output::Json => print_json(&json!({"user": name, "deleted": names, "expired_tokens": expired})),
        Output::Table => {
            println!(
                "deleted {} of user {name}",
                if names.is_empty() { "nothing".to_owned() } else { names.join(" and ") }
            );
            if expire_tokens {
                println!("expired {} token(s) owned by User:{name}", expired.len());
            }
        }
    }
    Ok(())
}
