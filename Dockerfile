# Build stage: compile the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
# etcd-client's build script needs protoc: .cargo/config.toml points it at tools/protoc.
COPY .cargo .cargo
COPY tools tools
COPY protocol protocol
COPY src src
COPY tests tests
RUN cargo build --release --locked --bin ktb

# Runtime stage: the binary, an unprivileged user and a private data directory.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/ktb ktb \
 && mkdir -p /var/lib/ktb \
 && chown ktb:ktb /var/lib/ktb \
 && chmod 700 /var/lib/ktb
COPY --from=build /src/target/release/ktb /usr/local/bin/ktb
USER ktb
WORKDIR /var/lib/ktb
ENV KTB_DATA_DIR=/var/lib/ktb/data \
    KTB_LISTENERS=SASL_PLAINTEXT://:9092
EXPOSE 9092
VOLUME ["/var/lib/ktb"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ktb"]
CMD ["serve"]
