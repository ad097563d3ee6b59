//! Every HTTP-level test of allot, as modules of one test binary (one link for the suite):
//! the native API in process, the real binary end to end, and each dialect in process and
//! against real clients. Store fixtures come from `allot_ledger::testing`.

mod server;

mod api;
mod console;
mod console_browser;
mod e2e;
mod idempotency;
mod licenses;
mod lifecycle;
mod limits;
mod msp360;
mod msp360_e2e;
mod schemathesis;
mod scim;
mod soak;
mod superoffice;
mod webhooks;
