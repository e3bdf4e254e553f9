#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (kcat,
# docker-compose, etcd-server, prometheus (for promtool and a real server), openssl,
# jopt-simple and a JDK (the kafka-delegation-tokens oracle) and tzdata from Debian,
# kafka-python from PyPI into tests/interop/.venv, @platformatic/kafka from npm into
# tests/interop/node, which needs Node 20+ and npm), checks formatting and lints, validates
# the compose file's profiles, then runs every test, the interop tests with real
# third-party clients included, and the load generator's quick modes.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -f /usr/share/java/joptsimple.jar ] || missing+=(libjoptsimple-java)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -f /usr/share/zoneinfo/Asia/Kolkata ] || missing+=(tzdata)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing ${missing[*]} from Debian"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

venv=tests/interop/.venv
if ! "$venv/bin/python" -c 'import kafka' >/dev/null 2>&1; then
  echo "==> installing kafka-python from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kafka-python==3.0.12"
fi

if [ ! -d tests/interop/node/node_modules/@platformatic/kafka ]; then
  echo "==> installing @platformatic/kafka from npm into tests/interop/node"
  npm ci --prefix tests/interop/node --no-audit --no-fund
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> docker-compose config, both profiles (no Docker engine needed)"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile cluster --profile prometheus config -q
echo "==> cargo test"
cargo test --workspace
echo "==> load generator, quick mode (keeps it working; no timing is asserted)"
cargo bench --bench load -- --quick
cargo bench --bench load -- --etcd --quick
cargo bench --bench load -- --metrics --quick
cargo bench --bench sled_write -- --quick
cargo bench --bench rotate -- --quick
