//! kafka-token-broker: a Kafka-protocol server that is the authority for Kafka
//! delegation tokens (KIP-48).
//!
//! Bytes flow one way: [`ktb_protocol`] frames and decodes, [`api`] applies the rules,
//! [`store`] keeps what must survive, and [`server`] is the thin async shell around them.

pub mod api;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod fsutil;
pub mod ids;
pub mod logsafe;
pub mod metrics;
pub mod migrate;
pub mod properties;
pub mod rotation;
pub mod server;
pub mod store;
pub mod tls;
pub mod tokens;
