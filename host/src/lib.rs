//! # ledgerbridge
//!
//! Keeps an accounts-payable product's vendor bills, and the payments made
//! against them, in step with each customer's ERP. Every ERP is reached
//! through a connector plugin: a sandboxed WebAssembly component implementing
//! the `ledgerbridge:connector` contract (`wit/connector.wit`).
//!
//! - [`runtime`]: loads plugins, checks their contract version, and runs each
//!   operation in a fresh, limited sandbox.
//! - [`builtin`]: the connectors built into the binary.
//! - [`model`]: tenants, connections, documents, payments, entries.
//! - [`intake`]: validation of documents and payments arriving as JSON.
//! - [`store`]: SQLite; the only place with SQL.
//! - [`seal`]: secrets encrypted at rest, and the keys that seal them.
//! - [`sync`]: the policy, the executor and the worker.
//! - [`api`]: the HTTP API over the engine.

pub mod api;
pub mod builtin;
pub mod intake;
pub mod model;
pub mod oauth;
pub mod runtime;
pub mod seal;
pub mod store;
pub mod sync;
