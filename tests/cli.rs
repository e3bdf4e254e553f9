//! The `ktb` client commands, run as the real binary against a live broker (SPEC §6.8).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{KtbProcess, TestClient, ktb_bin, token_login};
use ktb_protocol::scram::ScramMechanism;
use serde_json::Value;

const ADMIN_PW: &str = "cli-admin-secret";

struct Env {
    broker: KtbProcess,
    bootstrap: String,
    home: tempfile::TempDir,
    _cwd: tempfile::TempDir,
}

fn broker(extra: &[(&str, &str)]) -> Env {
    let cwd = tempfile::tempdir().unwrap();
    let mut env = vec![("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", ADMIN_PW)];
    env.extend_from_slice(extra);
    let broker = KtbProcess::start(cwd.path(), &[], &env);
    let bootstrap = broker.addr.expect("ktb listens").to_string();
    Env { broker, bootstrap, home: tempfile::tempdir().unwrap(), _cwd: cwd }
}

/// Runs `ktb ARGS` with only `env` as KTB_* settings, HOME in a private directory, and
/// `stdin` on standard input.
fn ktb_in(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(ktb_bin());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_")) {
        cmd.env_remove(k);
    }
    cmd.env_remove("XDG_CONFIG_HOME").env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // A command that fails before reading stdin may already have exited (a broken pipe):
    // its exit code and output are what the tests check.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

impl Env {
    /// `ktb ARGS` logged in as admin through the environment.
    fn admin(&self, args: &[&str]) -> Output {
        self.as_user("admin", ADMIN_PW, args)
    }

    fn as_user(&self, user: &str, pw: &str, args: &[&str]) -> Output {
        let env =
            [("KTB_BOOTSTRAP_SERVER", self.bootstrap.as_str()), ("KTB_SASL_USERNAME", user), ("KTB_SASL_PASSWORD", pw)];
        ktb_in(self.home.path(), args, &env, "")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    o
}

/// T-CLI-4, T-CLI-6: `token create` prints the token, its times and client settings in
/// table mode, and the documented JSON; the printed credentials log in.
#[tokio::test]
async fn t_cli_4_token_create_both_modes() {
    let e = broker(&[]);
    let o = ok(e.admin(&["token", "create", "--renewer", "User:ops", "--max-lifetime", "2d"]));
    let text = stdout(&o);
    for needle in [
        "token id ",
        "hmac ",
        "owner       User:admin",
        "requester   User:admin",
        "renewers    User:ops",
        "# Java (client.properties)",
        "sasl.mechanism=SCRAM-SHA-512",
        "tokenauth=\"true\";",
        "sasl.mechanisms=SCRAM-SHA-512",
        &format!("# kcat -b {} -X security.protocol=SASL_PLAINTEXT", e.bootstrap),
        "are a password",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    let expires = text.lines().find(|l| l.starts_with("expires ")).unwrap_or_default();
    assert!(expires.contains("Z (in 1d 0h") || expires.contains("Z (in 23h 59m"), "{text}");
    let o = ok(e.admin(&["token", "create", "--output", "json", "--mechanism", "SCRAM-SHA-256"]));
    let v = json(&o);
    for key in [
        "token_id",
        "hmac",
        "owner",
        "requester",
        "renewers",
        "issue_timestamp_ms",
        "expiry_timestamp_ms",
        "max_timestamp_ms",
        "issue_time",
        "expiry_time",
        "max_time",
        "snippets",
    ] {
        assert!(!v[key].is_null(), "{key} in {v}");
    }
    assert_eq!(v["owner"], "User:admin");
    assert!(v["expiry_time"].as_str().unwrap().ends_with('Z'));
    assert!(v["snippets"]["java"].as_str().unwrap().contains("sasl.mechanism=SCRAM-SHA-256"));
    assert!(v["snippets"]["kcat"].as_str().unwrap().starts_with("kcat -b "));
    let hmac = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["hmac"].as_str().unwrap()).unwrap();
    let (_, r) =
        token_login(e.broker.addr.unwrap(), ScramMechanism::Sha256, v["token_id"].as_str().unwrap(), &hmac, true).await;
    assert_eq!(r.error_code, 0, "the printed token logs in");
}

/// T-CLI-6, SPEC §6.8: `token describe` (null owners by default) in both modes hides
/// HMACs unless --show-hmac; --owner filters.
#[test]
fn t_cli_6_describe_hides_hmacs() {
    let e = broker(&[]);
    let mine = json(&ok(e.admin(&["token", "create", "--output", "json"])));
    let theirs =
        json(&ok(e.admin(&["token", "create", "--owner", "User:app", "--renewer", "User:admin", "--output", "json"])));
    let hmac = mine["hmac"].as_str().unwrap();
    let table = stdout(&ok(e.admin(&["token", "describe"])));
    assert!(table.contains(mine["token_id"].as_str().unwrap()) && table.contains(theirs["token_id"].as_str().unwrap()));
    assert!(!table.contains(hmac), "no HMAC without --show-hmac");
    assert!(stdout(&ok(e.admin(&["token", "describe", "--show-hmac"]))).contains(hmac));
    let v = json(&ok(e.admin(&["token", "describe", "--output", "json", "--owner-principal", "User:app"])));
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["owner"], "User:app");
    assert!(tokens[0]["hmac"].is_null());
    let v = json(&ok(e.admin(&["token", "describe", "--output", "json", "--show-hmac"])));
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    assert!(v["tokens"].as_array().unwrap().iter().all(|t| t["hmac"].is_string()));
}

/// SPEC §6.8: renew and expire by HMAC (flag, stdin, file), both modes, Kafka-tool
/// aliases; revoke by id.
#[test]
fn token_renew_expire_revoke() {
    let e = broker(&[]);
    let t = json(&ok(e.admin(&["token", "create", "--output", "json"])));
    let hmac = t["hmac"].as_str().unwrap();
    let v = json(&ok(e.admin(&["token", "renew", "--hmac", hmac, "--period", "1h", "--output", "json"])));
    let expiry = v["expiry_timestamp_ms"].as_i64().unwrap();
    assert!((expiry - t["issue_timestamp_ms"].as_i64().unwrap() - 3_600_000).abs() < 60_000, "{v}");
    let env = [
        ("KTB_BOOTSTRAP_SERVER", e.bootstrap.as_str()),
        ("KTB_SASL_USERNAME", "admin"),
        ("KTB_SASL_PASSWORD", ADMIN_PW),
    ];
    let o = ok(ktb_in(
        e.home.path(),
        &["token", "renew", "--hmac", "-", "--renew-time-period", "60000"],
        &env,
        &format!("{hmac}\n"),
    ));
    assert!(stdout(&o).starts_with("renewed; expires "), "{}", stdout(&o));
    let file = e.home.path().join("token.hmac");
    std::fs::write(&file, format!("{hmac}\n")).unwrap();
    let o = ok(e.admin(&["token", "expire", "--hmac-file", file.to_str().unwrap(), "--expiry-time-period", "600000"]));
    assert!(stdout(&o).starts_with("will expire "), "{}", stdout(&o));
    let o = ok(e.admin(&["token", "revoke", "--token-id", t["token_id"].as_str().unwrap()]));
    assert!(stdout(&o).contains("expired and deleted"));
    assert!(!stdout(&ok(e.admin(&["token", "describe"]))).contains(t["token_id"].as_str().unwrap()));
    let o = e.admin(&["token", "revoke", "--token-id", "nosuchtoken", "--output", "json"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(json(&o)["error"]["code"], 62);
}

/// D-20 through the client: a Create over the broker's renewer limit exits 4 with 42 and
/// a message naming the limits to look at.
#[test]
fn d_20_limit_error_names_the_limits() {
    let e = broker(&[("KTB_TOKEN_MAX_RENEWERS", "1")]);
    let o = e.admin(&["token", "create", "--renewer", "User:a", "--renewer", "User:b"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("INVALID_REQUEST (42)") && stderr(&o).contains("ktb.token.max.renewers"),
        "{}",
        stderr(&o)
    );
}

/// T-CLI-5: bad input gives the documented exit code and a one-line error.
#[test]
fn t_cli_5_errors_and_exit_codes() {
    let e = broker(&[]);
    let home = e.home.path();
    // Usage errors: 2.
    for args in [
        &["token", "create", "--no-such-flag"][..],
        &["token", "create", "--max-lifetime", "7w"],
        &["token", "renew"],
        &["token", "create", "--owner", "alice"],
    ] {
        let o = e.admin(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // Nothing listening: 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let o = ktb_in(
        home,
        &["token", "describe", "--bootstrap-server", &dead],
        &[("KTB_SASL_USERNAME", "a"), ("KTB_SASL_PASSWORD", "b")],
        "",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: cannot connect"), "{}", stderr(&o));
    // Wrong password: 3, with Kafka's error name.
    let o = e.as_user("admin", "wrong", &["token", "create"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("SASL_AUTHENTICATION_FAILED (58)"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    // A Kafka error: 4, as text and as JSON on stdout.
    let o = e.admin(&["token", "renew", "--hmac", "AAAA"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).starts_with("error: DELEGATION_TOKEN_NOT_FOUND (62): "), "{}", stderr(&o));
    let o = e.admin(&["token", "renew", "--hmac", "AAAA", "--output", "json"]);
    assert_eq!(json(&o)["error"]["name"], "DELEGATION_TOKEN_NOT_FOUND");
    // A server that accepts but never answers: 5.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let o = ktb_in(
        home,
        &["token", "describe", "--bootstrap-server", &addr, "--timeout", "300ms"],
        &[("KTB_SASL_USERNAME", "a"), ("KTB_SASL_PASSWORD", "b")],
        "",
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    // Token-authenticated credentials cannot manage tokens: 4, and the text says why.
    let t = json(&ok(e.admin(&["token", "create", "--output", "json"])));
    let config = home.join("token.properties");
    std::fs::write(
        &config,
        format!(
            "bootstrap.servers={}\nsasl.mechanism=SCRAM-SHA-256\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\" tokenauth=\"true\";\n",
            e.bootstrap, t["token_id"].as_str().unwrap(), t["hmac"].as_str().unwrap()
        ),
    )
    .unwrap();
    let o = ktb_in(home, &["token", "create", "--command-config", config.to_str().unwrap()], &[], "");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("DELEGATION_TOKEN_REQUEST_NOT_ALLOWED (64)") && stderr(&o).contains("token-authenticated"),
        "{}",
        stderr(&o)
    );
}

/// T-CLI-1, T-CLI-2: each source of settings, and the precedence flag > command-config >
/// env > profile > default, shown by `ktb config show`; a profile with a password that
/// others can read is refused.
#[test]
fn t_cli_2_credential_chain() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let show = |args: &[&str], env: &[(&str, &str)]| {
        json(&ok(ktb_in(h, &[&["config", "show", "--output", "json"][..], args].concat(), env, "")))
    };
    let v = show(&[], &[]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["bootstrap_server"]["source"].as_str()),
        (Some("localhost:9092"), Some("default"))
    );
    assert_eq!(v["sasl_mechanism"]["value"], "SCRAM-SHA-512");
    assert!(v["sasl_password"].is_null());
    let dir = h.join(".config/ktb");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("config.toml");
    std::fs::write(
        &profile,
        "[profiles.default]\nbootstrap_server = \"profile:1\"\nsasl_username = \"p-user\"\nsasl_password = \"p-pw\"\n\
         [profiles.other]\nbootstrap_server = \"other:1\"\nsasl_mechanism = \"SCRAM-SHA-256\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let v = show(&[], &[]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["bootstrap_server"]["source"].as_str()),
        (Some("profile:1"), Some("profile default"))
    );
    assert_eq!(v["sasl_password"]["value"], "[hidden]", "never shown");
    let v = show(&["--profile", "other"], &[]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["sasl_mechanism"]["value"].as_str()),
        (Some("other:1"), Some("SCRAM-SHA-256"))
    );
    let v = show(&[], &[("KTB_PROFILE", "other")]);
    assert_eq!(v["bootstrap_server"]["value"], "other:1");
    let v = show(&[], &[("KTB_BOOTSTRAP_SERVER", "env:1")]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["bootstrap_server"]["source"].as_str()),
        (Some("env:1"), Some("env"))
    );
    assert_eq!(v["sasl_username"]["source"], "profile default", "each setting on its own");
    let cc = h.join("client.properties");
    std::fs::write(&cc, "bootstrap.servers=cc:1\nsasl.mechanism=SCRAM-SHA-256\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"cc-user\" password=\"cc-pw\";\nacks=all\n").unwrap();
    let cc = cc.to_str().unwrap();
    let v = show(&["--command-config", cc], &[("KTB_BOOTSTRAP_SERVER", "env:1")]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["bootstrap_server"]["source"].as_str()),
        (Some("cc:1"), Some("command-config"))
    );
    assert_eq!(
        (v["sasl_username"]["value"].as_str(), v["sasl_password"]["source"].as_str()),
        (Some("cc-user"), Some("command-config"))
    );
    let v = show(&["--command-config", cc, "--bootstrap-server", "flag:1", "--sasl-username", "f-user"], &[]);
    assert_eq!(
        (v["bootstrap_server"]["value"].as_str(), v["bootstrap_server"]["source"].as_str()),
        (Some("flag:1"), Some("flag"))
    );
    assert_eq!(v["sasl_username"]["value"], "f-user");
    let o = ok(ktb_in(h, &["config", "show", "--command-config", cc], &[], ""));
    assert!(stderr(&o).contains("acks"), "ignored keys are noted: {}", stderr(&o));
    assert!(!stdout(&o).contains("cc-pw") && !stdout(&o).contains("p-pw"));
    let o = ok(ktb_in(h, &["config", "show", "--sasl-password-stdin"], &[], "stdin-pw\n"));
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("sasl_password") && l.contains("[hidden]") && l.ends_with("flag"))
    );
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = ktb_in(h, &["config", "show"], &[], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    let o = ktb_in(h, &["config", "show", "--profile", "missing"], &[], "");
    assert_eq!(o.status.code(), Some(2));
}

/// T-CLI-1, T-CLI-3: a Kafka client properties file logs the CLI in; user add goes to
/// the controller; the new user logs in; describe and delete (with --expire-tokens, which
/// needs `ktb.token.superuser.manage` on ktb for another user's tokens).
#[tokio::test]
async fn t_cli_3_users_through_command_config() {
    // D-13 lets the super user expire app's tokens.
    let e = broker(&[("KTB_TOKEN_SUPERUSER_MANAGE", "true")]);
    let cc = e.home.path().join("admin.properties");
    std::fs::write(&cc, format!("bootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{ADMIN_PW}\";\n", e.bootstrap)).unwrap();
    let cc = cc.to_str().unwrap();
    let home = e.home.path();
    let o = ok(ktb_in(home, &["user", "add", "app", "--password-stdin", "--command-config", cc], &[], "app-pw\n"));
    assert!(stdout(&o).contains("SCRAM-SHA-256 and SCRAM-SHA-512"));
    let v = json(&ok(ktb_in(
        home,
        &[
            "user",
            "add",
            "gen",
            "--generate-password",
            "--mechanism",
            "SCRAM-SHA-256",
            "--output",
            "json",
            "--command-config",
            cc,
        ],
        &[],
        "",
    )));
    let generated = v["password"].as_str().unwrap().to_owned();
    let mut c = TestClient::connect(e.broker.addr.unwrap()).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha256, "gen", &generated, false).await.error_code, 0);
    let v = json(&ok(ktb_in(home, &["user", "describe", "app", "--output", "json", "--command-config", cc], &[], "")));
    assert_eq!(v["users"][0]["user"], "app");
    assert_eq!(v["users"][0]["credentials"].as_array().unwrap().len(), 2);
    assert!(stdout(&ok(ktb_in(home, &["user", "describe", "--command-config", cc], &[], ""))).contains("gen "));
    // app creates a token, then is deleted with its tokens.
    let t = json(&ok(e.as_user("app", "app-pw", &["token", "create", "--output", "json"])));
    let v = json(&ok(ktb_in(
        home,
        &["user", "delete", "app", "--expire-tokens", "--output", "json", "--command-config", cc],
        &[],
        "",
    )));
    assert_eq!(v["deleted"], serde_json::json!(["SCRAM-SHA-256", "SCRAM-SHA-512"]));
    assert_eq!(v["expired_tokens"], serde_json::json!([t["token_id"]]));
    let o = e.as_user("app", "app-pw", &["token", "describe"]);
    assert_eq!(o.status.code(), Some(3), "the user is gone");
    let o = ktb_in(home, &["user", "describe", "app", "--command-config", cc], &[], "");
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("RESOURCE_NOT_FOUND (91)"), "{}", stderr(&o));
}

/// T-CLI-5: a non-super user is told that user management needs a super user.
#[test]
fn t_cli_5_user_commands_need_a_super_user() {
    let e = broker(&[]);
    ok(ktb_in(
        e.home.path(),
        &["user", "add", "bob", "--password-stdin", "--bootstrap-server", &e.bootstrap, "--sasl-username", "admin"],
        &[("KTB_SASL_PASSWORD", ADMIN_PW)],
        "bob-pw\n",
    ));
    let o = e.as_user("bob", "bob-pw", &["user", "describe"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("CLUSTER_AUTHORIZATION_FAILED (31)"), "{}", stderr(&o));
}

/// T-REFRESH-1, T-REFRESH-3, T-REFRESH-4: `--once` creates a token and writes the file
/// (0600) and its state; run again, it finds nothing due and leaves the file alone; with
/// a wrong password it exits 4; a forgotten token is replaced.
#[tokio::test]
async fn t_refresh_1_once() {
    let e = broker(&[]);
    let out = e.home.path().join("client.properties");
    let out_s = out.to_str().unwrap();
    ok(e.admin(&["token", "refresh", "--out", out_s, "--once"]));
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(first.contains("tokenauth=\"true\";"), "{first}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(format!("{out_s}.state.json")).unwrap()).unwrap();
    let id = state["token"]["token_id"].as_str().unwrap().to_owned();
    assert!(first.contains(&id));
    ok(e.admin(&["token", "refresh", "--out", out_s, "--once"]));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first, "nothing was due");
    let o = e.as_user("admin", "wrong", &["token", "refresh", "--out", out_s, "--once"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    ok(e.admin(&["token", "revoke", "--token-id", &id]));
    ok(e.admin(&["token", "refresh", "--out", out_s, "--once", "--format", "env"]));
    let env = std::fs::read_to_string(&out).unwrap();
    assert!(
        env.starts_with("KAFKA_SASL_USERNAME=") && !env.contains(&id),
        "a new token replaced the revoked one: {env}"
    );
}

/// `ktb --help` and each subcommand's help teach by example.
#[test]
fn help_teaches_by_example() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["token", "--help"],
        &["token", "create", "--help"],
        &["token", "renew", "--help"],
        &["token", "describe", "--help"],
        &["token", "refresh", "--help"],
        &["user", "add", "--help"],
        &["user", "delete", "--help"],
        &["config", "show", "--help"],
    ] {
        let o = ok(ktb_in(home.path(), args, &[], ""));
        let text = stdout(&o);
        if args.len() > 1 {
            assert!(text.contains("Example"), "{args:?} shows examples:\n{text}");
        }
    }
}
