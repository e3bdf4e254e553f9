//! Third-party clients on a three-broker ktb cluster over a real three-member etcd
//! (SPEC §9.3): a token made through one broker is usable through the others at once.

use crate::common::etcd::EtcdCluster;
use crate::common::{ADMIN_PASSWORD, KtbProcess, etcd_broker_process};

/// T-CLUSTER-3, T-CLUSTER-4: @platformatic/kafka creates a token on broker 1 and logs in
/// with it on broker 2, whose Metadata lists all three brokers; kafka-python logs in with
/// it on broker 3 at once and sees the same cluster in DescribeCluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platformatic_and_kafka_python_across_brokers() {
    let etcd = EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let procs: Vec<KtbProcess> =
        (1..=3).map(|n| etcd_broker_process(&etcd, cwd.path(), "/interop/", n, "interop-cluster-secret")).collect();
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.expect("listening").to_string()).collect();
    let ports: Vec<u16> = procs.iter().map(|p| p.addr.unwrap().port()).collect();
    // Each broker sees the others once their registrations have arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let login = loop {
        let v = crate::platformatic::run(&addrs[0], "SCRAM-SHA-512", "admin", ADMIN_PASSWORD, "login", &[]);
        if v["brokers"].as_array().is_some_and(|b| b.len() == 3) {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "three brokers not listed: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let listed: Vec<u64> = login["brokers"].as_array().unwrap().iter().map(|b| b["port"].as_u64().unwrap()).collect();
    assert_eq!(listed, ports.iter().map(|p| u64::from(*p)).collect::<Vec<_>>(), "{login}");

    let t = crate::platformatic::run(&addrs[0], "SCRAM-SHA-512", "admin", ADMIN_PASSWORD, "create", &[]);
    let (id, hmac) = (t["tokenId"].as_str().expect("a token id"), t["hmac"].as_str().expect("an hmac"));
    let on_b = crate::platformatic::run(&addrs[1], "SCRAM-SHA-256", id, hmac, "login", &[]);
    assert_eq!(on_b["ok"], true, "the token logs in on broker 2 at once: {on_b}");
    assert_eq!(on_b["brokers"].as_array().map(Vec::len), Some(3), "{on_b}");

    let on_c = crate::python_client::run_with(&addrs[2], "SCRAM-SHA-256", id, hmac, "metadata", &[]);
    assert_eq!(on_c["controller_id"], 1, "kafka-python logs in on broker 3: {on_c}");
    assert_eq!(on_c["brokers"].as_array().map(Vec::len), Some(3), "{on_c}");
    assert_eq!(on_c["cluster_id"], login["clusterId"], "one cluster id: {on_c}");
}
