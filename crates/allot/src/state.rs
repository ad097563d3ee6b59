//! Application state: what handlers may use, and nothing more.
//!
//! [`AppState`] is the router's state. The native API takes it whole; each dialect takes only its
//! own sub-state, extracted with [`FromRef`], so a dialect sees the ledger, the authenticator,
//! the token lifetime and its own settings, but never the rest of the server's configuration
//! (store URL, admin password, limits).
//!
//! Each state is one `Arc`: axum clones the state for every extractor and middleware of every
//! request, and a struct of a dozen `Arc`s cost a dozen contended reference-count updates per
//! clone (perf: a fifth of the server's CPU under load on two cores, issue 12).

use std::ops::Deref;
use std::sync::Arc;

use allot_ledger::Ledger;
use axum::extract::FromRef;

use crate::auth::{Authenticator, Passwords};
use crate::config::{Msp360Config, Settings, SuperOfficeConfig};

/// Everything the server holds; the native API's handlers take it. Cloning it is one reference
/// count; its fields are read through [`Deref`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub ledger: Ledger,
    pub auth: Authenticator,
    /// Lifetime of the bearer tokens and tickets a login issues.
    pub token_ttl: time::Duration,
    /// The server's whole configuration, for the server itself (middleware limits, bootstrap).
    pub settings: Arc<Settings>,
    /// Becomes true when the server starts shutting down, so long-lived answers (the console's
    /// live audit feed) end and do not hold the shutdown up.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    /// The key of the Idempotency-Key fingerprints (HMAC), read from the ledger once.
    pub fingerprint_key: tokio::sync::OnceCell<Vec<u8>>,
    superoffice: SuperOfficeState,
    msp360: Msp360State,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(ledger: Ledger, settings: Settings) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let auth = Authenticator::new(ledger.clone(), Passwords::new(cores));
        let token_ttl = settings.token_ttl;
        AppState(Arc::new(Shared {
            stopping,
            stop,
            superoffice: SuperOfficeState(Arc::new(SuperOffice {
                ledger: ledger.clone(),
                auth: auth.clone(),
                token_ttl,
                config: settings.superoffice.clone(),
            })),
            msp360: Msp360State(Arc::new(Msp360 {
                ledger: ledger.clone(),
                auth: auth.clone(),
                token_ttl,
                config: settings.msp360.clone(),
            })),
            auth,
            ledger,
            token_ttl,
            settings: Arc::new(settings),
            fingerprint_key: tokio::sync::OnceCell::new(),
        }))
    }

    /// Tells long-lived answers that the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// The SuperOffice NetServer dialect's view of the server (one `Arc`, like [`AppState`]).
#[derive(Clone)]
pub struct SuperOfficeState(Arc<SuperOffice>);

pub struct SuperOffice {
    pub ledger: Ledger,
    pub auth: Authenticator,
    pub token_ttl: time::Duration,
    pub config: SuperOfficeConfig,
}

impl Deref for SuperOfficeState {
    type Target = SuperOffice;
    fn deref(&self) -> &SuperOffice {
        &self.0
    }
}

impl FromRef<AppState> for SuperOfficeState {
    fn from_ref(state: &AppState) -> Self {
        state.superoffice.clone()
    }
}

/// The MSP360 Managed Backup API dialect's view of the server (one `Arc`, like [`AppState`]).
#[derive(Clone)]
pub struct Msp360State(Arc<Msp360>);

pub struct Msp360 {
    pub ledger: Ledger,
    pub auth: Authenticator,
    pub token_ttl: time::Duration,
    pub config: Msp360Config,
}

impl Deref for Msp360State {
    type Target = Msp360;
    fn deref(&self) -> &Msp360 {
        &self.0
    }
}

impl FromRef<AppState> for Msp360State {
    fn from_ref(state: &AppState) -> Self {
        state.msp360.clone()
    }
}
