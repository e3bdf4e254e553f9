//! The server-side cost of one SCRAM login, beside one PBKDF2 at 4096 iterations.
//!
//! Run with `cargo bench --bench scram`. A login must stay a few HMACs on the server:
//! the stored credential already holds StoredKey and ServerKey, so the server never
//! runs PBKDF2; the PBKDF2 line shows what that saves.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use ktb_protocol::scram::{self, ScramClient, ScramCredential, ScramMechanism};

fn bench(c: &mut Criterion) {
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let cred = ScramCredential::from_password(mech, b"bench-password", b"bench-salt-0123456789".to_vec(), 8192);
        // The client's messages, computed once (fixed nonces make the exchange repeatable).
        let client = ScramClient::new(mech, "bench-user", "clientnonce0123456789", false);
        let client_first = client.client_first();
        let parsed = scram::parse_client_first(&client_first).unwrap();
        let (_, server_first) = scram::server_first(mech, parsed, Some(cred.clone()), vec![0; 16], "servernonce");
        let (_, client_final) = client.client_final(&server_first, b"bench-password").unwrap();

        c.bench_function(&format!("scram_server_login/{}", mech.name()), |b| {
            b.iter(|| {
                let cf = scram::parse_client_first(black_box(&client_first)).unwrap();
                // A known user: the server computes no fake salt (only failing logins do).
                let (state, sf) = scram::server_first(mech, cf, Some(cred.clone()), Vec::new(), "servernonce");
                black_box(sf);
                state.client_final(black_box(&client_final)).unwrap()
            })
        });
        c.bench_function(&format!("pbkdf2_4096/{}", mech.name()), |b| {
            b.iter(|| mech.salted_password(black_box(b"bench-password"), b"bench-salt-0123456789", 4096))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
