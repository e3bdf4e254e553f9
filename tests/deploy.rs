//! The deployment files (SPEC T-OPS-3), checked without a Docker engine: the Dockerfile's
//! build stage builds from exactly what it copies, both compose profiles validate with a
//! real `docker-compose`, and the sample Prometheus configuration and alert rules pass
//! `promtool`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of the Dockerfile's stages, continuation lines joined, comments dropped.
fn stages(dockerfile: &str) -> Vec<Vec<String>> {
    let mut stages: Vec<Vec<String>> = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let instruction = std::mem::take(&mut pending);
        if instruction.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(instruction);
    }
    stages
}

/// True when `.dockerignore` keeps `rel` out of the build context. The file's patterns
/// are of two kinds only: `**/name` (a path component anywhere) and `a/b` (a path from
/// the context's root); anything else fails the test so this reading stays exact.
fn ignored(patterns: &[String], rel: &Path) -> bool {
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    patterns.iter().any(|p| match p.strip_prefix("**/") {
        Some(name) => {
            assert!(!name.contains(['*', '?', '[', '/']), ".dockerignore pattern {p:?} is not understood here");
            parts.iter().any(|c| c == name)
        }
        None => {
            assert!(!p.contains(['*', '?', '[', '!']), ".dockerignore pattern {p:?} is not understood here");
            rel.starts_with(p)
        }
    })
}

/// Copies `from` (a file or a tree) to `to`, leaving out what `.dockerignore` excludes.
fn copy_into_context(root: &Path, rel: &Path, to: &Path, patterns: &[String]) {
    if ignored(patterns, rel) {
        return;
    }
    let from = root.join(rel);
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let name = entry.unwrap().file_name();
            copy_into_context(root, &rel.join(&name), &to.join(&name), patterns);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, to).unwrap_or_else(|e| panic!("COPY {}: {e}", rel.display()));
    }
}

/// T-OPS-3: `docker build .` works from a fresh checkout. Without a Docker engine, the
/// build stage is replayed: every `COPY` of the first stage copies its sources (minus
/// `.dockerignore`) into an empty directory, and the stage's `cargo build` runs there,
/// offline, in the dev profile (the release profile's settings do not decide which files
/// cargo needs, and the dev build reuses this suite's compiled dependencies). The runtime
/// stage must copy the binary the build stage made and check its health with `ktb health`.
#[test]
fn t_ops_3_the_build_stage_builds_from_what_the_dockerfile_copies() {
    let root = repo();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let patterns: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    let stages = stages(&dockerfile);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);

    let context = tempfile::tempdir().unwrap();
    let workdir =
        build.iter().find_map(|i| i.strip_prefix("WORKDIR ")).expect("the build stage sets WORKDIR").trim().to_owned();
    let mut build_command = None;
    for instruction in build {
        if let Some(args) = instruction.strip_prefix("COPY ") {
            let args: Vec<&str> = args.split_whitespace().collect();
            assert!(!args.iter().any(|a| a.starts_with("--")), "plain COPY only in the build stage: {instruction}");
            let (dest, sources) = args.split_last().expect("COPY has a destination");
            for src in sources {
                assert!(!src.contains(['*', '?']), "no globs: {instruction}");
                let rel = Path::new(src);
                let target = if dest.ends_with('/') || *dest == "." {
                    context.path().join(dest).join(rel.file_name().unwrap())
                } else {
                    context.path().join(dest)
                };
                assert!(root.join(rel).exists(), "{src} exists in the checkout");
                copy_into_context(&root, rel, &target, &patterns);
            }
        } else if let Some(cmd) = instruction.strip_prefix("RUN ") {
            build_command = Some(cmd.trim().to_owned());
        }
    }
    let cmd = build_command.expect("the build stage runs cargo");
    assert_eq!(cmd, "cargo build --release --locked --bin ktb", "the command replayed below");

    let out = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--offline", "--bin", "ktb"])
        .current_dir(context.path())
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the build stage fails on what the Dockerfile copies:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let binary = format!("{workdir}/target/release/ktb");
    let copied = runtime.iter().find(|i| i.starts_with("COPY --from=build ")).expect("the runtime copies the binary");
    assert!(copied.contains(&binary), "{copied} takes {binary}");
    let healthcheck = runtime.iter().find(|i| i.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    assert!(healthcheck.contains("ktb\", \"health\"") || healthcheck.contains("ktb health"), "{healthcheck}");
    let env: String = runtime.iter().filter(|i| i.starts_with("ENV ")).cloned().collect();
    assert!(env.contains("KTB_METRICS_LISTENER="), "the health check has a listener to ask: {env}");
    let expose = runtime.iter().find(|i| i.starts_with("EXPOSE ")).expect("EXPOSE");
    assert!(expose.contains("9092") && expose.contains("9404"), "{expose}");
}

/// `docker-compose` with `args` on the project's compose file; its output, or the failure.
fn compose(args: &[&str]) -> String {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(repo().join("docker-compose.yml"))
        .args(args)
        .env("KTB_ADMIN_PASSWORD", "compose-check")
        .output()
        .expect("docker-compose is installed (Debian package docker-compose; tests/run.sh installs it)");
    assert!(out.status.success(), "docker-compose {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The resolved compose file as JSON, read with the YAML library docker-compose itself
/// runs on (Debian's python3-yaml).
fn resolved(profile: Option<&'static str>) -> serde_json::Value {
    let mut args = Vec::new();
    if let Some(p) = profile {
        args.extend(["--profile", p]);
    }
    args.push("config");
    let yaml = compose(&args);
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    py.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The host ports a service publishes.
fn host_ports(service: &serde_json::Value) -> Vec<String> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| match p {
                    serde_json::Value::String(s) => {
                        s.rsplit_once(':').map(|(h, _)| h.rsplit(':').next().unwrap().to_owned())
                    }
                    other => other["published"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .or_else(|| other["published"].as_str().map(str::to_owned)),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// T-OPS-3: the default profile is one broker; the `cluster` profile adds three etcd
/// members and three brokers on them, each advertised at its own host port, all given the
/// same keyring through one shared file; both validate with `docker-compose config`.
#[test]
fn t_ops_3_compose_single_broker_default_and_cluster_profile() {
    compose(&["config", "-q"]);
    compose(&["--profile", "cluster", "config", "-q"]);

    // docker-compose 1.29's `config` prints every service; a profile's are those that
    // name it, and the default's those that name none.
    let all = resolved(Some("cluster"));
    let services = all["services"].as_object().unwrap();
    let in_profile = |profile: Option<&str>| -> Vec<&String> {
        services
            .iter()
            .filter(|(_, s)| {
                let profiles: Vec<&str> =
                    s["profiles"].as_array().map(|p| p.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
                match profile {
                    None => profiles.is_empty(),
                    Some(p) => profiles.is_empty() || profiles.contains(&p),
                }
            })
            .map(|(name, _)| name)
            .collect()
    };
    assert_eq!(in_profile(None), ["ktb"], "the default runs one broker and nothing else");
    let cluster = in_profile(Some("cluster"));
    let etcd: Vec<&&String> = cluster.iter().filter(|k| k.starts_with("etcd")).collect();
    assert_eq!(etcd.len(), 3, "three etcd members: {cluster:?}");
    for name in ["ktb1", "ktb2", "ktb3"] {
        assert!(cluster.iter().any(|k| *k == name), "{name} is in the cluster profile: {cluster:?}");
    }
    assert!(!cluster.iter().any(|k| *k == "prometheus"), "Prometheus is optional (its own profile)");
    let mut seen_ports = Vec::new();
    let mut configs = Vec::new();
    for name in ["ktb1", "ktb2", "ktb3"] {
        let s = &services[name];
        assert!(s.is_object(), "{name} is in the cluster profile");
        let env = &s["environment"];
        assert_eq!(env["KTB_STORE"], "etcd", "{name}");
        let endpoints = env["KTB_ETCD_ENDPOINTS"].as_str().unwrap_or_default();
        assert_eq!(endpoints.split(',').count(), 3, "{name} knows every member: {endpoints}");
        let ports = host_ports(s);
        let advertised = env["KTB_ADVERTISED_LISTENERS"].as_str().unwrap_or_default().to_owned();
        let port = ports
            .iter()
            .find(|p| advertised.ends_with(&format!(":{p}")))
            .unwrap_or_else(|| panic!("{name} is advertised at a port it publishes: {advertised} vs {ports:?}"));
        assert!(!seen_ports.contains(port), "{name}'s port {port} is its own");
        seen_ports.push(port.clone());
        let command: Vec<String> = s["command"]
            .as_array()
            .map(|c| c.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        configs.push(command.join(" "));
        assert!(env.get("KTB_DELEGATION_TOKEN_SECRET_KEY").is_none(), "{name}: the secret is not in the compose file");
    }
    assert!(configs.iter().all(|c| c == &configs[0] && c.contains("--config")), "one shared secrets file: {configs:?}");
    let single_port = host_ports(&services["ktb"]);
    assert!(seen_ports.iter().all(|p| !single_port.contains(p)), "no clash with the default broker");
}

/// The sample Prometheus configuration and alert rules the README points to are valid,
/// and the alerts fire when they should (`promtool test rules`).
#[test]
fn deploy_prometheus_config_and_alerts_pass_promtool() {
    let deploy = repo().join("deploy");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "ktb-alerts.yml"],
        vec!["test", "rules", "ktb-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&deploy)
            .output()
            .expect("promtool is installed (Debian package prometheus; tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Kills a process when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// T-OPS-3: what the compose cluster profile's `ktb-init` prepares works: run twice it
/// keeps the one shared keyring (0600) and the file naming it; a real etcd serves TLS with
/// the certificate it made; two brokers given the same `--config` file and CA join that
/// etcd as one cluster (no fingerprint mismatch), and a token created on one logs in on
/// the other. A `cluster.properties` of the earlier layout (a secret) has its secret moved
/// into the keyring as `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_ops_3_cluster_init_secret_and_etcd_tls_make_one_cluster() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (secrets, tls) = (dir.path().join("secrets"), dir.path().join("tls"));
    for d in [&secrets, &tls] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let init = || {
        let out =
            Command::new("sh").arg(repo().join("deploy/cluster-init.sh")).arg(&secrets).arg(&tls).output().unwrap();
        assert!(out.status.success(), "cluster-init.sh: {}", String::from_utf8_lossy(&out.stderr));
    };
    init();
    let props = secrets.join("cluster.properties");
    let keyring = secrets.join("keyring");
    let first = std::fs::read_to_string(&keyring).unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 1, "one key line");
    let (id, key) = lines[0].split_once(' ').unwrap();
    // 32 random bytes, URL-safe base64 without padding, as `ktb secret rotate` writes them.
    assert!(id.starts_with('k') && id.len() == 17, "key id {id}");
    // The message names the key id and length only: the key is a secret even here.
    let url_safe = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    assert!(key.len() == 43 && url_safe, "key {id}: {} characters, URL-safe: {url_safe}", key.len());
    let named = std::fs::read_to_string(&props).unwrap();
    assert!(named.contains(&format!("delegation.token.secret.keyring.file={}", keyring.display())), "{named}");
    for f in [&props, &keyring, &tls.join("server.key")] {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
    }
    init();
    assert_eq!(std::fs::read_to_string(&keyring).unwrap(), first, "a second run keeps the keyring");
    assert_eq!(std::fs::read_to_string(&props).unwrap(), named);

    // The earlier layout: the secret moves into the keyring as `default`.
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::write(earlier.join("cluster.properties"), "delegation.token.secret.key=the-earlier-secret\n").unwrap();
    let out =
        Command::new("sh").arg(repo().join("deploy/cluster-init.sh")).arg(&earlier).arg(&earlier).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(earlier.join("keyring")).unwrap(), "default the-earlier-secret\n");
    assert!(!std::fs::read_to_string(earlier.join("cluster.properties")).unwrap().contains("the-earlier-secret"));

    let (client, peer) = (free_port(), free_port());
    let etcd_bin = std::env::var("KTB_TEST_ETCD").unwrap_or_else(|_| "etcd".to_owned());
    let _etcd = Killed(
        Command::new(&etcd_bin)
            .args(["--name", "m0", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=https://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=m0=http://127.0.0.1:{peer}"))
            .arg(format!("--cert-file={}", tls.join("server.crt").display()))
            .arg(format!("--key-file={}", tls.join("server.key").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian package etcd-server; tests/run.sh installs it)"),
    );
    let ca = secrets.join("etcd-ca.crt").display().to_string();
    let endpoint = format!("https://localhost:{client}");
    let config = props.display().to_string();
    let broker = |node: &str| {
        let data = dir.path().join(format!("node{node}")).display().to_string();
        let env = [
            ("KTB_STORE", "etcd"),
            ("KTB_ETCD_ENDPOINTS", endpoint.as_str()),
            ("KTB_ETCD_CA_FILE", ca.as_str()),
            ("KTB_ETCD_PREFIX", "/compose/"),
            ("KTB_NODE_ID", node),
            ("KTB_DATA_DIR", data.as_str()),
            ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", common::ADMIN_PASSWORD),
        ];
        // etcd may still be starting: a broker that cannot reach it exits, and is retried.
        let mut last = Vec::new();
        for _ in 0..50 {
            let p = common::KtbProcess::start(dir.path(), &["--config", &config], &env);
            if p.addr.is_some() {
                return p;
            }
            last = p.log_lines();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("broker {node} did not start on the TLS etcd: {last:?}");
    };
    let b1 = broker("1");
    let b2 = broker("2");
    let mut c = common::TestClient::connect(b1.addr.unwrap()).await;
    c.login_admin().await;
    let t = common::token_api::create_ok(&mut c, &[]).await;
    let (_, r) =
        common::token_login(b2.addr.unwrap(), ktb_protocol::scram::ScramMechanism::Sha256, &t.token_id, &t.hmac, false)
            .await;
    assert_eq!(r.error_code, 0, "the token logs in on the other broker: {:?}", b2.log_lines());
}
