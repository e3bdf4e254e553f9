//! What a token write costs in sled, by write path: one insert, or a batch holding one
//! insert, or a batch holding a record and three index keys (the layout before tokens
//! kept their indexes in memory). Each path writes random 22-character token ids with
//! 120-byte records into a fresh database and flushes every 64 writes, as the group commit
//! does under load. Prints writes per second and bytes written to disk per write (from
//! `/proc/self/io`). Run `cargo bench --bench sled_write` (`-- --quick` for fewer writes).

use std::time::Instant;

/// Bytes this process has caused to be written to storage, where Linux reports it.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes: "))?.trim().parse().ok()
}

#[derive(Clone, Copy)]
enum Path {
    Insert,
    OneOpBatch,
    IndexedBatch,
}

fn run(path: Path, n: usize) -> (f64, Option<f64>) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(64 << 20).open().unwrap();
    let tree = db.open_tree("records").unwrap();
    let before = written_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let id = kafka_token_broker::ids::random_kafka_id();
        let key = format!("tok/{id}");
        match path {
            Path::Insert => {
                tree.insert(key.as_bytes(), &[7u8; 120][..]).unwrap();
            }
            Path::OneOpBatch | Path::IndexedBatch => {
                let mut batch = sled::Batch::default();
                batch.insert(key.as_bytes(), &[7u8; 120][..]);
                if let Path::IndexedBatch = path {
                    for index in ["tpr/owner", "tpr/requester", "tex/expiry"] {
                        batch.insert(format!("{index}/{}/{id}", i % 1000).as_bytes(), &[][..]);
                    }
                }
                tree.apply_batch(batch).unwrap();
            }
        }
        if i % 64 == 63 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let per_write = before.zip(written_bytes()).map(|(b, a)| (a - b) as f64 / n as f64);
    (rate, per_write)
}

fn main() {
    let n = if std::env::args().any(|a| a == "--quick") { 20_000 } else { 200_000 };
    println!("writes: {n}, flush every 64");
    let mut rates = Vec::new();
    for (name, path) in
        [("insert", Path::Insert), ("one_op_batch", Path::OneOpBatch), ("indexed_batch", Path::IndexedBatch)]
    {
        let (rate, bytes) = run(path, n);
        let bytes = bytes.map_or("n/a".to_owned(), |b| format!("{b:.0}"));
        println!("{name}: {rate:.0} writes/s, {bytes} bytes written per write");
        rates.push(rate);
    }
    println!("ratio.insert_vs_one_op_batch: {:.1}", rates[0] / rates[1]);
}
