//! The cost of the token paths: a durable create, a token login, and the HMAC.
//!
//! Run with `cargo bench --bench tokens`. `token_create_durable` includes the fsync of
//! the embedded store (one writer, so one flush per create: the worst case for group
//! commit). `token_login` is the server's whole part of a token login once the token's
//! SCRAM credential is cached: the store read, the expiry check and the SCRAM exchange.
//! `token_login_first` adds the one-time derivation of that credential (PBKDF2, 4096
//! iterations), which Create never pays. `token_live_until` is the liveness read a token
//! login ends with and a token session's watch starts with (a token with 8 renewers).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use kafka_token_broker::auth::Principal;
use kafka_token_broker::auth::kdf::KdfPool;
use kafka_token_broker::config::HmacAlgorithm;
use kafka_token_broker::store::{SledStore, Store};
use kafka_token_broker::tokens::{Keyring, LoginKeys, MasterSecret, TokenSettings, Tokens};
use ktb_protocol::scram::{self, ScramClient, ScramMechanism};

const NOW: i64 = 1_700_000_000_000;

fn logins() -> LoginKeys {
    LoginKeys { kdf: KdfPool::for_this_machine().unwrap(), salt_key: [7; 32] }
}

fn open(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Arc<Tokens> {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("store")).unwrap());
    let settings = TokenSettings {
        max_lifetime_ms: 7 * 86_400_000,
        expiry_time_ms: 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        superuser_manage: false,
        max_renewers: 64,
        max_per_owner: usize::MAX,
    };
    let wait = std::time::Duration::from_secs(5);
    rt.block_on(Tokens::open(store, Some(Keyring::single(MasterSecret::new("bench-secret"))), settings, logins(), wait))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = open(&rt, dir.path());
    let alice = Principal::user("alice");

    c.bench_function("token_create_durable", |b| {
        b.iter(|| rt.block_on(tokens.create(alice.clone(), alice.clone(), Vec::new(), -1, NOW)).unwrap())
    });

    let (token, hmac) = rt.block_on(tokens.create(alice.clone(), alice.clone(), Vec::new(), -1, NOW)).unwrap();
    let password = STANDARD.encode(hmac.expose());
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        // The client's messages, computed once against the cached credential's salt.
        let client = ScramClient::new(mech, &token.token_id, "clientnonce0123456789", true);
        let client_first = client.client_first();
        let login = rt.block_on(tokens.login(&token.token_id, mech, NOW)).unwrap().unwrap();
        let cf = scram::parse_client_first(&client_first).unwrap();
        let (_, server_first) = scram::server_first(mech, cf, Some(login.credential), Vec::new(), "servernonce");
        let (_, client_final) = client.client_final(&server_first, password.as_bytes()).unwrap();

        c.bench_function(&format!("token_login/{}", mech.name()), |b| {
            b.iter(|| {
                let cf = scram::parse_client_first(black_box(&client_first)).unwrap();
                let login = rt.block_on(tokens.login(&cf.username, mech, NOW)).unwrap().unwrap();
                let (state, sf) = scram::server_first(mech, cf, Some(login.credential), Vec::new(), "servernonce");
                black_box(sf);
                state.client_final(black_box(&client_final)).unwrap()
            })
        });
        c.bench_function(&format!("token_login_first/{}", mech.name()), |b| {
            b.iter_batched(
                || rt.block_on(tokens.create(alice.clone(), alice.clone(), Vec::new(), -1, NOW)).unwrap().0,
                |t| rt.block_on(tokens.login(&t.token_id, mech, NOW)).unwrap().unwrap(),
                criterion::BatchSize::PerIteration,
            )
        });
    }

    let renewers: Vec<Principal> = (0..8).map(|i| Principal::user(&format!("renewer-{i}"))).collect();
    let (renewed, _) = rt.block_on(tokens.create(alice.clone(), alice.clone(), renewers, -1, NOW)).unwrap();
    c.bench_function("token_live_until", |b| {
        b.iter(|| rt.block_on(tokens.live_until(black_box(&renewed.token_id), NOW)).unwrap())
    });

    let secret = MasterSecret::new("bench-secret");
    for (name, alg) in [
        ("HmacSHA1", HmacAlgorithm::Sha1),
        ("HmacSHA256", HmacAlgorithm::Sha256),
        ("HmacSHA512", HmacAlgorithm::Sha512),
    ] {
        c.bench_function(&format!("token_hmac/{name}"), |b| {
            b.iter(|| secret.token_hmac(alg, black_box("bxw-KptNTH6KHys8TV5vcA")))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
