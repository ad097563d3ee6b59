//! Logging. Request headers that carry secrets are marked sensitive by the server's middleware,
//! and no handler logs a request body, so secrets never reach the logs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("ALLOT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}", allot_ledger::QUIET_STORE_LOGS)));
    // Colours only for a person at a terminal: never into a file, a pipe or JSON.
    let ansi = !json && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
