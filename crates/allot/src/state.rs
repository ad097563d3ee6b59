//! Application state: what handlers may use, and nothing more.
//!
//! [`AppState`] is the router's state. The native API takes it whole; each dialect takes only its
//! own sub-state, extracted with [`FromRef`], so a dialect sees the ledger, the authenticator,
//! the token lifetime and its own settings, but never the rest of the server's configuration
//! (store URL, admin password, limits).

use std::sync::Arc;

use allot_ledger::Ledger;
use axum::extract::FromRef;

use crate::auth::{Authenticator, Passwords};
use crate::config::{Msp360Config, Settings, SuperOfficeConfig};

/// Everything the server holds; the native API's handlers take it.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub auth: Authenticator,
    /// Lifetime of the bearer tokens and tickets a login issues.
    pub token_ttl: time::Duration,
    /// The server's whole configuration, for the server itself (middleware limits, bootstrap).
    pub settings: Arc<Settings>,
    /// Becomes true when the server starts shutting down, so long-lived answers (the console's
    /// live audit feed) end and do not hold the shutdown up.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// The key of the Idempotency-Key fingerprints (HMAC), read from the ledger once.
    pub fingerprint_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    superoffice: Arc<SuperOfficeConfig>,
    msp360: Arc<Msp360Config>,
}

impl AppState {
    pub fn new(ledger: Ledger, settings: Settings) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        AppState {
            stopping,
            stop: Arc::new(stop),
            auth: Authenticator::new(ledger.clone(), Passwords::new(cores)),
            ledger,
            token_ttl: settings.token_ttl,
            superoffice: Arc::new(settings.superoffice.clone()),
            msp360: Arc::new(settings.msp360.clone()),
            settings: Arc::new(settings),
            fingerprint_key: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Tells long-lived answers that the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// The SuperOffice NetServer dialect's view of the server.
#[derive(Clone)]
pub struct SuperOfficeState {
    pub ledger: Ledger,
    pub auth: Authenticator,
    pub token_ttl: time::Duration,
    pub config: Arc<SuperOfficeConfig>,
}

impl FromRef<AppState> for SuperOfficeState {
    fn from_ref(state: &AppState) -> Self {
        SuperOfficeState {
            ledger: state.ledger.clone(),
            auth: state.auth.clone(),
            token_ttl: state.token_ttl,
            config: state.superoffice.clone(),
        }
    }
}

/// The MSP360 Managed Backup API dialect's view of the server.
#[derive(Clone)]
pub struct Msp360State {
    pub ledger: Ledger,
    pub auth: Authenticator,
    pub token_ttl: time::Duration,
    pub config: Arc<Msp360Config>,
}

impl FromRef<AppState> for Msp360State {
    fn from_ref(state: &AppState) -> Self {
        Msp360State {
            ledger: state.ledger.clone(),
            auth: state.auth.clone(),
            token_ttl: state.token_ttl,
            config: state.msp360.clone(),
        }
    }
}
