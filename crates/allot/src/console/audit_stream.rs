//! The audit page's live feed: Server-Sent Events, one `audit` event per new record that
//! matches the page's filters, its data the table row to add. The browser's `EventSource`
//! reconnects by itself and sends `Last-Event-ID` (the last record's number), so a stream may
//! end at any time without losing or repeating a record; each ends after a minute (which also
//! checks the session again), and at once when the server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use minijinja::context;
use serde::Deserialize;

use super::pages::{AuditQuery, audit_filter, audit_rows};
use super::session::Viewer;
use super::views::{ConsoleError, render};
use crate::state::AppState;
use allot_ledger::{AuditFilter, TenantId};

/// How often the stream asks the ledger for new records.
const POLL: Duration = Duration::from_secs(1);
/// How long one stream lasts before the browser reconnects.
const LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    #[serde(flatten)]
    filter: AuditQuery,
    /// The newest record the page already shows.
    after: Option<i64>,
}

struct Feed {
    state: AppState,
    tenant: TenantId,
    filter: AuditFilter,
    after: i64,
    pending: VecDeque<Event>,
    started: tokio::time::Instant,
    first: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
}

pub async fn audit_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let tenant = viewer.reader()?;
    let filter = audit_filter(&state, tenant, &q.filter).await?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = resumed.or(q.after).unwrap_or(0).max(0);
    let feed = Feed {
        stopping: state.stopping.clone(),
        state,
        tenant,
        filter,
        after,
        pending: VecDeque::new(),
        started: tokio::time::Instant::now(),
        first: true,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.pending.pop_front() {
                return Some((Ok(event), feed));
            }
            if feed.first {
                feed.first = false;
                // Tell the browser to come back quickly when a stream ends.
                return Some((
                    Ok(Event::default().retry(Duration::from_secs(1)).comment("")),
                    feed,
                ));
            }
            if feed.started.elapsed() >= LIFETIME || *feed.stopping.borrow() {
                return None;
            }
            // A shutdown ends the stream at once (the browser reconnects to the next server).
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = feed.stopping.changed() => return None,
            }
            let filter = AuditFilter {
                after_seq: Some(feed.after),
                ..feed.filter.clone()
            };
            // A failed read is tried again at the next poll; the browser keeps its page.
            let Ok(events) = feed.state.ledger.audit(feed.tenant, &filter).await else {
                continue;
            };
            let Ok(rows) = audit_rows(&feed.state, feed.tenant, events).await else {
                continue;
            };
            for row in rows {
                feed.after = feed.after.max(row.event.seq);
                let Ok(html) = render("audit_row.html", context! { e => row }) else {
                    continue;
                };
                feed.pending.push_back(
                    Event::default()
                        .event("audit")
                        .id(row.event.seq.to_string())
                        .data(html.replace('\r', "")),
                );
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
