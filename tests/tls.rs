//! SASL_SSL: the broker's TLS listener (PEM keystore) and the client's TLS (PEM truststore).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KtbProcess, ktb_bin, pki};

fn ktb(args: &[&str], cwd: &Path, stdin: &str) -> std::process::Output {
    let mut cmd = Command::new(ktb_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    // A command that fails before reading stdin may already have exited (a broken pipe):
    // its exit code and output are what the tests check.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// SPEC §6.1 (ssl.keystore.*), T-CLI-1: a SASL_SSL listener with a PEM keystore file;
/// the client trusts it through `ssl.truststore.location` in a command-config file and
/// creates a token; without the CA it refuses the server (exit 3).
#[test]
fn t_cli_1_sasl_ssl_with_pem_truststore() {
    let cwd = tempfile::tempdir().unwrap();
    let pki = pki();
    let keystore = cwd.path().join("server.pem");
    std::fs::write(&keystore, format!("{}{}", pki.server_chain_pem, pki.server_key_pem)).unwrap();
    let ca = cwd.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let p = KtbProcess::start(
        cwd.path(),
        &["-o", &format!("ssl.keystore.location={}", keystore.display())],
        &[
            ("KTB_LISTENERS", "SASL_SSL://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", "tls-admin"),
            ("KTB_SSL_KEYSTORE_TYPE", "PEM"),
        ],
    );
    let addr = p.addr.expect("ktb listens over TLS");
    let config = |trust: &str| {
        format!(
            "bootstrap.servers=localhost:{}\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n{trust}\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"tls-admin\";\n",
            addr.port()
        )
    };
    let with_ca = cwd.path().join("with-ca.properties");
    std::fs::write(&with_ca, config(&format!("ssl.truststore.type=PEM\nssl.truststore.location={}\n", ca.display())))
        .unwrap();
    let o =
        ktb(&["token", "create", "--output", "json", "--command-config", with_ca.to_str().unwrap()], cwd.path(), "");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["snippets"]["java"].as_str().unwrap().contains("security.protocol=SASL_SSL"), "{v}");
    let inline = cwd.path().join("inline.properties");
    let pem_one_line = pki.ca_pem.replace('\n', "\\n\\\n");
    std::fs::write(&inline, config(&format!("ssl.truststore.certificates={pem_one_line}\n"))).unwrap();
    let o = ktb(&["token", "describe", "--command-config", inline.to_str().unwrap()], cwd.path(), "");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let without = cwd.path().join("without.properties");
    std::fs::write(&without, config("")).unwrap();
    let o = ktb(&["token", "describe", "--command-config", without.to_str().unwrap()], cwd.path(), "");
    assert_eq!(o.status.code(), Some(3), "an untrusted server is refused");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("TLS handshake failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// SPEC §6.1: the keystore may be given inline (certificate chain and key as PEM text);
/// a SASL_SSL listener without a keystore, or with a non-PEM type, stops the broker (2).
#[test]
fn sasl_ssl_keystore_settings() {
    let cwd = tempfile::tempdir().unwrap();
    let pki = pki();
    let p = KtbProcess::start(
        cwd.path(),
        &[],
        &[
            ("KTB_LISTENERS", "SASL_SSL://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", "x"),
            ("KTB_SSL_KEYSTORE_CERTIFICATE_CHAIN", &pki.server_chain_pem),
            ("KTB_SSL_KEYSTORE_KEY", &pki.server_key_pem),
        ],
    );
    assert!(p.addr.is_some(), "{:?}", p.log_lines());
    assert!(p.log_lines().iter().all(|l| !l.contains("PRIVATE KEY")), "the key is never logged");
    drop(p);
    for extra in [&[][..], &[("KTB_SSL_KEYSTORE_TYPE", "JKS")][..]] {
        let mut cmd = Command::new(ktb_bin());
        cmd.args(["serve"])
            .current_dir(cwd.path())
            .env("KTB_LISTENERS", "SASL_SSL://127.0.0.1:0")
            .env("KTB_ADMIN_PASSWORD", "x");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("ssl.keystore"), "{err}");
    }
}
