//! `kafka-delegation-tokens` run from the `ktb` binary (SPEC §9.6, T-KDT-1..3), byte for
//! byte against what Apache Kafka's tool prints.
//!
//! The expected texts are written down from Kafka's source. Line numbers are those of
//! `tools/src/main/java/org/apache/kafka/tools/DelegationTokenCommand.java` ("DTC") and
//! `server-common/src/main/java/org/apache/kafka/server/util/CommandLineUtils.java`
//! ("CLU") at apache/kafka 1eb7644; 3.6.2's files differ only in their imports' order.
//! The usage table and jopt-simple's own parse errors come from the real library:
//! `tests/kdt/JoptOracle.java` declares the tool's options to Debian's jopt-simple 5.0.4
//! (Kafka's version) and prints what it prints.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{KtbProcess, ktb_bin};
use serde_json::Value;

const ADMIN_PW: &str = "kdt-admin-secret";
/// A zone with a fixed +05:30 offset: dates must be local, to the minute.
const TZ: &str = "Asia/Kolkata";
const TZ_OFFSET_MS: i64 = (5 * 60 + 30) * 60 * 1000;

/// The jopt-simple oracle, compiled once per test process.
struct Oracle {
    dir: tempfile::TempDir,
}

const JOPT_JAR: &str = "/usr/share/java/joptsimple.jar";

impl Oracle {
    fn compile() -> Oracle {
        assert!(
            Path::new(JOPT_JAR).exists(),
            "{JOPT_JAR} is missing: install Debian's libjoptsimple-java (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kdt/JoptOracle.java");
        let status = Command::new("javac")
            .args(["-cp", JOPT_JAR, "-d"])
            .arg(dir.path())
            .arg(&src)
            .status()
            .expect("javac (a JDK) is needed for the jopt-simple oracle");
        assert!(status.success(), "javac failed");
        Oracle { dir }
    }

    fn run(&self, args: &[&str]) -> String {
        let cp = format!("{JOPT_JAR}:{}", self.dir.path().display());
        let out = Command::new("java").args(["-cp", &cp, "JoptOracle"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The option table, as `parser.printHelpOn` prints it.
    fn usage(&self) -> String {
        self.run(&["help"])
    }

    /// jopt-simple's message for `args`, or "parsed".
    fn parse(&self, args: &[&str]) -> String {
        let mut all = vec!["parse"];
        all.extend_from_slice(args);
        self.run(&all).trim_end_matches('\n').to_owned()
    }
}

/// A directory holding `kafka-delegation-tokens.sh`, a symlink to `ktb`, as the README
/// tells users to make it.
struct Tool {
    dir: tempfile::TempDir,
}

impl Tool {
    fn new() -> Tool {
        let dir = tempfile::tempdir().unwrap();
        symlink(ktb_bin(), dir.path().join("kafka-delegation-tokens.sh")).unwrap();
        symlink(ktb_bin(), dir.path().join("kafka-delegation-tokens")).unwrap();
        Tool { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("kafka-delegation-tokens.sh")
    }

    /// Runs the tool with `args` in the tool's directory, in the test time zone.
    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.path(), args)
    }

    fn run_as(&self, program: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(self.dir.path()).env("TZ", TZ).env_remove("KTB_LOG").stdin(Stdio::null());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_")) {
            cmd.env_remove(k);
        }
        cmd.output().unwrap()
    }

    /// Writes a `--command-config` file into the tool's directory.
    fn config(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        name.to_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Exit 1, nothing on stdout, and exactly `stderr`.
#[track_caller]
fn assert_failure(out: &Output, stdout: &str, stderr: &str) {
    assert_eq!(text(&out.stderr), stderr, "stderr");
    assert_eq!(text(&out.stdout), stdout, "stdout");
    assert_eq!(out.status.code(), Some(1), "exit code");
}

/// T-KDT-1: `--help`, no arguments and every usage error print the message, then
/// jopt-simple's option table, on stderr, and exit 1 (CLU 130–137: `printUsageAndExit`).
#[test]
fn t_kdt_1_usage_and_usage_errors_byte_for_byte() {
    let oracle = Oracle::compile();
    let usage = oracle.usage();
    let tool = Tool::new();
    let about = "This tool helps to create, renew, expire, or describe delegation tokens.";
    let one_action = "Command must include exactly one action: --create, --renew, --expire or --describe";
    let base = ["--bootstrap-server", "127.0.0.1:1", "--command-config", "none.properties"];
    let with = |more: &[&'static str]| -> Vec<&'static str> {
        let mut v: Vec<&'static str> = base.to_vec();
        v.extend_from_slice(more);
        v
    };
    let cases: Vec<(Vec<&str>, String)> = vec![
        // DTC 72, CLU 45–47 and 64–66: no arguments, or --help anywhere.
        (vec![], about.into()),
        (vec!["--help"], about.into()),
        (with(&["--create", "--max-life-time-period", "-1", "--help"]), about.into()),
        // DTC 75–78: exactly one action.
        (with(&[]), one_action.into()),
        (with(&["--create", "--describe"]), one_action.into()),
        (with(&["--renew", "--expire", "--hmac", "x"]), one_action.into()),
        // DTC 287 with CLU 76–81: the connection options, in this order.
        (vec!["--describe"], "Missing required argument \"[bootstrap-server]\"".into()),
        (vec!["--describe", "--bootstrap-server", "b:1"], "Missing required argument \"[command-config]\"".into()),
        // DTC 289–299: each action's required options.
        (with(&["--create"]), "Missing required argument \"[max-life-time-period]\"".into()),
        (with(&["--renew", "--renew-time-period", "5"]), "Missing required argument \"[hmac]\"".into()),
        (with(&["--renew", "--hmac", "aGk="]), "Missing required argument \"[renew-time-period]\"".into()),
        (with(&["--expire"]), "Missing required argument \"[hmac]\"".into()),
        (with(&["--expire", "--hmac", "aGk="]), "Missing required argument \"[expiry-time-period]\"".into()),
        // DTC 302–305 with CLU 87–97: options an action forbids (one at a time: Kafka
        // walks a HashSet, so with two it may name either).
        (
            with(&["--create", "--max-life-time-period", "-1", "--hmac", "aGk="]),
            "Option \"[create]\" can't be used with option \"[hmac]\"".into(),
        ),
        (
            with(&["--create", "--max-life-time-period", "-1", "--expiry-time-period", "1"]),
            "Option \"[create]\" can't be used with option \"[expiry-time-period]\"".into(),
        ),
        (
            with(&["--renew", "--hmac", "aGk=", "--renew-time-period", "1", "--renewer-principal", "User:a"]),
            "Option \"[renew]\" can't be used with option \"[renewer-principal]\"".into(),
        ),
        (
            with(&["--renew", "--hmac", "aGk=", "--renew-time-period", "1", "--max-life-time-period", "1"]),
            "Option \"[renew]\" can't be used with option \"[max-life-time-period]\"".into(),
        ),
        (
            with(&["--expire", "--hmac", "aGk=", "--expiry-time-period", "1", "--owner-principal", "User:a"]),
            "Option \"[expire]\" can't be used with option \"[owner-principal]\"".into(),
        ),
        (
            with(&["--expire", "--hmac", "aGk=", "--expiry-time-period", "1", "--renew-time-period", "1"]),
            "Option \"[expire]\" can't be used with option \"[renew-time-period]\"".into(),
        ),
        (with(&["--describe", "--hmac", "aGk="]), "Option \"[describe]\" can't be used with option \"[hmac]\"".into()),
        (
            with(&["--describe", "--renew-time-period", "1"]),
            "Option \"[describe]\" can't be used with option \"[renew-time-period]\"".into(),
        ),
    ];
    for (args, message) in &cases {
        let out = tool.run(args);
        assert_failure(&out, "", &format!("{message}\n{usage}"));
    }
    // `ktb kafka-delegation-tokens` and the name without .sh are the same tool.
    let out = Command::new(ktb_bin()).args(["kafka-delegation-tokens", "--help"]).output().unwrap();
    assert_failure(&out, "", &format!("{about}\n{usage}"));
    let out = tool.run_as(&tool.dir.path().join("kafka-delegation-tokens"), &[]);
    assert_failure(&out, "", &format!("{about}\n{usage}"));
    // CLU 69–71 and 140–143: --version on stdout, exit 0 (ktb's version, SPEC §9.7).
    let out = tool.run(&["--version"]);
    assert_eq!((text(&out.stdout), out.status.code()), (format!("{}\n", env!("CARGO_PKG_VERSION")), Some(0)));
    assert!(out.stderr.is_empty());
}

/// T-KDT-1: words jopt-simple itself refuses, with its messages (from the library),
/// printed by DTC 63–65 (the message; Kafka's stack trace after it is left out).
#[test]
fn t_kdt_1_parse_errors_are_jopt_simples() {
    let oracle = Oracle::compile();
    let tool = Tool::new();
    let cases: [&[&str]; 9] = [
        &["--bootstrap-server"],
        &["--describe", "--command-config"],
        &["--boot", "b:1"],
        &["--create", "--max-life-time-period", "-1", "--renewer"],
        &["-xyz"],
        &["--describe", "-1"],
        &["--hmac", "-abc"],
        &["---create"],
        &["--=x"],
    ];
    for args in cases {
        let message = oracle.parse(args);
        assert_ne!(message, "parsed", "{args:?} is an error for jopt-simple");
        let out = tool.run(args);
        assert_failure(&out, "", &format!("{message}\n"));
    }
    // Words the library accepts are accepted: one dash, `=`, a negative number taken
    // by a numeric option, `--` ending the options.
    for args in [
        &["-describe", "-bootstrap-server=b:1", "--command-config=none.properties"][..],
        &["--describe", "--bootstrap-server", "b:1", "--command-config", "none.properties", "--", "--x"],
        &[
            "--create",
            "--max-life-time-period",
            "-5",
            "--bootstrap-server",
            "b:1",
            "--command-config",
            "none.properties",
        ],
    ] {
        assert_eq!(oracle.parse(args), "parsed", "{args:?}");
        let out = tool.run(args);
        // Past parsing, the missing file is what fails (DTC 183: Files.newInputStream's
        // NoSuchFileException, whose message is the path).
        assert_failure(&out, "", "none.properties\n");
    }
}

/// A ktb broker with SCRAM users, and the tool pointed at it.
struct Live {
    broker: KtbProcess,
    bootstrap: String,
    tool: Tool,
    _cwd: tempfile::TempDir,
}

impl Live {
    fn start() -> Live {
        let cwd = tempfile::tempdir().unwrap();
        let env = [("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", ADMIN_PW)];
        let broker = KtbProcess::start(cwd.path(), &[], &env);
        let bootstrap = broker.addr.expect("ktb listens").to_string();
        let tool = Tool::new();
        let live = Live { broker, bootstrap, tool, _cwd: cwd };
        live.config("admin.properties", "admin", ADMIN_PW);
        live
    }

    fn config(&self, name: &str, user: &str, password: &str) -> String {
        self.tool.config(
            name,
            &format!(
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.\
                 common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n"
            ),
        )
    }

    /// The tool as `config`'s user, with `args` after the connection options.
    fn run(&self, config: &str, args: &[&str]) -> Output {
        let mut all = vec!["--bootstrap-server", self.bootstrap.as_str(), "--command-config", config];
        all.extend_from_slice(args);
        self.tool.run(&all)
    }

    /// `ktb ARGS` as the admin, logged in through the environment.
    fn ktb(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(ktb_bin())
            .args(args)
            .env("HOME", self.tool.dir.path())
            .env("KTB_BOOTSTRAP_SERVER", &self.bootstrap)
            .env("KTB_SASL_USERNAME", "admin")
            .env("KTB_SASL_PASSWORD", ADMIN_PW)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ktb {args:?}: {}", text(&out.stderr));
        out
    }

    /// The admin's view of every token, through `ktb token describe` (another code path).
    fn tokens(&self) -> Vec<Value> {
        let out = self.ktb(&["token", "describe", "--show-hmac", "--output", "json"], "");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["tokens"].as_array().unwrap().clone()
    }

    fn add_user(&self, name: &str, password: &str) {
        self.ktb(&["user", "add", name, "--password-stdin"], &format!("{password}\n"));
    }
}

/// `SimpleDateFormat("yyyy-MM-dd'T'HH:mm")` in +05:30, computed here from UTC.
fn date(ms: i64) -> String {
    let ms = ms + TZ_OFFSET_MS;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 60_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}", rem / 60, rem % 60)
}

/// DTC 117 and 121–129: `%n` then the header, and `%n` then each row; minimum widths
/// 15, 30, 15, 15, 25, 15, 15, 15, left-aligned, never cut.
fn table(tokens: &[&Value]) -> String {
    let row = |c: [String; 8]| {
        format!(
            "\n{:<15} {:<30} {:<15} {:<15} {:<25} {:<15} {:<15} {:<15}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let mut out =
        row(["TOKENID", "HMAC", "OWNER", "REQUESTER", "RENEWERS", "ISSUEDATE", "EXPIRYDATE", "MAXDATE"]
            .map(String::from));
    for t in tokens {
        let s = |k: &str| t[k].as_str().unwrap().to_owned();
        let ms = |k: &str| date(t[k].as_i64().unwrap());
        // TokenInformation.renewersAsString: a List's toString.
        let renewers: Vec<String> =
            t["renewers"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().into()).collect();
        out.push_str(&row([
            s("token_id"),
            s("hmac"),
            s("owner"),
            s("requester"),
            format!("[{}]", renewers.join(", ")),
            ms("issue_timestamp_ms"),
            ms("expiry_timestamp_ms"),
            ms("max_timestamp_ms"),
        ]));
    }
    out
}

/// The id on `--create`'s second line, `Created delegation token with tokenId : ID`.
fn created_id(stdout: &str) -> String {
    stdout.lines().nth(1).and_then(|l| l.rsplit(' ').next()).unwrap_or_else(|| panic!("{stdout}")).to_owned()
}

fn token<'a>(tokens: &'a [Value], id: &str) -> &'a Value {
    tokens.iter().find(|t| t["token_id"] == id).unwrap_or_else(|| panic!("token {id}"))
}

/// T-KDT-1, T-KDT-2: each action against a live ktb prints exactly Kafka's lines, and
/// errors print the client exception's line (SPEC §9.7), exit 1.
#[test]
fn t_kdt_1_each_action_prints_what_kafkas_tool_prints() {
    let live = Live::start();
    live.add_user("bob", "bob-secret");
    let bob = live.config("bob.properties", "bob", "bob-secret");

    // --create (DTC 99, 109, then the table).
    let out = live.run(
        "admin.properties",
        &[
            "--create",
            "--max-life-time-period",
            "-1",
            "--renewer-principal",
            "User:bob",
            "--renewer-principal=User:carol",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty());
    let stdout = text(&out.stdout);
    let id = created_id(&stdout);
    let tokens = live.tokens();
    let t = token(&tokens, &id);
    assert_eq!(t["renewers"], serde_json::json!(["User:bob", "User:carol"]));
    assert_eq!(
        stdout,
        format!(
            "Calling create token operation with renewers :[User:bob, User:carol] , max-life-time-period :-1\n\
             Created delegation token with tokenId : {id}\n{}",
            table(&[t])
        )
    );
    let hmac = t["hmac"].as_str().unwrap().to_owned();

    // A super user's token for bob (DTC 102–105: the first --owner-principal), 1 h max.
    let out = live
        .run("admin.properties", &["--create", "--max-life-time-period", "3600000", "--owner-principal", "User:bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bobs_id = created_id(&text(&out.stdout));
    let tokens = live.tokens();
    let bobs = token(&tokens, &bobs_id);
    assert_eq!((bobs["owner"].as_str(), bobs["requester"].as_str()), (Some("User:bob"), Some("User:admin")));
    assert!(
        text(&out.stdout)
            .starts_with("Calling create token operation with renewers :[] , max-life-time-period :3600000\n")
    );

    // --describe with owners (DTC 172, 177, table): no newline after the count, so the
    // table's leading %n ends that line. An owner matches the tokens it owns or renews.
    let out = live.run("admin.properties", &["--describe", "--owner-principal", "User:bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let mut both = vec![t, bobs];
    both.sort_by_key(|t| listed.find(t["token_id"].as_str().unwrap()));
    assert_eq!(
        listed,
        format!("Calling describe token operation for owners: [User:bob]\nTotal number of tokens : 2{}", table(&both))
    );
    let out = live.run("admin.properties", &["--describe", "--owner-principal", "User:carol", "--owner-principal"]);
    assert_eq!(
        text(&out.stdout),
        format!("Calling describe token operation for owners: [User:carol]\nTotal number of tokens : 1{}", table(&[t]))
    );
    // T-KDT-2: without owners, every token the caller may see (all, for the admin)...
    let out = live.run("admin.properties", &["--describe"]);
    let mut all: Vec<&Value> = tokens.iter().collect();
    let listed = text(&out.stdout);
    assert!(listed.starts_with("Calling describe token operation for current user.\nTotal number of tokens : 2\n"));
    all.sort_by_key(|t| listed.find(t["token_id"].as_str().unwrap()));
    assert_eq!(
        listed,
        format!("Calling describe token operation for current user.\nTotal number of tokens : 2{}", table(&all))
    );
    // ...bob sees the one he owns and the one he renews...
    let out = live.run(&bob, &["--describe"]);
    assert!(text(&out.stdout).contains("Total number of tokens : 2\n"), "{}", text(&out.stdout));
    // ...and with --kafka-compat, Kafka's empty owner list: nothing (DTC 175).
    let out = live.run("admin.properties", &["--describe", "--kafka-compat"]);
    assert_eq!(
        text(&out.stdout),
        format!("Calling describe token operation for current user.\nTotal number of tokens : 0{}", table(&[]))
    );

    // --renew by a renewer (DTC 147, 151: no newline at the end).
    let out = live.run(&bob, &["--renew", "--hmac", &hmac, "--renew-time-period", "600000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let renewed = token(&live.tokens(), &id)["expiry_timestamp_ms"].as_i64().unwrap();
    assert_eq!(
        text(&out.stdout),
        format!(
            "Calling renew token operation with hmac :{hmac} , renew-time-period :600000\n\
             Completed renew operation. New expiry date : {}",
            date(renewed)
        )
    );

    // --expire later (DTC 159, 163).
    let out = live.run("admin.properties", &["--expire", "--hmac", &hmac, "--expiry-time-period", "60000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expiry = token(&live.tokens(), &id)["expiry_timestamp_ms"].as_i64().unwrap();
    assert_eq!(
        text(&out.stdout),
        format!(
            "Calling expire token operation with hmac :{hmac} , expire-time-period :60000\n\
             Completed expire operation. New expiry date : {}",
            date(expiry)
        )
    );

    // Errors after the Calling line: the exception's toString, as ExecutionException
    // carries it (DTC 63–64), exit 1. Someone else's token: 63.
    let out = live.run(&bob, &["--expire", "--hmac", bobs["hmac"].as_str().unwrap(), "--expiry-time-period", "-1"]);
    assert!(out.status.success(), "bob owns it: {}", text(&out.stderr));
    live.add_user("eve", "eve-secret");
    let eve = live.config("eve.properties", "eve", "eve-secret");
    let out = live.run(&eve, &["--renew", "--hmac", &hmac, "--renew-time-period", "-1"]);
    assert_failure(
        &out,
        &format!("Calling renew token operation with hmac :{hmac} , renew-time-period :-1\n"),
        "org.apache.kafka.common.errors.DelegationTokenOwnerMismatchException: Specified Principal is not valid \
         Owner/Renewer.\n",
    );
    // Expired at once (-1): gone (62), the line SPEC §9.7 quotes from Kafka 3.6.2's tool.
    let out = live.run("admin.properties", &["--expire", "--hmac", &hmac, "--expiry-time-period", "-1"]);
    assert!(out.status.success());
    let out = live.run("admin.properties", &["--renew", "--hmac", &hmac, "--renew-time-period", "-1"]);
    assert_failure(
        &out,
        &format!("Calling renew token operation with hmac :{hmac} , renew-time-period :-1\n"),
        "org.apache.kafka.common.errors.DelegationTokenNotFoundException: Delegation Token is not found on server.\n",
    );
    // A wrong password: the server's message in a SaslAuthenticationException.
    let wrong = live.config("wrong.properties", "admin", "not-the-password");
    let out = live.run(&wrong, &["--describe"]);
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication due \
         to invalid credentials with SASL mechanism SCRAM-SHA-512\n",
    );
    // The login of a token expired above fails like a wrong password...
    let token_cfg = live.tool.config(
        "token.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.\
             security.scram.ScramLoginModule required username=\"{bobs_id}\" password=\"{}\" tokenauth=\"true\";\n",
            bobs["hmac"].as_str().unwrap()
        ),
    );
    let out = live.run(&token_cfg, &["--describe"]);
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication due \
         to invalid credentials with SASL mechanism SCRAM-SHA-512\n",
    );
    // ...and a live token's login may not manage tokens (64).
    let out =
        live.run("admin.properties", &["--create", "--max-life-time-period", "-1", "--owner-principal", "User:bob"]);
    let tid = created_id(&text(&out.stdout));
    let tokens = live.tokens();
    let th = token(&tokens, &tid)["hmac"].as_str().unwrap().to_owned();
    let token_cfg = live.tool.config(
        "token.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.\
             security.scram.ScramLoginModule required username=\"{tid}\" password=\"{th}\" tokenauth=\"true\";\n"
        ),
    );
    let out = live.run(&token_cfg, &["--describe"]);
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.UnsupportedByAuthenticationException: Delegation Token requests are not \
         allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels.\n",
    );

    // Values read after the Admin client is made, in DTC's order (DTC 96–102, 145–148):
    // a principal without a colon, before the Calling line for renewers...
    let out = live.run("admin.properties", &["--create", "--max-life-time-period", "-1", "--renewer-principal", "bob"]);
    assert_failure(&out, "", "expected a string in format principalType:principalName but got bob\n");
    // ...after it for the owner;
    let out = live.run("admin.properties", &["--create", "--max-life-time-period", "-1", "--owner-principal=bob"]);
    assert_failure(
        &out,
        "Calling create token operation with renewers :[] , max-life-time-period :-1\n",
        "expected a string in format principalType:principalName but got bob\n",
    );
    // a period given without a value is a null Long unboxed (Java 17's message);
    let out = live.run("admin.properties", &["--create", "--max-life-time-period"]);
    assert_failure(
        &out,
        "",
        "Cannot invoke \"java.lang.Long.longValue()\" because the return value of \
         \"joptsimple.OptionSet.valueOf(joptsimple.OptionSpec)\" is null\n",
    );
    // a period jopt-simple cannot convert, or given twice;
    let out = live.run("admin.properties", &["--create", "--max-life-time-period=1h"]);
    assert_failure(&out, "", "Cannot parse argument '1h' of option max-life-time-period\n");
    let out = live
        .run("admin.properties", &["--renew", "--hmac", "aGk=", "--renew-time-period", "1", "--renew-time-period=2"]);
    assert_failure(&out, "", "Found multiple arguments for option renew-time-period, but you asked for only one\n");
    // an HMAC that is not base64, after the Calling line (java.util.Base64's message).
    let out = live.run("admin.properties", &["--expire", "--hmac", "not-base64", "--expiry-time-period", "-1"]);
    assert_failure(
        &out,
        "Calling expire token operation with hmac :not-base64 , expire-time-period :-1\n",
        "Illegal base64 character 2d\n",
    );
    let out = live.run("admin.properties", &["--expire", "--hmac", "--expiry-time-period", "-1"]);
    assert_failure(
        &out,
        "Calling expire token operation with hmac :null , expire-time-period :-1\n",
        "Cannot invoke \"String.getBytes(java.nio.charset.Charset)\" because \"src\" is null\n",
    );
    drop(live.broker);
}

/// T-KDT-1: a script written for Kafka's tool (the id and HMAC taken from `--create`'s
/// table with awk) runs unchanged, and what it extracted logs in with kcat.
#[test]
fn t_kdt_1_a_script_for_kafkas_tool_works_on_ktb() {
    let live = Live::start();
    let script = format!(
        "set -eu\n\
         out=$(./kafka-delegation-tokens.sh --bootstrap-server {} --command-config admin.properties \
         --create --max-life-time-period -1)\n\
         printf '%s\\n' \"$out\" | awk '$1 == \"TOKENID\" {{ getline; getline; print $1 > \"token.id\"; print $2 > \"token.hmac\" }}'\n",
        live.bootstrap
    );
    let out =
        Command::new("bash").args(["-c", &script]).current_dir(live.tool.dir.path()).env("TZ", TZ).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(live.tool.dir.path().join(f)).unwrap().trim().to_owned();
    let (id, hmac) = (read("token.id"), read("token.hmac"));
    assert_eq!(token(&live.tokens(), &id)["hmac"].as_str(), Some(hmac.as_str()));
    let kcat = Command::new("kcat")
        .args(["-b", &live.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={id}"), "-X", &format!("sasl.password={hmac}"), "-L", "-m", "10"])
        .output()
        .expect("kcat (tests/run.sh installs it)");
    assert!(kcat.status.success(), "kcat logs in with the token: {}", text(&kcat.stderr));
}

/// T-KDT-1, T-KDT-3: the Admin client's settings: no broker answers until
/// `default.api.timeout.ms` ("Timed out waiting for a node assignment", KafkaAdminClient
/// 1151 and 1072), a call timeout shorter than `request.timeout.ms` is refused (640–653),
/// and settings ktb cannot honour are clear errors.
#[test]
fn t_kdt_3_command_config_settings() {
    let tool = Tool::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let scram = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.\
                 common.security.scram.ScramLoginModule required username=\"u\" password=\"p\";\n";
    let cfg = tool.config("down.properties", &format!("{scram}request.timeout.ms=500\ndefault.api.timeout.ms=1500\n"));
    let start = Instant::now();
    let out = tool.run(&["--bootstrap-server", &addr, "--command-config", &cfg, "--describe"]);
    let took = start.elapsed();
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment. Call: \
         describeDelegationToken\n",
    );
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_secs(10), "{took:?}");

    let cfg =
        tool.config("short.properties", &format!("{scram}request.timeout.ms=5000\ndefault.api.timeout.ms=1000\n"));
    let out = tool.run(&["--bootstrap-server", &addr, "--command-config", &cfg, "--describe"]);
    assert_failure(
        &out,
        "",
        "Failed to create new KafkaAdminClient\nCaused by: org.apache.kafka.common.config.ConfigException: The \
         specified value of default.api.timeout.ms must be no smaller than the value of request.timeout.ms.\n",
    );

    // What Admin.create refuses (KafkaAdminClient 3.6.2 line 519 wraps it, ClientUtils
    // parseAndValidateAddresses and JaasContext word the cause): before the action.
    let failed = "Failed to create new KafkaAdminClient\nCaused by: ";
    let bootstrap_cases = [
        ("localhost", "org.apache.kafka.common.config.ConfigException: Invalid url in bootstrap.servers: localhost"),
        (
            "127.0.0.1:99999",
            "org.apache.kafka.common.config.ConfigException: Invalid port in bootstrap.servers: 127.0.0.1:99999",
        ),
        (
            "nosuchhost.invalid:9092",
            "org.apache.kafka.common.config.ConfigException: No resolvable bootstrap urls given in bootstrap.servers",
        ),
    ];
    for (bootstrap, cause) in bootstrap_cases {
        let out = tool.run(&["--bootstrap-server", bootstrap, "--command-config", "down.properties", "--describe"]);
        assert_failure(&out, "", &format!("{failed}{cause}\n"));
    }
    let cfg = tool.config("nojaas.properties", "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n");
    let out = tool.run(&["--bootstrap-server", &addr, "--command-config", &cfg, "--describe"]);
    assert_failure(
        &out,
        "",
        &format!(
            "{failed}org.apache.kafka.common.KafkaException: java.lang.IllegalArgumentException: Could not find a \
             'KafkaClient' entry in the JAAS configuration. System property 'java.security.auth.login.config' is not \
             set\n"
        ),
    );
    // AdminClientConfig's validator, outside the wrapper (ConfigDef: the value trimmed).
    let cfg = tool.config("proto.properties", &format!("{scram}security.protocol= SASL_FOO \n"));
    let out = tool.run(&["--bootstrap-server", &addr, "--command-config", &cfg, "--describe"]);
    assert_failure(
        &out,
        "",
        "Invalid value SASL_FOO for configuration security.protocol: String must be one of: PLAINTEXT, SSL, \
         SASL_PLAINTEXT, SASL_SSL\n",
    );

    let jaas = "sasl.jaas.config=x.ScramLoginModule required username=\"u\" password=\"p\";\n";
    let cases = [
        ("jks.properties", format!("{scram}ssl.truststore.type=JKS\n"), "only PEM truststores are supported"),
        ("gssapi.properties", format!("security.protocol=SASL_PLAINTEXT\n{jaas}"), "GSSAPI"),
        ("oauth.properties", format!("security.protocol=SASL_SSL\nsasl.mechanism=OAUTHBEARER\n{jaas}"), "OAUTHBEARER"),
    ];
    for (name, body, needle) in cases {
        let cfg = tool.config(name, &body);
        let out = tool.run(&["--bootstrap-server", &addr, "--command-config", &cfg, "--describe"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}: the Admin client fails before the action");
        assert!(err.starts_with("error: ") && err.contains(needle) && err.lines().count() == 1, "{name}: {err}");
    }
}

/// T-KDT-3: SASL_SSL with a PEM truststore, as the Java tool's `--command-config` gives it;
/// an untrusted server fails at once with the Java client's SslAuthenticationException; a
/// mechanism the broker does not offer gets the Java client's message.
#[test]
fn t_kdt_3_sasl_ssl_and_mechanisms() {
    let cwd = tempfile::tempdir().unwrap();
    let pki = common::pki();
    let keystore = cwd.path().join("server.pem");
    std::fs::write(&keystore, format!("{}{}", pki.server_chain_pem, pki.server_key_pem)).unwrap();
    let broker = KtbProcess::start(
        cwd.path(),
        &["-o", &format!("ssl.keystore.location={}", keystore.display())],
        &[
            ("KTB_LISTENERS", "SASL_SSL://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", ADMIN_PW),
            ("KTB_SSL_KEYSTORE_TYPE", "PEM"),
        ],
    );
    let bootstrap = format!("localhost:{}", broker.addr.expect("ktb listens over TLS").port());
    let tool = Tool::new();
    std::fs::write(tool.dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let jaas = format!(
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" \
         password=\"{ADMIN_PW}\";\n"
    );
    let trusted = tool.config(
        "tls.properties",
        &format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nssl.truststore.type=PEM\n\
             ssl.truststore.location=ca.pem\n{jaas}"
        ),
    );
    let run = |cfg: &str| tool.run(&["--bootstrap-server", &bootstrap, "--command-config", cfg, "--describe"]);
    let out = run(&trusted);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("Calling describe token operation for current user.\nTotal number of tokens : 0{}", table(&[]))
    );
    let untrusted = tool
        .config("untrusted.properties", &format!("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n{jaas}"));
    let start = Instant::now();
    let out = run(&untrusted);
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.SslAuthenticationException: SSL handshake failed\n",
    );
    assert!(start.elapsed() < Duration::from_secs(20), "not retried until the call times out");
    let plain = tool.config(
        "plain.properties",
        "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nssl.truststore.type=PEM\nssl.truststore.location=ca.pem\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" \
         password=\"x\";\n",
    );
    let out = run(&plain);
    assert_failure(
        &out,
        "Calling describe token operation for current user.\n",
        "org.apache.kafka.common.errors.UnsupportedSaslMechanismException: Client SASL mechanism 'PLAIN' not enabled \
         in the server, enabled mechanisms are [SCRAM-SHA-256, SCRAM-SHA-512]\n",
    );
    drop(broker);
}

/// T-KDT-3: the `--command-config` file as the Java client reads it: values trimmed, the
/// protocol in any case, single-quoted JAAS values, an ISO-8859-1 file; a PLAINTEXT
/// client on a SASL listener is retried until the call's deadline, as the Admin client
/// retries a dropped connection (KafkaAdminClient 3.6.2 lines 863–866 and 821–822 word
/// the failure).
#[test]
fn t_kdt_3_command_config_read_as_java_reads_it() {
    let live = Live::start();
    let lenient = live.tool.config(
        "lenient.properties",
        &format!(
            "security.protocol=sasl_plaintext \nsasl.mechanism=SCRAM-SHA-512 \nsasl.jaas.config=org.apache.kafka.\
             common.security.scram.ScramLoginModule required username='admin' password='{ADMIN_PW}';\n"
        ),
    );
    let out = live.run(&lenient, &["--describe"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut latin1 = b"# caf\xe9, in ISO-8859-1\n".to_vec();
    latin1.extend_from_slice(&std::fs::read(live.tool.dir.path().join("admin.properties")).unwrap());
    std::fs::write(live.tool.dir.path().join("latin1.properties"), latin1).unwrap();
    let out = live.run("latin1.properties", &["--describe"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    std::fs::create_dir(live.tool.dir.path().join("adir")).unwrap();
    let out = live.run("adir", &["--describe"]);
    assert_failure(&out, "", "Is a directory\n");

    let plaintext = live.tool.config("plaintext.properties", "request.timeout.ms=300\ndefault.api.timeout.ms=1200\n");
    let started = wall_ms();
    let out = live.run(&plaintext, &["--describe"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "Calling describe token operation for current user.\n");
    let err = text(&out.stderr);
    let rest = err
        .strip_prefix(
            "org.apache.kafka.common.errors.TimeoutException: Call(callName=describeDelegationToken, deadlineMs=",
        )
        .unwrap_or_else(|| panic!("{err}"));
    let deadline: i64 = rest.split(',').next().unwrap().parse().unwrap();
    assert!((deadline - started - 1200).abs() < 1000, "{err}");
    assert!(rest.ends_with(" attempt(s)\n") && rest.contains(" timed out at "), "{err}");
    assert_eq!(err.lines().count(), 1);
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
