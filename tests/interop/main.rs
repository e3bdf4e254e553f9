//! Interoperability with real third-party Kafka clients, installed by the README's test
//! command (`tests/run.sh`). A missing client fails the test: nothing here is skipped.

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod kcat;
mod platformatic;
mod python_client;
mod refresh;
