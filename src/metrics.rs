//! The broker's Prometheus metrics (T-LIFE-3, T-OPS-1).
//!
//! One registry, encoded by the Prometheus project's own crate. Counts come from a few
//! places only: the accept loop (connections), the connection loop (every answered
//! request), the SASL state machine's outcome, the sweeper and the store's commits. The
//! gauges that describe state (tokens, brokers, etcd) are read when scraped.
//!
//! Labels are bounded (§9.7): `mechanism` is an enabled mechanism or `other`, `api` and
//! `version` only the advertised pairs, `error_code` only the codes of §7. No label ever
//! holds a user name, client id, principal or address.
//!
//! With `ktb.metrics.listener` unset nothing is counted: every recording method returns at
//! once, so the figures with metrics on and off compare counting against not counting.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use ktb_protocol::apis;
use ktb_protocol::error_code;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::{Config, Mechanism, StoreKind};

/// The `Content-Type` of what [`Metrics::encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SaslLabels {
    mechanism: &'static str,
    token: bool,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    version: i16,
    error_code: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenOpLabels {
    op: &'static str,
    error_code: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The highest version of any advertised API, plus one: the version stride of the slots.
const VERSIONS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < apis::SUPPORTED_APIS.len() {
        if apis::SUPPORTED_APIS[i].max > max {
            max = apis::SUPPORTED_APIS[i].max;
        }
        i += 1;
    }
    max as usize + 1
};
const APIS: usize = apis::SUPPORTED_APIS.len();
const CODES: usize = error_code::ALL.len();

/// One series of a family per index, looked up in the family once and then kept, so the
/// hot paths touch only the series' own atomics (no lock, no hashing of labels).
struct Slots<M>(Box<[OnceLock<M>]>);

impl<M> Slots<M> {
    fn new(n: usize) -> Slots<M> {
        Slots((0..n).map(|_| OnceLock::new()).collect())
    }

    fn get(&self, i: usize, make: impl FnOnce() -> M) -> &M {
        self.0[i].get_or_init(make)
    }
}

/// The position of `code` in §7's list; unknown codes count as -1's.
fn code_index(code: i16) -> usize {
    let known = |c| error_code::ALL.binary_search_by_key(&c, |(code, _)| *code).ok();
    known(code).or_else(|| known(error_code::UNKNOWN_SERVER_ERROR)).unwrap_or(0)
}

/// The slot of a SASL outcome: mechanism (three enabled ones and `other`), token, result.
fn sasl_index(mechanism: Option<Mechanism>, token: bool, ok: bool) -> usize {
    let m = match mechanism {
        Some(Mechanism::ScramSha256) => 0,
        Some(Mechanism::ScramSha512) => 1,
        Some(Mechanism::Plain) => 2,
        None => 3,
    };
    m * 4 + usize::from(token) * 2 + usize::from(ok)
}

/// Request and commit latencies: 100 µs to about 10 s.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// State read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Live tokens in this broker's view.
    pub tokens: usize,
    /// Live brokers in the cluster (1 alone).
    pub brokers: usize,
    /// The store answered a barrier just now.
    pub store_up: bool,
    /// Audit lines that could not be written since the start.
    pub audit_write_errors: u64,
}

/// Every series the broker exports.
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    connections_active: Gauge,
    connections_total: Counter,
    sasl: Family<SaslLabels, Counter>,
    reauth: Family<ResultLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<ApiLabels>,
    tokens: Gauge,
    token_ops: Family<TokenOpLabels, Counter>,
    sweep_deleted: Counter,
    store_commit: Histogram,
    etcd_up: Gauge,
    cluster_brokers: Gauge,
    audit_write_errors: Counter,
    sasl_slots: Slots<Counter>,
    reauth_slots: Slots<Counter>,
    request_slots: Slots<Counter>,
    duration_slots: Slots<Histogram>,
    token_op_slots: Slots<Counter>,
}

/// Counts a connection as active until dropped.
pub struct ConnectionGuard<'a>(Option<&'a Metrics>);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.connections_active.dec();
        }
    }
}

/// The Kafka name of an advertised API, as the `api` label shows it.
fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Metadata => "Metadata",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::CreateDelegationToken => "CreateDelegationToken",
        ApiKey::RenewDelegationToken => "RenewDelegationToken",
        ApiKey::ExpireDelegationToken => "ExpireDelegationToken",
        ApiKey::DescribeDelegationToken => "DescribeDelegationToken",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::DescribeCluster => "DescribeCluster",
        _ => "other",
    }
}

/// The slot and `op` of a token API.
fn token_op(key: ApiKey) -> Option<(usize, &'static str)> {
    match key {
        ApiKey::CreateDelegationToken => Some((0, "create")),
        ApiKey::RenewDelegationToken => Some((1, "renew")),
        ApiKey::ExpireDelegationToken => Some((2, "expire")),
        ApiKey::DescribeDelegationToken => Some((3, "describe")),
        _ => None,
    }
}

impl Metrics {
    /// The metrics of a broker; `enabled` false records nothing (no listener configured).
    /// `ktb_etcd_up` exists only on etcd (`on_etcd`), so an alert on it needs no scoping.
    pub fn new(enabled: bool, on_etcd: bool) -> Metrics {
        let mut registry = Registry::with_prefix("ktb");
        let m = Metrics {
            enabled,
            connections_active: Gauge::default(),
            connections_total: Counter::default(),
            sasl: Family::default(),
            reauth: Family::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            tokens: Gauge::default(),
            token_ops: Family::default(),
            sweep_deleted: Counter::default(),
            store_commit: latency_histogram(),
            etcd_up: Gauge::default(),
            cluster_brokers: Gauge::default(),
            audit_write_errors: Counter::default(),
            registry: Registry::default(),
            sasl_slots: Slots::new(16),
            reauth_slots: Slots::new(2),
            request_slots: Slots::new(APIS * VERSIONS * CODES),
            duration_slots: Slots::new(APIS),
            token_op_slots: Slots::new(4 * CODES),
        };
        registry.register("connections_active", "Open client connections", m.connections_active.clone());
        registry.register("connections", "Client connections accepted", m.connections_total.clone());
        registry.register(
            "sasl_authentications",
            "SASL logins by mechanism, whether a delegation token was used, and result",
            m.sasl.clone(),
        );
        registry.register("reauthentications", "SASL re-authentications (KIP-368) by result", m.reauth.clone());
        registry.register(
            "requests",
            "Requests answered, by API, version and top-level error code",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time to handle and encode a request, by API (the failed-login delay excluded)",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register("tokens", "Live delegation tokens", m.tokens.clone());
        registry.register(
            "token_operations",
            "Delegation-token requests by operation and error code",
            m.token_ops.clone(),
        );
        registry.register("sweep_deleted", "Expired tokens deleted by the sweeper", m.sweep_deleted.clone());
        registry.register_with_unit(
            "store_commit_duration",
            "Time for the store to make a commit durable",
            Unit::Seconds,
            m.store_commit.clone(),
        );
        if on_etcd {
            registry.register("etcd_up", "1 when etcd answered a read at this scrape, 0 when not", m.etcd_up.clone());
        }
        registry.register(
            "cluster_brokers",
            "Live brokers in the cluster, this one included",
            m.cluster_brokers.clone(),
        );
        registry.register(
            "audit_write_errors",
            "Audit log lines (or reopenings) that failed to be written",
            m.audit_write_errors.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The ktb version, as a label; always 1", build);
        Metrics { registry, ..m }
    }

    /// The metrics `config` asks for: recorded when `ktb.metrics.listener` is set.
    pub fn for_config(config: &Config) -> Metrics {
        Metrics::new(config.metrics_listener.is_some(), matches!(config.store, StoreKind::Etcd(_)))
    }

    /// True when metrics are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A connection was accepted; it counts as active until the guard drops.
    pub fn connection(&self) -> ConnectionGuard<'_> {
        if !self.enabled {
            return ConnectionGuard(None);
        }
        self.connections_total.inc();
        self.connections_active.inc();
        ConnectionGuard(Some(self))
    }

    /// A SASL exchange ended. `mechanism` is `None` for a mechanism that is not enabled.
    pub fn login(&self, mechanism: Option<Mechanism>, token: bool, reauth: bool, ok: bool) {
        if !self.enabled {
            return;
        }
        let result = if ok { "success" } else { "failure" };
        let labels = || SaslLabels { mechanism: mechanism.map_or("other", Mechanism::name), token, result };
        self.sasl_slots.get(sasl_index(mechanism, token, ok), || self.sasl.get_or_create_owned(&labels())).inc();
        if reauth {
            let make = || self.reauth.get_or_create_owned(&ResultLabels { result });
            self.reauth_slots.get(usize::from(ok), make).inc();
        }
    }

    /// A request was answered with `code` at the top level after `elapsed`.
    pub fn request(&self, key: ApiKey, version: i16, code: i16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let Some(a) = apis::SUPPORTED_APIS.iter().position(|a| a.key == key) else { return };
        let advertised = apis::SUPPORTED_APIS[a];
        if version < advertised.min || version > advertised.max {
            return;
        }
        let api = api_name(key);
        let c = code_index(code);
        let error_code = error_code::ALL[c].0;
        let make = || self.requests.get_or_create_owned(&RequestLabels { api, version, error_code });
        self.request_slots.get((a * VERSIONS + version as usize) * CODES + c, make).inc();
        let make = || self.request_duration.get_or_create_owned(&ApiLabels { api });
        self.duration_slots.get(a, make).observe(elapsed.as_secs_f64());
        if let Some((i, op)) = token_op(key) {
            let make = || self.token_ops.get_or_create_owned(&TokenOpLabels { op, error_code });
            self.token_op_slots.get(i * CODES + c, make).inc();
        }
    }

    /// The sweeper deleted `n` expired tokens.
    pub fn swept(&self, n: usize) {
        if self.enabled {
            self.sweep_deleted.inc_by(n as u64);
        }
    }

    /// A store commit took `elapsed`.
    pub fn commit(&self, elapsed: Duration) {
        if self.enabled {
            self.store_commit.observe(elapsed.as_secs_f64());
        }
    }

    /// The exposition text, with the state gauges set from `state` (absent while the
    /// broker is starting).
    pub fn encode(&self, state: Option<Snapshot>) -> String {
        if let Some(s) = state {
            self.tokens.set(s.tokens as i64);
            self.cluster_brokers.set(s.brokers as i64);
            self.etcd_up.set(i64::from(s.store_up));
            // A counter kept by the audit log: brought up to its count.
            let seen = self.audit_write_errors.get();
            self.audit_write_errors.inc_by(s.audit_write_errors.saturating_sub(seen));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-LIFE-3: labels stay bounded whatever arrives; nothing is counted when disabled.
    #[test]
    fn t_life_3_labels_are_bounded() {
        let m = Metrics::new(true, false);
        m.request(ApiKey::CreateDelegationToken, 3, 0, Duration::from_millis(1));
        // Not advertised: neither the pair nor the key makes a series.
        m.request(ApiKey::CreateDelegationToken, 9, 0, Duration::from_millis(1));
        m.request(ApiKey::Produce, 9, 0, Duration::from_millis(1));
        m.request(ApiKey::RenewDelegationToken, 2, 12345, Duration::from_millis(1));
        m.login(None, false, false, false);
        let text = m.encode(None);
        assert!(text.contains(r#"ktb_requests_total{api="CreateDelegationToken",version="3",error_code="0"} 1"#));
        assert!(!text.contains(r#"version="9""#), "{text}");
        assert!(!text.contains("Produce"), "{text}");
        assert!(text.contains(r#"ktb_token_operations_total{op="renew",error_code="-1"} 1"#), "{text}");
        assert!(text.contains(r#"ktb_sasl_authentications_total{mechanism="other",token="false",result="failure"} 1"#));
        assert!(text.contains(&format!(r#"ktb_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"))));
        assert!(!text.contains("ktb_etcd_up"), "no etcd series on sled");
        assert!(Metrics::new(true, true).encode(None).contains("ktb_etcd_up 0"));
        assert_eq!(VERSIONS, 13, "Metadata v12 is the highest advertised version");

        let off = Metrics::new(false, false);
        off.request(ApiKey::CreateDelegationToken, 3, 0, Duration::from_millis(1));
        let _c = off.connection();
        assert!(!off.encode(None).contains("ktb_requests_total{"));
        assert!(off.encode(None).contains("ktb_connections_active 0"));
    }
}
