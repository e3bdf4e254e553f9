//! What a keyring reload costs with many tokens (T-ROTATE-5/6), and whether logins pause
//! meanwhile.
//!
//! Run with `cargo bench --bench rotate` (100,000 tokens) or `-- --quick` (10,000, fewer
//! rounds; keeps it working in CI, no timing is asserted). The tokens are written straight
//! into a sled store, all made with key `default`; the broker's tokens are opened over it
//! on a two-thread runtime while one task logs in with a cached token over and over.
//! Each round times three reloads as the feed task applies them: a key added that no
//! token uses, `default` removed (every token indexed again and refused), `default` back.
//! Printed: the median of each reload, and the login latency (median and worst) measured
//! while reloads ran against the same while idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_token_broker::auth::Principal;
use kafka_token_broker::auth::kdf::KdfPool;
use kafka_token_broker::config::HmacAlgorithm;
use kafka_token_broker::store::{SledStore, Store};
use kafka_token_broker::tokens::{Keyring, LoginKeys, TokenDetails, TokenSettings, Tokens, bulk_load};
use ktb_protocol::scram::ScramMechanism;

const NOW: i64 = 1_700_000_000_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds) = if quick { (10_000, 3) } else { (100_000, 7) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let sled = SledStore::open(&path).unwrap();
        let alice = Principal::user("alice");
        let made = bulk_load(
            &sled,
            (0..n).map(|i| TokenDetails {
                token_id: format!("bench-token-{i:08}"),
                owner: alice.clone(),
                requester: alice.clone(),
                renewers: Vec::new(),
                issue_ts: NOW,
                max_ts: NOW + 86_400_000,
                expiry_ts: NOW + 86_400_000,
                hmac_alg: HmacAlgorithm::Sha1,
                key_id: String::new(),
            }),
        )
        .unwrap();
        assert_eq!(made, n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let settings = TokenSettings {
        max_lifetime_ms: 7 * 86_400_000,
        expiry_time_ms: 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        superuser_manage: false,
        max_renewers: 64,
        max_per_owner: usize::MAX,
    };
    let ring = |text: &str| Keyring::parse(text).unwrap();
    let tokens = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&path).unwrap());
        let logins = LoginKeys { kdf: KdfPool::for_this_machine().unwrap(), salt_key: [7; 32] };
        Tokens::open(store, Some(ring("default a\nspare s\n")), settings, logins, Duration::from_secs(5)).await.unwrap()
    });
    // A token made with `spare`, which no reload touches: the one that keeps logging in.
    let (t, _) =
        rt.block_on(tokens.create(Principal::user("bob"), Principal::user("bob"), Vec::new(), -1, NOW)).unwrap();
    assert_eq!(t.key_id, "spare");
    rt.block_on(tokens.login(&t.token_id, ScramMechanism::Sha256, NOW)).unwrap().unwrap();

    let busy = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let logger = {
        let (tokens, busy, stop, id) = (tokens.clone(), busy.clone(), stop.clone(), t.token_id.clone());
        rt.spawn(async move {
            let (mut idle, mut during) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let was_busy = busy.load(Ordering::Relaxed);
                let started = Instant::now();
                tokens.login(&id, ScramMechanism::Sha256, NOW).await.unwrap().expect("the spare key's token logs in");
                let took = started.elapsed();
                if was_busy && busy.load(Ordering::Relaxed) {
                    during.push(took)
                } else {
                    idle.push(took)
                }
                tokio::task::yield_now().await;
            }
            (idle, during)
        })
    };

    let (mut added, mut removed, mut restored) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(50));
        let timed = |text: &str, into: &mut Vec<Duration>, reindexed: usize| {
            busy.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let change = rt.block_on(tokens.replace_keys(ring(text), Some("spare".into())));
            into.push(started.elapsed());
            busy.store(false, Ordering::Relaxed);
            assert_eq!(change.reindexed, reindexed, "{change:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        timed("default a\nspare s\nextra e\n", &mut added, 0);
        timed("spare s\nextra e\n", &mut removed, n);
        timed("default a\nspare s\n", &mut restored, n);
    }
    stop.store(true, Ordering::Relaxed);
    let (idle, during) = rt.block_on(logger).unwrap();
    println!("keyring reload with {n} tokens, median of {rounds} rounds:");
    println!("  a key added (no token indexed again)      {:>9.2?}", median(added));
    println!("  the key of every token removed (indexed)  {:>9.2?}", median(removed));
    println!("  that key back (indexed)                   {:>9.2?}", median(restored));
    let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "  cached token login while idle:     median {:>9.2?}  worst {:>9.2?}  ({} logins)",
        median(idle.clone()),
        worst(&idle),
        idle.len()
    );
    println!(
        "  cached token login during reloads: median {:>9.2?}  worst {:>9.2?}  ({} logins)",
        if during.is_empty() { Duration::ZERO } else { median(during.clone()) },
        worst(&during),
        during.len()
    );
}
