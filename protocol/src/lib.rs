//! Sans-IO Kafka wire handling for kafka-token-broker.
//!
//! This crate turns bytes into decoded requests and responses into bytes. It owns the
//! framing rules, the request-header rules, the one table of APIs the broker serves and
//! the Kafka error codes it can answer with, and the SASL mechanisms (SCRAM and PLAIN)
//! as pure state machines. It knows nothing of sockets, tasks or disks,
//! so the server, the `ktb` command line and the tests all share the same codec.

pub mod answers;
pub mod apis;
pub mod client;
pub mod error_code;
pub mod frame;
pub mod guard;
pub mod metadata;
pub mod plain;
pub mod request;
pub mod response;
mod response_guard;
pub mod scram;

pub use kafka_protocol;
