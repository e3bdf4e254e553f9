//! A real etcd cluster for the tests: Debian's `etcd-server` members on loopback ports,
//! each with its own data dir, started and stopped by the test itself.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member's ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A cluster of etcd members on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// Ports the OS says are free now.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// The etcd binary: `KTB_TEST_ETCD` or `etcd` on the PATH (tests/run.sh installs it).
fn etcd_bin() -> String {
    std::env::var("KTB_TEST_ETCD").unwrap_or_else(|_| "etcd".into())
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers writes.
    pub async fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let token = format!("ktb-test-{}", std::process::id() as u64 * 1000 + ports[0] as u64);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, token, _dir: dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_ready(Duration::from_secs(30)).await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let state = if m.dir.exists() { "existing" } else { "new" };
        let child = Command::new(etcd_bin())
            .args(["--name", &m.name, "--data-dir", &m.dir.display().to_string()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd ({}): {e}; tests/run.sh installs etcd-server", etcd_bin()));
        self.members[i].child = Some(child);
    }

    /// Every member's client URL, comma-separated (`ktb.etcd.endpoints`).
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(",")
    }

    /// The client URLs as a list.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    /// Waits until a write through every live member's endpoint list succeeds.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let attempt = async {
                let mut c = etcd_client::Client::connect(self.endpoint_list(), None).await?;
                c.put("/ready-check", "1", None).await?;
                Ok::<_, etcd_client::Error>(())
            };
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                return;
            }
            assert!(Instant::now() < deadline, "the etcd cluster did not become ready in {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
