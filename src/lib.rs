//! allot: a license-seat server.
//!
//! - [`ledger`]: the one core every license rule lives in, over SQLite or PostgreSQL.
//! - [`auth`]: credentials to principals.
//! - [`api`]: HTTP adapters (the native `/v1` JSON API).
//! - [`server`]: the entry point shared by `main` and the tests.
//! - [`cli`]: the `allot` command.

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod ledger;
pub mod ratelimit;
pub mod server;
pub mod telemetry;
