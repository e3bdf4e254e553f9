//! `ktb secret rotate` and `ktb secret status` (T-ROTATE-5, T-ROTATE-6): the keyring on
//! disk and, through a broker's metrics listener, the keys a running broker holds.
//! Neither ever prints a key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{CliError, Output, print_json};
use crate::clock::{Clock, SystemClock};
use crate::rotation::{Status, assemble, fingerprints_of};
use crate::store::SledStore;
use crate::tokens::keyring::{self, KEYRING_FILE, Keyring, shown_id};
use crate::tokens::{MasterSecret, SECRET_FILE};

/// Appends a new random key to the keyring of `data_dir` or `keyring_file` and says what
/// the broker does next.
pub fn rotate(
    data_dir: Option<&Path>,
    keyring_file: Option<&Path>,
    key_id: Option<&str>,
    output: Output,
) -> Result<(), CliError> {
    if data_dir.is_none() && keyring_file.is_none() {
        return Err(CliError::Usage(
            "name the keyring: --data-dir DIR (the broker's, for its delegation-token.keyring) or --keyring-file FILE"
                .into(),
        ));
    }
    if let Some(dir) = data_dir.filter(|d| !d.is_dir()) {
        return Err(CliError::Usage(format!("--data-dir {}: no such directory", dir.display())));
    }
    let (path, secret_file) = keyring::keyring_path(data_dir, keyring_file);
    let done = keyring::rotate(&path, secret_file.as_deref(), key_id, SystemClock.now_ms()).map_err(CliError::Usage)?;
    match output {
        Output::Json => print_json(&json!({
            "keyring": done.path.display().to_string(),
            "key_id": done.key_id,
            "key_ids": done.key_ids,
            "migrated_generated_secret": done.migrated,
        })),
        Output::Table => {
            if done.migrated {
                println!(
                    "moved the generated secret into {} as key {}: tokens made with it keep working",
                    done.path.display(),
                    keyring::DEFAULT_KEY_ID
                );
            }
            println!("added key {} to {}", done.key_id, done.path.display());
            println!("keys: {}", done.key_ids.join(", "));
            println!(
                "a running broker picks it up within two seconds (or on SIGHUP); on etcd new tokens use it once every \
                 live broker holds it"
            );
        }
    }
    Ok(())
}

/// Shows each key's id, fingerprint, live tokens and holders: from a running broker
/// (`url`, its metrics listener) or from the files of a stopped one.
pub async fn status(
    data_dir: Option<&Path>,
    keyring_file: Option<&Path>,
    url: Option<&str>,
    output: Output,
) -> Result<(), CliError> {
    let status = match url {
        Some(url) => from_broker(url).await?,
        None => offline(data_dir, keyring_file).await?,
    };
    match output {
        Output::Json => print_json(&serde_json::to_value(&status).map_err(|e| CliError::Internal(e.to_string()))?),
        Output::Table => print!("{}", table(&status)),
    }
    Ok(())
}

/// The status a running broker reports on `GET /keys` of its metrics listener.
async fn from_broker(url: &str) -> Result<Status, CliError> {
    let base = url.trim_end_matches('/');
    let url = if base.ends_with("/keys") { base.to_owned() } else { format!("{base}/keys") };
    let (code, body) = super::health::get(&url, Duration::from_secs(10)).await.map_err(|e| match e {
        super::health::HealthError::BadUrl(m) => CliError::Usage(m),
        super::health::HealthError::NoAnswer(m) => CliError::Connection(m),
    })?;
    if code != 200 {
        return Err(CliError::Connection(format!(
            "{url} answered {code}: {}",
            super::health::printable(body.trim_end())
        )));
    }
    serde_json::from_str(&body).map_err(|e| CliError::Connection(format!("{url} did not answer a key status: {e}")))
}

/// The status from the files of a stopped broker: the keyring (or the generated
/// secret), and the live tokens per key when `data_dir` holds a sled store.
async fn offline(data_dir: Option<&Path>, keyring_file: Option<&Path>) -> Result<Status, CliError> {
    if data_dir.is_none() && keyring_file.is_none() {
        return Err(CliError::Usage(
            "say where the keys are: --url (a running broker's metrics listener), --data-dir DIR or --keyring-file FILE"
                .into(),
        ));
    }
    let (path, secret_file) = keyring::keyring_path(data_dir, keyring_file);
    let ring = if path.exists() {
        Some(Keyring::read(&path).map_err(CliError::Usage)?)
    } else {
        match (keyring_file, secret_file.filter(|f| f.exists())) {
            (Some(_), _) => return Err(CliError::Usage(format!("the keyring {} does not exist", path.display()))),
            (None, Some(file)) => {
                let dir = file.parent().unwrap_or(Path::new("."));
                MasterSecret::load(&crate::config::SecretSetting::Generated, dir)
                    .map_err(CliError::Usage)?
                    .map(Keyring::single)
            }
            (None, None) => None,
        }
    };
    let fps = match &ring {
        Some(r) => fingerprints_of(r).await.map_err(CliError::Internal)?,
        None => Vec::new(),
    };
    let per_key = match data_dir.map(|d| d.join("store")).filter(|s| s.is_dir()) {
        // A running broker holds its store: the keys are still shown, without counts.
        Some(store) => match count_tokens(&store).await {
            Ok(counts) => Some(counts),
            Err(e) => {
                eprintln!("note: live tokens are not counted: {e}");
                None
            }
        },
        None => None,
    };
    let active = ring.as_ref().map(|r| shown_id(&r.newest().id).to_owned());
    Ok(assemble(&fps, active.as_deref(), per_key.as_ref(), None))
}

/// Live tokens per stored key id in a stopped broker's sled store.
async fn count_tokens(store: &Path) -> Result<BTreeMap<String, usize>, CliError> {
    let sled = SledStore::open(store).map_err(|e| {
        CliError::Usage(match e.to_string().contains("could not acquire lock") {
            true => format!(
                "a running broker holds {}; ask it instead: ktb secret status --url http://HOST:PORT (its \
                 ktb.metrics.listener)",
                store.display()
            ),
            false => format!("cannot open the store in {}: {e}", store.display()),
        })
    })?;
    crate::tokens::live_tokens_per_key(&sled, SystemClock.now_ms())
        .await
        .map_err(|e| CliError::Internal(format!("cannot read the tokens: {e}")))
}

/// The human form: one row per key.
fn table(s: &Status) -> String {
    if s.keys.is_empty() {
        return "no master keys: delegation tokens are disabled, or no secret was generated yet\n".into();
    }
    let width = s.keys.iter().map(|k| k.key_id.len()).max().unwrap_or(0).max(6);
    let brokers = s.keys.iter().any(|k| k.brokers.is_some());
    let mut out = format!(
        "{:<width$}  {:<6}  {:<10}  {:<11}  {:<16}",
        "KEY ID", "ACTIVE", "IN KEYRING", "LIVE TOKENS", "FINGERPRINT"
    );
    if brokers {
        out.push_str("  BROKERS");
    }
    trim_line(&mut out);
    for k in &s.keys {
        let live = k.live_tokens.map_or("?".to_owned(), |n| n.to_string());
        let fp: String = k.fingerprint.as_deref().map_or("-".into(), |f| f.chars().take(16).collect());
        out.push_str(&format!(
            "{:<width$}  {:<6}  {:<10}  {:<11}  {:<16}",
            k.key_id,
            if k.active { "yes" } else { "" },
            if k.in_keyring { "yes" } else { "no" },
            live,
            fp
        ));
        if let Some(b) = &k.brokers {
            let list: Vec<String> = b.iter().map(i32::to_string).collect();
            out.push_str(&format!("  {}", if list.is_empty() { "-".to_owned() } else { list.join(",") }));
        }
        trim_line(&mut out);
    }
    if s.keys.iter().any(|k| !k.in_keyring) {
        out.push_str("keys not in the keyring: their tokens are refused here until they expire\n");
    }
    if s.keys.iter().any(|k| k.live_tokens.is_none()) {
        out.push_str(&format!(
            "live tokens are counted from a stopped broker's --data-dir or a running one's --url ({KEYRING_FILE} and \
             {SECRET_FILE} hold none)\n"
        ));
    }
    out
}

/// Ends the table's current line without trailing blanks.
fn trim_line(out: &mut String) {
    out.truncate(out.trim_end_matches(' ').len());
    out.push('\n');
}
