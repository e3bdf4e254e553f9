//! @platformatic/kafka (npm, installed by tests/run.sh into tests/interop/node) against the
//! `ktb` binary. The package's `Admin` class has no token or SCRAM-user calls, so
//! tests/interop/node/platformatic_client.mjs sends the package's own protocol-level requests
//! (CreateDelegationToken v3, RenewDelegationToken v2, ExpireDelegationToken v2,
//! DescribeDelegationToken v3, Metadata v12, Alter/DescribeUserScramCredentials v0) over its
//! `Connection` after its own SCRAM login (SPEC §8.3, §8.4).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::common::KtbProcess;

const ADMIN_PASSWORD: &str = "node-admin-secret";
/// Twenty zero bytes: the right length for HmacSHA1, and no token's HMAC.
const UNKNOWN_HMAC: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// `delegation.token.max.lifetime.ms` default.
const WEEK_MS: i64 = 604_800_000;
/// `delegation.token.expiry.time.ms` default.
const DAY_MS: i64 = 86_400_000;

fn node() -> Command {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node");
    assert!(
        dir.join("node_modules/@platformatic/kafka").is_dir(),
        "@platformatic/kafka is not installed: run tests/run.sh, which installs it (npm ci --prefix tests/interop/node)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("platformatic_client.mjs"));
    cmd
}

/// Runs one action of platformatic_client.mjs and returns the JSON object it prints.
pub(crate) fn run(addr: &str, mech: &str, user: &str, password: &str, action: &str, args: &[&str]) -> Value {
    let out = node().args([addr, mech, user, password, action]).args(args).output().expect("node (20+) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "@platformatic/kafka: {stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// Runs an action as the bootstrap super user `admin`, over SCRAM-SHA-512.
fn admin(addr: &str, action: &str, args: &[&str]) -> Value {
    run(addr, "SCRAM-SHA-512", "admin", ADMIN_PASSWORD, action, args)
}

fn broker(cwd: &Path) -> KtbProcess {
    KtbProcess::start(
        cwd,
        &[],
        &[
            ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("KTB_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", "0"),
        ],
    )
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Runs `f` and returns its result between the wall-clock times (ms) just before and after.
fn timed(f: impl FnOnce() -> Value) -> (i64, Value, i64) {
    let before = now_ms();
    let v = f();
    (before, v, now_ms())
}

fn ms(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string {key} in {v}"))
}

/// The owner of a Create response or a described token, as `Type:name`.
fn owner(v: &Value) -> String {
    format!("{}:{}", text(v, "principalType"), text(v, "principalName"))
}

/// The requester of a Create response or a described token, as `Type:name`.
fn requester(v: &Value) -> String {
    format!("{}:{}", text(v, "tokenRequesterPrincipalType"), text(v, "tokenRequesterPrincipalName"))
}

/// T-TOKEN-3: 22 characters of unpadded URL-safe base64, not starting with `-`.
fn assert_token_id(id: &str) {
    assert_eq!(id.len(), 22, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
    assert!(!id.starts_with('-'), "{id}");
}

/// T-HMAC-1, T-HMAC-2: HmacSHA1 (the default) of the token id, keyed with the broker's
/// auto-generated secret string (T-ZERO-2), as standard base64.
fn expected_hmac(cwd: &Path, token_id: &str) -> String {
    let secret = std::fs::read_to_string(cwd.join("ktb-data/delegation-token.secret")).unwrap();
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.trim_end().as_bytes()).unwrap();
    mac.update(token_id.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The DescribeDelegationToken entry of a token, built from its Create response.
fn described(created: &Value, renewers: &[&str]) -> Value {
    let renewers: Vec<Value> =
        renewers.iter().map(|name| json!({"principalType": "User", "principalName": name})).collect();
    json!({
        "principalType": created["principalType"],
        "principalName": created["principalName"],
        "tokenRequesterPrincipalType": created["tokenRequesterPrincipalType"],
        "tokenRequesterPrincipalName": created["tokenRequesterPrincipalName"],
        "issueTimestamp": created["issueTimestampMs"],
        "expiryTimestamp": created["expiryTimestampMs"],
        "maxTimestamp": created["maxTimestampMs"],
        "tokenId": created["tokenId"],
        "hmac": created["hmac"],
        "renewers": renewers,
    })
}

/// T-DESC-3: described tokens come ordered by (issue timestamp, token id).
fn in_describe_order(mut tokens: Vec<Value>) -> Value {
    tokens.sort_by_key(|t| (t["issueTimestamp"].as_i64(), t["tokenId"].as_str().map(str::to_owned)));
    Value::Array(tokens)
}

/// T-SASL-2, T-SCRAM-12, T-META-1: @platformatic/kafka's `Connection` (SaslHandshake v1 as
/// its first request, then SaslAuthenticate v2) logs in with SCRAM-SHA-256 and
/// SCRAM-SHA-512, and Metadata v12 lists ktb at its own address as node and controller 1.
#[test]
fn platformatic_scram_login_and_metadata() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let sock = p.addr.expect("ktb listens");
    let addr = sock.to_string();
    let meta = std::fs::read_to_string(cwd.path().join("ktb-data/meta.properties")).unwrap();
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let v = run(&addr, mech, "admin", ADMIN_PASSWORD, "login", &[]);
        assert_eq!(v["ok"], true, "{mech}: {v}");
        assert_eq!(v["brokers"], json!([{"nodeId": 1, "host": "127.0.0.1", "port": sock.port()}]), "{v}");
        assert_eq!(v["controllerId"], 1, "{v}");
        assert!(meta.contains(&format!("cluster.id={}", text(&v, "clusterId"))), "{v}\n{meta}");
    }
}

/// T-SASL-8, T-SASL-10: a wrong password and an unknown user fail the same way, as
/// @platformatic/kafka surfaces it (§8.4): NetworkError → AuthenticationError →
/// ResponseError carrying 58 and the broker's generic message.
#[test]
fn platformatic_failed_login_is_58() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    for user in ["admin", "nobody"] {
        let v = run(&addr, "SCRAM-SHA-256", user, "not-the-password", "login", &[]);
        assert_eq!(v["code"], 58, "{user}: {v}");
        assert_eq!(v["causes"], json!(["NetworkError", "AuthenticationError", "ResponseError"]), "{v}");
        let message =
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
        assert_eq!(v["serverMessage"], message, "{v}");
    }
}

/// T-CREATE-1, T-CREATE-2, T-CREATE-3, T-CREATE-4, T-TOKEN-3, T-HMAC-1, T-HMAC-2: a user
/// creates a token for itself (null owner). Owner and requester are the user; the HMAC is
/// the 20 bytes of HmacSHA1; lifetimes are the server defaults, or the requested maximum
/// when it is shorter.
#[test]
fn platformatic_create_token_for_self() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();

    let (before, v, after) = timed(|| admin(&addr, "create", &[]));
    assert_eq!(v["errorCode"], 0, "{v}");
    assert_eq!(owner(&v), "User:admin", "{v}");
    assert_eq!(requester(&v), "User:admin", "{v}");
    let token_id = text(&v, "tokenId");
    assert_token_id(token_id);
    assert_eq!(STANDARD.decode(text(&v, "hmac")).unwrap().len(), 20, "HmacSHA1 by default: {v}");
    assert_eq!(v["hmac"], expected_hmac(cwd.path(), token_id), "{v}");
    let (issue, expiry, max) = (ms(&v, "issueTimestampMs"), ms(&v, "expiryTimestampMs"), ms(&v, "maxTimestampMs"));
    assert!((before..=after).contains(&issue), "issued at now ({before}..{after}): {v}");
    assert!(issue <= expiry && expiry <= max, "{v}");
    assert_eq!(max - issue, WEEK_MS, "{v}");
    assert_eq!(expiry - issue, DAY_MS, "{v}");

    // T-CREATE-2: a requested lifetime shorter than the server's wins, and caps the expiry.
    let v = admin(&addr, "create", &["-", "-", "3600000"]);
    assert_eq!(v["errorCode"], 0, "{v}");
    assert_eq!(ms(&v, "maxTimestampMs") - ms(&v, "issueTimestampMs"), 3_600_000, "{v}");
    assert_eq!(ms(&v, "expiryTimestampMs"), ms(&v, "maxTimestampMs"), "{v}");
    // A longer one does not extend the server's maximum.
    let two_weeks = (2 * WEEK_MS).to_string();
    let v = admin(&addr, "create", &["-", "-", two_weeks.as_str()]);
    assert_eq!(ms(&v, "maxTimestampMs") - ms(&v, "issueTimestampMs"), WEEK_MS, "{v}");
}

/// T-CREATE-4, T-CREATE-7, §5.4 (a super user creates for another owner): admin creates a
/// token owned by `alice` with renewer `bob`, neither of which is a user. The owner is
/// alice, the requester admin, and Describe shows the renewer.
#[test]
fn platformatic_super_user_creates_for_another_owner() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let v = admin(&addr, "create", &["alice", "bob"]);
    assert_eq!(v["errorCode"], 0, "{v}");
    assert_eq!(owner(&v), "User:alice", "{v}");
    assert_eq!(requester(&v), "User:admin", "{v}");
    assert_token_id(text(&v, "tokenId"));
    let d = admin(&addr, "describe", &["alice"]);
    assert_eq!(d["tokens"], json!([described(&v, &["bob"])]), "{d}");
}

/// T-DESC-1, T-DESC-2, T-DESC-3, §4.9 filter, §5.4 (a super user describes every token):
/// null owners list every token with every field equal to what Create returned, the HMAC
/// included; owners `alice` keep the tokens alice owns or renews; the requester counts as
/// a match too; an empty array lists nothing.
#[test]
fn platformatic_describe_tokens() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let own = admin(&addr, "create", &[]);
    let alices = admin(&addr, "create", &["alice", "bob"]);
    let renewed_by_alice = admin(&addr, "create", &["carol", "alice,bob"]);
    let daves = admin(&addr, "create", &["dave", "erin"]);
    for v in [&own, &alices, &renewed_by_alice, &daves] {
        assert_eq!(v["errorCode"], 0, "{v}");
    }
    let every = in_describe_order(vec![
        described(&own, &[]),
        described(&alices, &["bob"]),
        described(&renewed_by_alice, &["alice", "bob"]),
        described(&daves, &["erin"]),
    ]);

    let d = admin(&addr, "describe", &["null"]);
    assert_eq!(d["errorCode"], 0, "{d}");
    assert_eq!(d["tokens"], every, "{d}");

    let d = admin(&addr, "describe", &["alice"]);
    assert_eq!(d["errorCode"], 0, "{d}");
    let expected =
        in_describe_order(vec![described(&alices, &["bob"]), described(&renewed_by_alice, &["alice", "bob"])]);
    assert_eq!(d["tokens"], expected, "{d}");

    // admin requested all four, and ownerOrRenewer counts the requester.
    assert_eq!(admin(&addr, "describe", &["admin"])["tokens"], every);

    let d = admin(&addr, "describe", &["[]"]);
    assert_eq!(d, json!({"errorCode": 0, "tokens": []}), "T-DESC-1: empty owners list nothing");
}

/// T-RENEW-1, T-RENEW-2, T-RENEW-4, §4.7 (62): a renewal sets expiry to now + period,
/// never past the server's renew interval nor past max; an unknown HMAC gets 62 with
/// expiry -1.
#[test]
fn platformatic_renew_token() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let t = admin(&addr, "create", &[]);
    let hmac = text(&t, "hmac");

    let (before, v, after) = timed(|| admin(&addr, "renew", &[hmac, "1000"]));
    assert_eq!(v["errorCode"], 0, "{v}");
    let expiry = ms(&v, "expiryTimestampMs");
    assert!((before + 1000..=after + 1000).contains(&expiry), "now + 1000 ({before}..{after}): {v}");
    assert!(ms(&t, "issueTimestampMs") <= expiry && expiry <= ms(&t, "maxTimestampMs"), "{t}\n{v}");

    // The token above expires a second later; renew a fresh one past the renew interval.
    let t = admin(&addr, "create", &[]);
    let period = (2 * DAY_MS).to_string();
    let (before, v, after) = timed(|| admin(&addr, "renew", &[text(&t, "hmac"), period.as_str()]));
    assert_eq!(v["errorCode"], 0, "{v}");
    let expiry = ms(&v, "expiryTimestampMs");
    assert!((before + DAY_MS..=after + DAY_MS).contains(&expiry), "capped at now + 1 day: {v}");

    let v = admin(&addr, "renew", &[UNKNOWN_HMAC, "1000"]);
    assert_eq!(v, json!({"errorCode": 62, "expiryTimestampMs": -1}));
}

/// T-EXPIRE-1, T-EXPIRE-3, T-EXPIRE-4, §4.7–4.8 (62): expire with a period moves expiry to
/// now + period, which Describe shows; -1 deletes the token at once (expiry = now), after
/// which Describe no longer lists it and Renew and Expire get 62.
#[test]
fn platformatic_expire_token() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let t = admin(&addr, "create", &[]);
    let hmac = text(&t, "hmac");

    let (before, v, after) = timed(|| admin(&addr, "expire", &[hmac, "5000"]));
    assert_eq!(v["errorCode"], 0, "{v}");
    let expiry = ms(&v, "expiryTimestampMs");
    assert!((before + 5000..=after + 5000).contains(&expiry), "now + 5000 ({before}..{after}): {v}");
    let d = admin(&addr, "describe", &["null"]);
    assert_eq!(d["tokens"][0]["expiryTimestamp"], expiry, "{d}");

    let (before, v, after) = timed(|| admin(&addr, "expire", &[hmac, "-1"]));
    assert_eq!(v["errorCode"], 0, "{v}");
    assert!((before..=after).contains(&ms(&v, "expiryTimestampMs")), "expiry = now ({before}..{after}): {v}");
    assert_eq!(admin(&addr, "describe", &["null"]), json!({"errorCode": 0, "tokens": []}));
    assert_eq!(admin(&addr, "renew", &[hmac, "1000"]), json!({"errorCode": 62, "expiryTimestampMs": -1}));
    assert_eq!(admin(&addr, "expire", &[hmac, "-1"]), json!({"errorCode": 62, "expiryTimestampMs": -1}));
}

/// T-TOKEN-2, T-SWEEP-2, T-EXPIRE-2, §4.7 (66): after expire with period 0 the token is
/// expired but not yet swept: Describe still lists it, Renew and Expire with a period get
/// 66, and Expire -1 still deletes it.
#[test]
fn platformatic_expired_token_is_66_until_deleted() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let t = admin(&addr, "create", &[]);
    let hmac = text(&t, "hmac");
    assert_eq!(admin(&addr, "expire", &[hmac, "0"])["errorCode"], 0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(admin(&addr, "describe", &["null"])["tokens"][0]["tokenId"], t["tokenId"]);
    assert_eq!(admin(&addr, "renew", &[hmac, "1000"]), json!({"errorCode": 66, "expiryTimestampMs": -1}));
    assert_eq!(admin(&addr, "expire", &[hmac, "1000"]), json!({"errorCode": 66, "expiryTimestampMs": -1}));
    assert_eq!(admin(&addr, "expire", &[hmac, "-1"])["errorCode"], 0);
    assert_eq!(admin(&addr, "describe", &["null"])["tokens"], json!([]));
}

/// T-TLOGIN-5 (D-1), T-TLOGIN-2, T-GATE-1, T-TLOGIN-3, T-EXPIRE-4: @platformatic/kafka
/// cannot send `tokenauth=true`, so it logs in with the token id as user and the base64
/// HMAC as password; ktb takes that as a token login with both mechanisms. On that
/// connection Metadata works, and CreateDelegationToken and DescribeDelegationToken answer
/// 64. Once the token is expired with -1, the same login fails with 58.
#[test]
fn platformatic_implicit_token_login() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let t = admin(&addr, "create", &[]);
    let (id, hmac) = (text(&t, "tokenId"), text(&t, "hmac"));
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let v = run(&addr, mech, id, hmac, "token-create", &[]);
        assert_eq!(v, json!({"metadataOk": true, "createErrorCode": 64}), "{mech}");
        let v = run(&addr, mech, id, hmac, "describe", &["null"]);
        assert_eq!(v, json!({"errorCode": 64, "tokens": []}), "{mech}");
    }
    assert_eq!(admin(&addr, "expire", &[hmac, "-1"])["errorCode"], 0);
    let v = run(&addr, "SCRAM-SHA-256", id, hmac, "login", &[]);
    assert_eq!(v["code"], 58, "a deleted token no longer logs in: {v}");
}

/// T-USER-2, T-USER-3, T-USER-4, T-USER-5, T-USER-6, T-USER-8, T-WIRE-12: the package's
/// AlterUserScramCredentials v0 (it salts the password itself, and sends a trailing byte
/// after the body) adds `bob`, who then logs in with both mechanisms; its
/// DescribeUserScramCredentials v0 lists the users; bob, not a super user, gets 31 for both.
#[test]
fn platformatic_user_credential_apis() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let v = admin(&addr, "add-user", &["bob", "bob-secret"]);
    let ok = json!({"user": "bob", "errorCode": 0, "errorMessage": null});
    assert_eq!(v, json!({"results": [ok, ok]}));
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        assert_eq!(run(&addr, mech, "bob", "bob-secret", "login", &[])["ok"], true, "{mech}");
    }

    let infos = |i: i32| json!([{"mechanism": 1, "iterations": i}, {"mechanism": 2, "iterations": i}]);
    let v = admin(&addr, "describe-users", &["null"]);
    // D-26: the bootstrap user has ktb's own 4096 iterations; bob was added with 8192.
    let user = |name: &str| {
        let i = if name == "admin" { 4096 } else { 8192 };
        json!({"user": name, "errorCode": 0, "errorMessage": null, "credentialInfos": infos(i)})
    };
    assert_eq!(v, json!({"errorCode": 0, "errorMessage": null, "results": [user("admin"), user("bob")]}));
    let v = admin(&addr, "describe-users", &["bob,nobody"]);
    let missing = "Attempt to describe a user credential that does not exist: nobody";
    let nobody = json!({"user": "nobody", "errorCode": 91, "errorMessage": missing, "credentialInfos": []});
    assert_eq!(v["results"], json!([user("bob"), nobody]), "{v}");

    let v = run(&addr, "SCRAM-SHA-256", "bob", "bob-secret", "describe-users", &["null"]);
    assert_eq!(v, json!({"errorCode": 31, "errorMessage": null, "results": []}));
    let v = run(&addr, "SCRAM-SHA-256", "bob", "bob-secret", "add-user", &["eve", "eve-secret"]);
    let denied = json!({"user": "eve", "errorCode": 31, "errorMessage": "Cluster authorization failed."});
    assert_eq!(v, json!({"results": [denied, denied]}));
}

/// §5.4 (rows for a user that is not a super user), T-CREATE-5, T-RENEW-3, §4.7–4.9 (63,
/// 65), D-13 (off by default): bob may create only for himself (65 otherwise, with the
/// error body of T-CREATE-5), renews only tokens he owns or renews (63 otherwise, but 66
/// first for an expired token), and describes only those and the ones he requested; the
/// super user cannot renew or expire a token it neither owns nor renews.
#[test]
fn platformatic_non_super_user_token_rules() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    assert_eq!(admin(&addr, "add-user", &["bob", "bob-secret"])["results"][0]["errorCode"], 0);
    let bob = |action: &str, args: &[&str]| run(&addr, "SCRAM-SHA-256", "bob", "bob-secret", action, args);

    let admins = admin(&addr, "create", &[]);
    let alices = admin(&addr, "create", &["alice", "bob"]);
    let bobs = bob("create", &[]);
    assert_eq!((owner(&bobs), requester(&bobs)), ("User:bob".to_owned(), "User:bob".to_owned()), "{bobs}");

    let v = bob("create", &["alice"]);
    let refused = json!({
        "errorCode": 65,
        "principalType": "User", "principalName": "alice",
        "tokenRequesterPrincipalType": "User", "tokenRequesterPrincipalName": "bob",
        "issueTimestampMs": -1, "expiryTimestampMs": -1, "maxTimestampMs": -1,
        "tokenId": "", "hmac": "",
    });
    assert_eq!(v, refused);

    let d = bob("describe", &["null"]);
    assert_eq!(d["tokens"], in_describe_order(vec![described(&alices, &["bob"]), described(&bobs, &[])]), "{d}");

    let admins_hmac = text(&admins, "hmac");
    let mismatch = json!({"errorCode": 63, "expiryTimestampMs": -1});
    assert_eq!(bob("renew", &[admins_hmac, "1000"]), mismatch);
    assert_eq!(bob("expire", &[admins_hmac, "1000"]), mismatch);
    assert_eq!(bob("renew", &[text(&alices, "hmac"), "1000"])["errorCode"], 0, "bob renews alice's token");
    assert_eq!(admin(&addr, "renew", &[text(&bobs, "hmac"), "1000"]), mismatch, "D-13 is off");
    assert_eq!(admin(&addr, "expire", &[text(&bobs, "hmac"), "-1"]), mismatch, "D-13 is off");

    assert_eq!(admin(&addr, "expire", &[admins_hmac, "0"])["errorCode"], 0);
    std::thread::sleep(Duration::from_millis(5));
    let v = bob("renew", &[admins_hmac, "1000"]);
    assert_eq!(v, json!({"errorCode": 66, "expiryTimestampMs": -1}), "T-RENEW-3: expiry is checked before ownership");
}
