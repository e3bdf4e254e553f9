# Build stage: compile the release binary.
#
# Every path cargo needs is copied by name (no globs): cargo reads every target the manifest
# declares, so the bench and test sources must be present even though only `ktb` is built.
FROM rust:1-bookworm AS build
WORKDIR /src
# The workspace manifest and lock file (rustfmt.toml for completeness: same tree as a checkout).
COPY Cargo.toml Cargo.lock rustfmt.toml ./
# etcd-client's build script needs protoc: .cargo/config.toml points PROTOC at tools/protoc.
COPY .cargo .cargo
COPY tools tools
# The `protocol` workspace member.
COPY protocol protocol
# [[bin]] ktb.
COPY src src
# The five [[bench]] targets (benches/*.rs).
COPY benches benches
# [[test]] interop (tests/interop/main.rs) and the tests cargo discovers in tests/.
COPY tests tests
RUN cargo build --release --locked --bin ktb

# Runtime stage: the binary, an unprivileged user and private directories.
FROM debian:bookworm-slim
# ca-certificates: the system trust roots ktb's own client uses for SASL_SSL brokers when
# no truststore is given (`ktb token ...` against a Kafka cluster). openssl (a dependency of
# it anyway) makes etcd's certificate in the compose cluster profile (deploy/cluster-init.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssl \
 && rm -rf /var/lib/apt/lists/*
# /var/lib/ktb: the data directory. /etc/ktb: configuration and secrets (the compose cluster
# profile mounts a shared volume there). Both 0700 and owned by ktb, which a fresh named
# volume mounted on either inherits.
RUN groupadd --system --gid 10001 ktb \
 && useradd --system --uid 10001 --gid ktb --home-dir /var/lib/ktb --shell /usr/sbin/nologin ktb \
 && mkdir -p /var/lib/ktb /etc/ktb \
 && chown ktb:ktb /var/lib/ktb /etc/ktb \
 && chmod 700 /var/lib/ktb /etc/ktb
COPY --from=build /src/target/release/ktb /usr/local/bin/ktb
USER ktb
WORKDIR /var/lib/ktb
# Inside a container, listen on every interface; the metrics listener (:9404 = all
# interfaces) serves /metrics, /healthz and /readyz, and the health check below needs it.
ENV KTB_DATA_DIR=/var/lib/ktb/data \
    KTB_LISTENERS=SASL_PLAINTEXT://:9092 \
    KTB_METRICS_LISTENER=:9404
EXPOSE 9092 9404
VOLUME ["/var/lib/ktb"]
# The image has no curl: ktb's own client GETs KTB_HEALTH_URL and exits 0 on 200. It asks
# /healthz (the process serves), not /readyz: orchestrators that act on HEALTHCHECK replace
# unhealthy containers, and a broker that is not ready because etcd lost its quorum, or
# because a newer broker wrote a record during a rolling upgrade, must keep running (it
# serves what it can and recovers by itself). Point load balancers and readiness probes at
# /readyz. If KTB_METRICS_LISTENER is moved, set KTB_HEALTH_URL to match.
ENV KTB_HEALTH_URL=http://127.0.0.1:9404/healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ktb", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ktb"]
CMD ["serve"]
