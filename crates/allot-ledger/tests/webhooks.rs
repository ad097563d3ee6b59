//! The webhook outbox on both stores: a committed change has its deliveries, a refused or
//! rolled-back one has none (also inside a shared batch); the worker's claims give each
//! endpoint's oldest pending delivery to one claimer at a time, retries wait out the schedule,
//! and an endpoint failing for too long is disabled.

use std::time::Duration as StdDuration;

use allot_ledger::testing as common;

use allot_ledger::webhooks::{Attempt, RetryPolicy};
use allot_ledger::*;
use common::{Fixture, TestDb};
use time::Duration;

/// Event types of the endpoint's deliveries, oldest first.
async fn types(f: &Fixture, endpoint: &str) -> Vec<String> {
    let mut d = f
        .ledger
        .webhook_deliveries(f.tenant.id, endpoint, 1000)
        .await
        .unwrap();
    d.reverse();
    d.into_iter().map(|d| d.event_type).collect()
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        schedule: vec![StdDuration::from_secs(5), StdDuration::from_secs(60)],
        disable_after: StdDuration::from_secs(3600),
    }
}

on_both_stores! {
    async fn the_outbox_holds_committed_changes_only(f: Fixture) {
        let (all, secret) = f.ledger.create_webhook(&f.ctx, "https://example.com/all", "every event", &[]).await.unwrap();
        assert!(secret.starts_with("whsec_"));
        let (seats_only, _) = f.ledger
            .create_webhook(&f.ctx, "https://example.com/seats", "", &["seat.assigned".into()])
            .await
            .unwrap();
        let crm = f.user_product("crm", 1).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        f.assign(&ann, &crm).await.unwrap();
        // Refused: no seat left. Nothing of it may reach the outbox.
        f.assign(&bob, &crm).await.unwrap_err();
        // A batch, each command under its own savepoint: the refused one leaves no row.
        let outcomes = f.ledger.apply(&f.ctx, &[
            Command::Assign { user: UserRef::Id(bob.id), product: ProductRef::Id(crm.id) },
            Command::CreateUser(NewUser::named("cid")),
        ]).await.unwrap();
        assert!(outcomes[0].is_err() && outcomes[1].is_ok(), "{outcomes:?}");
        // All or nothing: the refusal rolls the user creation back, and its event.
        f.ledger.apply_all_or_nothing(&f.ctx, &[
            Command::CreateUser(NewUser::named("dan")),
            Command::Assign { user: UserRef::Id(bob.id), product: ProductRef::Id(crm.id) },
        ]).await.unwrap_err();
        assert_eq!(
            types(&f, &all.id).await,
            ["pool.changed", "user.created", "user.created", "seat.assigned", "pool.exhausted", "user.created"],
        );
        assert_eq!(types(&f, &seats_only.id).await, ["seat.assigned"]);
        // The body names the change (its audit record) in the Standard Webhooks shape.
        let due = f.ledger.claim_webhook_deliveries(100, StdDuration::from_secs(60)).await.unwrap();
        assert_eq!(due.len(), 2, "one head per endpoint");
        let seat = due.iter().find(|d| d.endpoint == seats_only.id).unwrap();
        let body: serde_json::Value = serde_json::from_str(&seat.payload).unwrap();
        assert_eq!(body["type"], "seat.assigned");
        assert_eq!(body["data"]["user"], ann.id);
        assert_eq!(body["data"]["product"], crm.id);
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
        assert_eq!(seat.secret.len(), 32);
        // Disabled endpoints get no new events; removing one removes its deliveries.
        f.ok(Command::EditWebhook { id: seats_only.id.clone(), patch: webhooks::WebhookPatch { enabled: Some(false), ..Default::default() } }).await;
        f.unassign(&ann, &crm).await.unwrap();
        f.assign(&ann, &crm).await.unwrap();
        assert_eq!(types(&f, &seats_only.id).await, ["seat.assigned"]);
        f.ok(Command::DeleteWebhook { id: seats_only.id.clone() }).await;
        assert!(matches!(f.ledger.webhook(f.tenant.id, &seats_only.id).await, Err(LedgerError::UnknownWebhook(_))));
        // Bad endpoints are refused with the field named.
        let e = f.ledger.create_webhook(&f.ctx, "ftp://example.com", "", &[]).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "url", .. }), "{e:?}");
        let e = f.ledger.create_webhook(&f.ctx, "https://example.com", "", &["seat.stolen".into()]).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "events", .. }), "{e:?}");
    }

    async fn claims_retry_in_order_once_each_and_disable_failing_endpoints(f: Fixture) {
        let (hook, _) = f.ledger.create_webhook(&f.ctx, "https://example.com/h", "", &["user.created".into()]).await.unwrap();
        for login in ["u1", "u2", "u3"] {
            f.user(login).await;
        }
        // Two claimers at once: the head goes to exactly one of them, the rest wait behind it.
        let lease = StdDuration::from_secs(60);
        let (a, b) = tokio::join!(
            f.ledger.claim_webhook_deliveries(10, lease),
            f.ledger.claim_webhook_deliveries(10, lease),
        );
        let mut claimed: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        assert_eq!(claimed.len(), 1, "only the oldest pending delivery of an endpoint is due");
        let first = claimed.pop().unwrap();
        assert!(f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().is_empty(), "held by its claim");
        // A failure: retried after the schedule's first wait (5 s, with up to 10 % jitter).
        let failed = Attempt::Failed { status: Some(500), error: "the endpoint answered 500".into() };
        assert!(f.ledger.finish_webhook_delivery(&first, &failed, &policy()).await.unwrap());
        assert!(f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().is_empty());
        f.clock.advance(Duration::milliseconds(5600));
        let again = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempts), (first.id, 1));
        // A stale claimer cannot record over the new claim.
        assert!(!f.ledger.finish_webhook_delivery(&first, &Attempt::Delivered { status: 200 }, &policy()).await.unwrap());
        assert!(f.ledger.finish_webhook_delivery(&again[0], &Attempt::Delivered { status: 204 }, &policy()).await.unwrap());
        let shown = f.ledger.webhook_deliveries(f.tenant.id, &hook.id, 10).await.unwrap();
        let done = shown.iter().find(|d| d.id == first.id).unwrap();
        assert_eq!((done.status.as_str(), done.attempts, done.last_status_code), ("delivered", 2, Some(204)));
        // The next in line, in order.
        let second = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().pop().unwrap();
        assert!(second.id > first.id);
        // A claim whose worker died lapses, and the delivery is claimed again.
        f.clock.advance(Duration::seconds(61));
        let retaken = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().pop().unwrap();
        assert_eq!(retaken.id, second.id);
        // Failing for longer than disable_after disables the endpoint (audited); the schedule
        // used up marks the delivery failed.
        assert!(f.ledger.finish_webhook_delivery(&retaken, &failed, &policy()).await.unwrap());
        f.clock.advance(Duration::seconds(70));
        let third = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().pop().unwrap();
        assert!(f.ledger.finish_webhook_delivery(&third, &failed, &policy()).await.unwrap());
        f.clock.advance(Duration::hours(2));
        let fourth = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().pop().unwrap();
        assert_eq!(fourth.id, second.id, "still the head: the next waits behind it");
        assert!(f.ledger.finish_webhook_delivery(&fourth, &failed, &policy()).await.unwrap());
        let endpoint = f.ledger.webhook(f.tenant.id, &hook.id).await.unwrap();
        assert!(!endpoint.enabled && endpoint.disabled_at.is_some(), "{endpoint:?}");
        let shown = f.ledger.webhook_deliveries(f.tenant.id, &hook.id, 10).await.unwrap();
        assert_eq!(shown.iter().find(|d| d.id == second.id).unwrap().status, "failed");
        assert!(f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().is_empty(), "disabled");
        let audit = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "webhook.disable"));
        // Enabling it again delivers what waited.
        f.ok(Command::EditWebhook { id: hook.id.clone(), patch: webhooks::WebhookPatch { enabled: Some(true), ..Default::default() } }).await;
        assert_eq!(f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().len(), 1);
    }
    async fn ended_deliveries_past_their_retention_are_pruned_in_batches(f: Fixture) {
        let (hook, _) = f.ledger.create_webhook(&f.ctx, "https://example.com/h", "", &["user.created".into()]).await.unwrap();
        let lease = StdDuration::from_secs(60);
        let no_retry = RetryPolicy { schedule: vec![], disable_after: StdDuration::from_secs(86_400 * 30) };
        // Three delivered and one failed for good on day 0; one delivered on day 5; one pending.
        let mut ids = Vec::new();
        for (i, outcome) in ["ok", "ok", "ok", "dead", "ok", "pending"].into_iter().enumerate() {
            if i == 4 {
                f.clock.advance(Duration::days(5));
            }
            f.user(&format!("u{i}")).await;
            let due = f.ledger.claim_webhook_deliveries(10, lease).await.unwrap().pop().unwrap();
            ids.push(due.id);
            let attempt = match outcome {
                "ok" => Attempt::Delivered { status: 200 },
                "dead" => Attempt::Failed { status: Some(500), error: "500".into() },
                _ => continue,
            };
            assert!(f.ledger.finish_webhook_delivery(&due, &attempt, &no_retry).await.unwrap());
        }
        let left = |f: &Fixture| {
            let ledger = f.ledger.clone();
            let (tenant, id) = (f.tenant.id, hook.id.clone());
            async move {
                let mut d: Vec<i64> = ledger.webhook_deliveries(tenant, &id, 100).await.unwrap().iter().map(|d| d.id).collect();
                d.sort();
                d
            }
        };
        let week = Duration::days(7);
        // Day 5: nothing is a week old yet.
        assert_eq!(f.ledger.prune_webhook_deliveries(week, 10).await.unwrap(), 0);
        // Day 8: the four of day 0 go, two at a time; the one of day 5 and the pending one stay.
        f.clock.advance(Duration::days(3));
        assert_eq!(f.ledger.prune_webhook_deliveries(week, 2).await.unwrap(), 2);
        assert_eq!(f.ledger.prune_webhook_deliveries(week, 2).await.unwrap(), 2);
        assert_eq!(f.ledger.prune_webhook_deliveries(week, 2).await.unwrap(), 0);
        assert_eq!(left(&f).await, vec![ids[4], ids[5]]);
        // A pending delivery stays however old it is.
        f.clock.advance(Duration::days(30));
        assert_eq!(f.ledger.prune_webhook_deliveries(week, 10).await.unwrap(), 1);
        assert_eq!(left(&f).await, vec![ids[5]]);
    }
}
