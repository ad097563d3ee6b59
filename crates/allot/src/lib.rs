//! allot: a license-seat server.
//!
//! - [`ledger`]: the one core every license rule lives in, over SQLite or PostgreSQL.
//! - [`auth`]: credentials to principals.
//! - [`api`]: the native `/v1` JSON API.
//! - [`dialects`]: other vendors' protocols (SuperOffice NetServer, MSP360) over the same ledger.
//! - [`xml`]: hardened XML reading and writing for the dialects.
//! - [`console`]: the web console at `/console`, over the same ledger.
//! - [`server`]: the entry point shared by `main` and the tests.
//! - [`cli`]: the `allot` command.

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod dialects;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod ratelimit;
pub mod scim;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod webhooks;
pub mod xml;
