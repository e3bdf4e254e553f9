//! SCRAM users over real TCP: DescribeUserScramCredentials, AlterUserScramCredentials,
//! the authorization model, persistence and the offline recovery path (SPEC §5, T-ZERO-4).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use common::{ADMIN_PASSWORD, KtbProcess, TestBroker, TestClient, add_user, ktb_bin};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_token_broker::clock::SystemClock;
use ktb_protocol::error_code;
use ktb_protocol::scram::ScramMechanism;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

async fn describe(c: &mut TestClient, users: Option<&[&str]>) -> DescribeUserScramCredentialsResponse {
    let users = users.map(|u| u.iter().map(|n| UserName::default().with_name(s(n))).collect());
    let req = DescribeUserScramCredentialsRequest::default().with_users(users);
    match c.call(ApiKey::DescribeUserScramCredentials, 0, req.into()).await {
        ResponseKind::DescribeUserScramCredentials(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn alter(c: &mut TestClient, req: AlterUserScramCredentialsRequest) -> Vec<(String, i16, Option<String>)> {
    match c.call(ApiKey::AlterUserScramCredentials, 0, req.into()).await {
        ResponseKind::AlterUserScramCredentials(r) => r
            .results
            .iter()
            .map(|x| (x.user.to_string(), x.error_code, x.error_message.as_ref().map(|m| m.to_string())))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn upsert(name: &str, mech: i8, iterations: i32, salt: &[u8], salted: &[u8]) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion::default()
        .with_name(s(name))
        .with_mechanism(mech)
        .with_iterations(iterations)
        .with_salt(Bytes::copy_from_slice(salt))
        .with_salted_password(Bytes::copy_from_slice(salted))
}

fn delete(name: &str, mech: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default().with_name(s(name)).with_mechanism(mech)
}

fn salted(mech: ScramMechanism, pw: &str) -> Vec<u8> {
    mech.salted_password(pw.as_bytes(), b"0123456789abcdef", 8192).expose().to_vec()
}

/// Metadata v9's cluster authorized operations for the client's principal (T-META-3).
async fn cluster_operations(c: &mut TestClient) -> i32 {
    let req = MetadataRequest::default().with_topics(None).with_include_cluster_authorized_operations(true);
    match c.call(ApiKey::Metadata, 9, req.into()).await {
        ResponseKind::Metadata(m) => m.cluster_authorized_operations,
        other => panic!("{other:?}"),
    }
}

async fn admin(broker: &TestBroker) -> TestClient {
    let mut c = broker.connect().await;
    c.login_admin().await;
    c
}

/// T-USER-3, T-USER-5: null or empty Users means every user, sorted by name, each with
/// its mechanisms sorted by code and their iterations.
#[tokio::test]
async fn t_user_3_t_user_5_describe_everyone() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    add_user(&mut c, "zoe", "zoe-pw").await;
    add_user(&mut c, "bob", "bob-pw").await;
    for users in [None, Some(&[][..])] {
        let r = describe(&mut c, users).await;
        assert_eq!((r.error_code, r.error_message.as_deref()), (0, None));
        let names: Vec<&str> = r.results.iter().map(|x| x.user.as_str()).collect();
        assert_eq!(names, ["admin", "bob", "zoe"]);
        for x in &r.results {
            assert_eq!((x.error_code, x.error_message.as_deref()), (0, None));
            let infos: Vec<(i8, i32)> = x.credential_infos.iter().map(|i| (i.mechanism, i.iterations)).collect();
            // D-26: the bootstrap user gets ktb's own 4096; the others were added with 8192.
            let i = if x.user.as_str() == "admin" { 4096 } else { 8192 };
            assert_eq!(infos, [(1, i), (2, i)], "{}", x.user.as_str());
        }
    }
}

/// T-USER-4, T-USER-5: a named user that does not exist is 91, one named twice gets a
/// single 92, results sorted by name.
#[tokio::test]
async fn t_user_4_describe_named_users() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    let r = describe(&mut c, Some(&["nobody", "admin", "admin", "ghost"])).await;
    let got: Vec<(&str, i16, Option<&str>, usize)> = r
        .results
        .iter()
        .map(|x| (x.user.as_str(), x.error_code, x.error_message.as_deref(), x.credential_infos.len()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "admin",
                error_code::DUPLICATE_RESOURCE,
                Some("Cannot describe SCRAM credentials for the same user twice in a single request: admin"),
                0
            ),
            (
                "ghost",
                error_code::RESOURCE_NOT_FOUND,
                Some("Attempt to describe a user credential that does not exist: ghost"),
                0
            ),
            (
                "nobody",
                error_code::RESOURCE_NOT_FOUND,
                Some("Attempt to describe a user credential that does not exist: nobody"),
                0
            ),
        ]
    );
}

/// T-USER-7, T-USER-8, T-USER-VEC-E: an upserted credential logs in with its password
/// (keys derived from the salted password the client sent); every validation rule gives
/// its code and message; one alteration per user per request, even across mechanisms.
#[tokio::test]
async fn t_user_7_t_user_8_alter_validation() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    let good512 = salted(ScramMechanism::Sha512, "carol-pw");
    let good256 = salted(ScramMechanism::Sha256, "dave-pw");
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![delete("ghost", 1), delete("", 1), delete("eve", 7), delete("twice", 1)])
        .with_upsertions(vec![
            upsert("carol", 2, 8192, b"0123456789abcdef", &good512),
            upsert("dave", 1, 8192, b"0123456789abcdef", &good256),
            upsert("low", 1, 4095, b"salt", &good256),
            upsert("high", 1, 16385, b"salt", &good256),
            upsert("short", 2, 8192, b"salt", &good256),
            upsert("nosalt", 1, 8192, b"", &good256),
            upsert("badmech", 0, 8192, b"salt", &good256),
            upsert("", 1, 8192, b"salt", &good256),
            upsert("twice", 2, 8192, b"salt", &good512),
            upsert("eve", 1, 8192, b"salt", &good256),
        ]);
    let got = alter(&mut c, req).await;
    let expect = |u: &str, code: i16, m: Option<&str>| (u.to_owned(), code, m.map(str::to_owned));
    assert_eq!(
        got,
        vec![
            expect("", error_code::UNACCEPTABLE_CREDENTIAL, Some("Username must not be empty")),
            expect("badmech", error_code::UNSUPPORTED_SASL_MECHANISM, Some("Unknown SCRAM mechanism")),
            expect("carol", 0, None),
            expect("dave", 0, None),
            expect("eve", error_code::UNSUPPORTED_SASL_MECHANISM, Some("Unknown SCRAM mechanism")),
            expect(
                "ghost",
                error_code::RESOURCE_NOT_FOUND,
                Some("Attempt to delete a user credential that does not exist")
            ),
            expect("high", error_code::UNACCEPTABLE_CREDENTIAL, Some("Too many iterations")),
            expect("low", error_code::UNACCEPTABLE_CREDENTIAL, Some("Too few iterations")),
            expect("nosalt", error_code::UNACCEPTABLE_CREDENTIAL, Some("Invalid salted password or salt")),
            expect("short", error_code::UNACCEPTABLE_CREDENTIAL, Some("Invalid salted password or salt")),
            expect(
                "twice",
                error_code::RESOURCE_NOT_FOUND,
                Some("Attempt to delete a user credential that does not exist")
            ),
        ]
    );
    let mut carol = broker.connect().await;
    assert_eq!(carol.scram_login(ScramMechanism::Sha512, "carol", "carol-pw", false).await.error_code, 0);
    let mut dave = broker.connect().await;
    assert_eq!(dave.scram_login(ScramMechanism::Sha256, "dave", "dave-pw", false).await.error_code, 0);
    let mut carol256 = broker.connect().await;
    assert_eq!(carol256.scram_login(ScramMechanism::Sha256, "carol", "carol-pw", false).await.error_code, 58);

    // KRaft: two alterations of one user in one request, even of different mechanisms,
    // are 92 and neither is applied.
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![delete("carol", 2)])
        .with_upsertions(vec![upsert("carol", 1, 8192, b"0123456789abcdef", &salted(ScramMechanism::Sha256, "x"))]);
    assert_eq!(
        alter(&mut c, req).await,
        vec![expect(
            "carol",
            error_code::DUPLICATE_RESOURCE,
            Some("A user credential cannot be altered twice in the same request")
        )]
    );
    let r = describe(&mut c, Some(&["carol"])).await;
    assert_eq!(r.results[0].credential_infos.len(), 1, "nothing changed");
    assert_eq!(r.results[0].credential_infos[0].mechanism, 2);
}

/// T-USER-9: deleting the last credential deletes the user; its open session stays up.
#[tokio::test]
async fn t_user_9_deleting_the_last_credential_deletes_the_user() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    add_user(&mut c, "bob", "bob-pw").await;
    let mut bob = broker.connect().await;
    assert_eq!(bob.scram_login(ScramMechanism::Sha256, "bob", "bob-pw", false).await.error_code, 0);
    for mech in [1, 2] {
        let r =
            alter(&mut c, AlterUserScramCredentialsRequest::default().with_deletions(vec![delete("bob", mech)])).await;
        assert_eq!(r, vec![("bob".to_owned(), 0, None)]);
    }
    let r = describe(&mut c, Some(&["bob"])).await;
    assert_eq!(r.results[0].error_code, error_code::RESOURCE_NOT_FOUND);
    let ResponseKind::Metadata(_) = bob.call(ApiKey::Metadata, 1, MetadataRequest::default().into()).await else {
        panic!()
    };
    let mut again = broker.connect().await;
    assert_eq!(again.scram_login(ScramMechanism::Sha256, "bob", "bob-pw", false).await.error_code, 58);
}

/// T-AUTHZ-1 (user rows), T-USER-2, T-USER-6: a user that is not a super user may read
/// metadata but gets 31 from both user APIs, and nothing changes; a super user may.
/// Listing a user in super.users makes it one.
#[tokio::test]
async fn t_authz_1_user_apis_need_a_super_user() {
    let broker = TestBroker::start_sasl(&[("super.users", "User:admin;User:carol")]).await;
    let mut c = admin(&broker).await;
    add_user(&mut c, "bob", "bob-pw").await;
    add_user(&mut c, "carol", "carol-pw").await;

    let mut bob = broker.connect().await;
    assert_eq!(bob.scram_login(ScramMechanism::Sha512, "bob", "bob-pw", false).await.error_code, 0);
    assert_eq!(cluster_operations(&mut bob).await, 0);
    let r = describe(&mut bob, Some(&["admin"])).await;
    assert_eq!((r.error_code, r.results.len(), r.results[0].error_code), (31, 1, 31));
    let r = describe(&mut bob, None).await;
    assert_eq!((r.error_code, r.results.len()), (31, 0), "D-17");
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![delete("admin", 1), delete("admin", 2)]);
    assert_eq!(
        alter(&mut bob, req).await,
        vec![("admin".to_owned(), 31, Some("Cluster authorization failed.".to_owned()))]
    );
    assert_eq!(describe(&mut c, Some(&["admin"])).await.results[0].credential_infos.len(), 2, "nothing changed");

    let mut carol = broker.connect().await;
    assert_eq!(carol.scram_login(ScramMechanism::Sha256, "carol", "carol-pw", false).await.error_code, 0);
    assert_eq!(describe(&mut carol, None).await.results.len(), 3);
    assert_eq!(cluster_operations(&mut carol).await, 8096, "T-META-3 for a super user");
}

/// T-AUTHZ-2: the ACL APIs are not advertised, and a client that sends one anyway is
/// disconnected.
#[tokio::test]
async fn t_authz_2_acl_apis_are_not_offered() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    let ResponseKind::ApiVersions(v) = c.call(ApiKey::ApiVersions, 2, ApiVersionsRequest::default().into()).await
    else {
        panic!()
    };
    assert!(v.api_keys.iter().all(|k| ![29, 30, 31].contains(&k.api_key)));
    c.send(ApiKey::DescribeAcls, 1, DescribeAclsRequest::default().into()).await;
    assert!(c.closed_without_response().await);
}

/// T-PERSIST-1 (users), T-LOG-1: users survive a restart; the data directory holds
/// neither a password nor a salted password.
#[tokio::test]
async fn t_persist_1_users_survive_restart_and_no_secret_is_stored() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = admin(&broker).await;
    add_user(&mut c, "bob", "bob-password-42").await;
    let (result, dir) = broker.shutdown().await;
    result.unwrap();
    let sasl = [("listeners", "SASL_PLAINTEXT://127.0.0.1:0"), ("connection.failed.authentication.delay.ms", "0")];
    let broker = TestBroker::start_in(dir, &sasl, Arc::new(SystemClock)).await;
    let mut bob = broker.connect().await;
    assert_eq!(bob.scram_login(ScramMechanism::Sha512, "bob", "bob-password-42", false).await.error_code, 0);
    let (_, dir) = broker.shutdown().await;

    let secrets: Vec<Vec<u8>> = vec![
        b"bob-password-42".to_vec(),
        ADMIN_PASSWORD.as_bytes().to_vec(),
        ScramMechanism::Sha512.salted_password(b"bob-password-42", b"salt-of-bob-2", 8192).expose().to_vec(),
        ScramMechanism::Sha256.salted_password(b"bob-password-42", b"salt-of-bob-1", 8192).expose().to_vec(),
    ];
    let mut files = vec![dir.path().to_owned()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            for secret in &secrets {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()), "secret in {}", p.display());
            }
        }
    }
}

/// T-ZERO-4, SPEC §6.4, T-USER-10: `ktb user add --data-dir` refuses while a broker holds
/// the directory (exit 2), writes a credential that logs in once it is stopped, and
/// refuses names SCRAM cannot carry.
#[tokio::test]
async fn t_zero_4_offline_user_add() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", "first-admin-pw")];
    let mut p = KtbProcess::start(cwd.path(), &[], &env);
    assert!(p.addr.is_some());
    assert!(p.log_lines().iter().all(|l| !l.contains("with this password")), "KTB_ADMIN_PASSWORD: no banner");
    let add = |args: &[&str], stdin: &str| {
        let mut child = Command::new(ktb_bin())
            .args(["user", "add"])
            .args(args)
            .current_dir(cwd.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // A command that refuses before reading its password may already have exited
        // (a broken pipe): its exit code and message below are what count.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = add(&["admin", "--data-dir", "ktb-data", "--password-stdin"], "new-admin-pw\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("in use by another ktb process"), "{err}");

    p.signal("TERM");
    assert_eq!(p.wait_exit(), Some(0));
    let (code, _, err) = add(&["admin", "--data-dir", "ktb-data", "--password-stdin"], "new-admin-pw\n");
    assert_eq!(code, Some(0), "{err}");
    let (code, generated, err) =
        add(&["ops", "--data-dir", "ktb-data", "--generate-password", "--mechanism", "SCRAM-SHA-256"], "");
    assert_eq!(code, Some(0), "{err}");
    let generated = generated.trim().to_owned();
    assert_eq!(generated.len(), 32);
    let (code, _, err) = add(&["jos\u{e9}", "--data-dir", "ktb-data", "--generate-password"], "");
    assert_eq!(code, Some(2));
    assert!(err.contains("ASCII"), "{err}");
    let (code, _, err) = add(&["x", "--data-dir", "missing-dir", "--generate-password"], "");
    assert_eq!(code, Some(2));
    assert!(err.contains("not a ktb data directory"), "{err}");

    let p = KtbProcess::start(cwd.path(), &[], &env);
    let addr = p.addr.unwrap();
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", "new-admin-pw", false).await.error_code, 0);
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", "first-admin-pw", false).await.error_code, 58);
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha256, "ops", &generated, false).await.error_code, 0);
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "ops", &generated, false).await.error_code, 58, "256 only");
}

/// §9.7 (T-LIMIT-1): alterations past `ktb.user.max.alterations.per.request` get 42 each and
/// change nothing for their user; the ones within the limit are applied.
#[tokio::test]
async fn t_limit_1_alterations_past_the_limit_are_42() {
    let broker = TestBroker::start_sasl(&[("ktb.user.max.alterations.per.request", "3")]).await;
    let mut c = admin(&broker).await;
    let pw = salted(ScramMechanism::Sha256, "pw");
    let names = ["u1", "u2", "u3", "u4", "u5"];
    let req = AlterUserScramCredentialsRequest::default()
        .with_upsertions(names.iter().map(|n| upsert(n, 1, 8192, b"0123456789abcdef", &pw)).collect());
    let results = alter(&mut c, req).await;
    let codes: Vec<(&str, i16)> = results.iter().map(|(u, code, _)| (u.as_str(), *code)).collect();
    assert_eq!(codes, [("u1", 0), ("u2", 0), ("u3", 0), ("u4", 42), ("u5", 42)]);
    let listed = describe(&mut c, None).await;
    let users: Vec<&str> = listed.results.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(users, ["admin", "u1", "u2", "u3"], "nothing stored past the limit");
}
