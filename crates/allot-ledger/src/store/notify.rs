//! Credential changes committed by other processes on one PostgreSQL store (issue 12).
//!
//! A command that may change credentials (`Command::may_change_credentials`) sends
//! `pg_notify(CREDENTIALS_CHANNEL, tenant)` inside its own transaction, so the notification
//! goes out only if, and when, the change commits. Every server process with a token cache
//! keeps one session listening on the channel and forgets the tenant's cached tokens on each
//! notification; a lost session means notifications may have been missed, so the whole cache is
//! dropped and stays unused until the session listens again. SQLite has no such feed: one
//! process owns the file, and its own commands clear its cache.

use sqlx::postgres::PgListener;

use super::Store;
use crate::model::TenantId;

/// The channel of credential changes; the payload is the tenant's id.
pub(crate) const CREDENTIALS_CHANNEL: &str = "allot_credentials";

/// What the watch tells its owner.
pub(crate) enum CredentialsEvent {
    /// Listening from now on: changes committed after this are reported.
    Listening,
    /// A change to this tenant's credentials committed.
    Changed(TenantId),
    /// The session was lost: changes may have been missed until the next `Listening`.
    Lost,
}

impl Store {
    /// On PostgreSQL, starts a task that reports credential changes committed by any process to
    /// `report` until it returns `false`; `None` on SQLite.
    pub(crate) fn watch_credentials<F>(&self, report: F) -> Option<tokio::task::JoinHandle<()>>
    where
        F: Fn(CredentialsEvent) -> bool + Send + 'static,
    {
        let url = self.postgres_url.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move {
            loop {
                match listen(&url).await {
                    Ok(mut listener) => {
                        if !report(CredentialsEvent::Listening) {
                            return;
                        }
                        loop {
                            let event = match listener.try_recv().await {
                                Ok(Some(note)) => match note.payload().parse() {
                                    Ok(tenant) => CredentialsEvent::Changed(tenant),
                                    // Not ours to read: act as if anything had changed.
                                    Err(_) => CredentialsEvent::Lost,
                                },
                                // Reconnected (and listening again), but whatever was sent
                                // in between is gone.
                                Ok(None) => CredentialsEvent::Lost,
                                Err(e) => {
                                    tracing::warn!(error = %e, "credentials feed lost");
                                    let _ = report(CredentialsEvent::Lost);
                                    break;
                                }
                            };
                            let lost = matches!(event, CredentialsEvent::Lost);
                            if !report(event) {
                                return;
                            }
                            if lost && !report(CredentialsEvent::Listening) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for credential changes");
                        if !report(CredentialsEvent::Lost) {
                            return;
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CREDENTIALS_CHANNEL).await?;
    Ok(listener)
}
