//! The behaviour every store must show (T-PERSIST-3, T-CLUSTER-1, T-CLUSTER-2): one
//! test-suite, run against the sled store by its unit tests and against a real
//! three-member etcd cluster by `tests/cluster.rs`. It panics on the first difference.

use std::sync::Arc;

use super::{FeedEvent, Guard, Op, Store, put_new, write};

/// Runs every check against `store`, under keys starting with `conf/`, which must be empty.
pub async fn check(store: &dyn Store) {
    assert_eq!(store.get(b"conf/a").await.unwrap(), None, "a missing key reads as None");

    // The feed starts where a load of the prefix left off.
    let mut seen = Vec::new();
    let at = store
        .load(b"conf/", &mut |k, _| {
            seen.push(k.to_vec());
            Ok(())
        })
        .await
        .unwrap();
    assert!(seen.is_empty(), "the conformance prefix must start empty");
    let mut feed = store.feed(b"conf/", at).unwrap();

    // put_new writes once.
    assert!(put_new(store, b"conf/a", b"one".to_vec()).await.unwrap());
    assert!(!put_new(store, b"conf/a", b"other".to_vec()).await.unwrap(), "an existing key is kept");
    let one = store.get(b"conf/a").await.unwrap().expect("written");
    assert_eq!(one.value, b"one");

    // A guard on the stamp read lets exactly one change through.
    let next = vec![Op::Put(b"conf/a".to_vec(), b"two".to_vec())];
    let r1 = store.commit(vec![Guard::Unchanged(b"conf/a".to_vec(), one.stamp)], next.clone()).await.unwrap();
    assert!(r1.is_some(), "the stamp just read holds");
    let stale = store.commit(vec![Guard::Unchanged(b"conf/a".to_vec(), one.stamp)], next).await.unwrap();
    assert_eq!(stale, None, "a stale stamp refuses the commit");
    let two = store.get(b"conf/a").await.unwrap().expect("still there");
    assert_eq!(two.value, b"two");
    assert_ne!(two.stamp, one.stamp, "a change changes the stamp");

    // A failed guard applies none of the commit's writes.
    let refused = store
        .commit(
            vec![Guard::Absent(b"conf/b".to_vec()), Guard::Absent(b"conf/a".to_vec())],
            vec![Op::Put(b"conf/b".to_vec(), b"b".to_vec()), Op::Delete(b"conf/a".to_vec())],
        )
        .await
        .unwrap();
    assert_eq!(refused, None);
    assert_eq!(store.get(b"conf/b").await.unwrap(), None, "nothing of a refused commit is applied");

    // Several writes apply together; scans are in key order.
    let r2 = write(
        store,
        vec![
            Op::Put(b"conf/c/2".to_vec(), b"c2".to_vec()),
            Op::Put(b"conf/c/1".to_vec(), b"c1".to_vec()),
            Op::Delete(b"conf/a".to_vec()),
        ],
    )
    .await
    .unwrap();
    assert!(r2 > r1.unwrap(), "revisions grow");
    let scanned = store.scan_prefix(b"conf/c/").await.unwrap();
    assert_eq!(scanned, vec![(b"conf/c/1".to_vec(), b"c1".to_vec()), (b"conf/c/2".to_vec(), b"c2".to_vec())]);
    let many = store.get_many(&[b"conf/c/2".to_vec(), b"conf/a".to_vec(), b"conf/c/1".to_vec()]).await.unwrap();
    let values: Vec<Option<Vec<u8>>> = many.into_iter().map(|v| v.map(|v| v.value)).collect();
    assert_eq!(values, [Some(b"c2".to_vec()), None, Some(b"c1".to_vec())]);
    assert!(store.barrier().await.unwrap() >= r2, "a barrier covers every completed commit");

    // The feed told every committed change, in order, with the value it replaced.
    let mut told = Vec::new();
    let mut last = 0;
    while last < r2 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
            .await
            .expect("the feed keeps up")
            .expect("the feed is open");
        match event {
            FeedEvent::Changes { revision, changes } => {
                assert!(revision > last, "revisions grow along the feed");
                last = revision;
                told.extend(changes.into_iter().map(|c| (c.key, c.value, c.prev)));
            }
            FeedEvent::Reload { .. } => panic!("no compaction happened"),
        }
    }
    told.sort();
    let put = |k: &[u8], v: &[u8], prev: Option<&[u8]>| (k.to_vec(), Some(v.to_vec()), prev.map(<[u8]>::to_vec));
    let mut expected = vec![
        put(b"conf/a", b"one", None),
        put(b"conf/a", b"two", Some(b"one")),
        (b"conf/a".to_vec(), None, Some(b"two".to_vec())),
        put(b"conf/c/1", b"c1", None),
        put(b"conf/c/2", b"c2", None),
    ];
    expected.sort();
    assert_eq!(told, expected);

    // T-CONC-1: concurrent read-modify-write cycles guarded by stamps lose no update.
    let counter = b"conf/counter".to_vec();
    write(store, vec![Op::Put(counter.clone(), 0u32.to_be_bytes().to_vec())]).await.unwrap();
    let store_ref: &dyn Store = store;
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bumps = (0..16).map(|_| {
        let (counter, conflicts) = (counter.clone(), conflicts.clone());
        async move {
            loop {
                let cur = store_ref.get(&counter).await.unwrap().unwrap();
                let n = u32::from_be_bytes(cur.value.as_slice().try_into().unwrap()) + 1;
                let guard = vec![Guard::Unchanged(counter.clone(), cur.stamp)];
                if store_ref
                    .commit(guard, vec![Op::Put(counter.clone(), n.to_be_bytes().to_vec())])
                    .await
                    .unwrap()
                    .is_some()
                {
                    return;
                }
                conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    join_all(bumps).await;
    let n = store.get(&counter).await.unwrap().unwrap().value;
    assert_eq!(n, 16u32.to_be_bytes(), "every guarded increment counted");

    // Leave the prefix empty for the next run.
    let keys: Vec<Op> = store.scan_prefix(b"conf/").await.unwrap().into_iter().map(|(k, _)| Op::Delete(k)).collect();
    write(store, keys).await.unwrap();
}

/// Polls every future to completion on the current task.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await
}
