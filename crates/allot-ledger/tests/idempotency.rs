//! Idempotent command runs on both stores: one change per key however often (and however
//! concurrently) it is retried, the recorded outcome answered again, another request under the
//! same key refused, refusals not recorded, keys expiring after 24 hours.

use allot_ledger::testing as common;

use allot_ledger::idempotency::{Idempotent, IdempotentRequest};
use allot_ledger::*;
use common::{Fixture, TestDb};
use time::Duration;

fn request(key: &str, fingerprint: &str) -> IdempotentRequest {
    IdempotentRequest {
        principal: "admin:admin".into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

fn add_one(product: &Product) -> Command {
    Command::AddSeats(NewSeats::plain(ProductRef::Id(product.id), 1))
}

on_both_stores! {
    async fn a_retry_gets_the_first_outcome_and_changes_nothing(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let req = request("k-1", "fp-1");
        let first = f.ledger.apply_idempotent(&f.ctx, &req, &[add_one(&crm)]).await.unwrap();
        let Idempotent::Fresh(outcomes) = first else { panic!("{first:?}") };
        let again = f.ledger.apply_idempotent(&f.ctx, &req, &[add_one(&crm)]).await.unwrap();
        assert_eq!(again, Idempotent::Replayed(outcomes));
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
        let record = f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-1").await.unwrap().unwrap();
        assert!(record.committed);
        assert_eq!(record.response, None);
        assert!(f.ledger.record_idempotent_response(f.tenant.id, &req, 201, "[1]").await.unwrap());
        // Recorded once; another request's fingerprint cannot write it.
        assert!(!f.ledger.record_idempotent_response(f.tenant.id, &req, 500, "x").await.unwrap());
        let record = f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-1").await.unwrap().unwrap();
        assert_eq!(record.response, Some((201, "[1]".to_owned())));
        // The same key with another request: refused, nothing changed.
        let e = f.ledger.apply_idempotent(&f.ctx, &request("k-1", "fp-2"), &[add_one(&crm)]).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "Idempotency-Key", .. }), "{e:?}");
        // Keys are scoped to the principal.
        let other = IdempotentRequest { principal: "admin:other".into(), ..req.clone() };
        assert!(matches!(f.ledger.apply_idempotent(&f.ctx, &other, &[add_one(&crm)]).await.unwrap(), Idempotent::Fresh(_)));
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
        // After 24 hours the key is forgotten.
        f.clock.advance(Duration::hours(24) + Duration::seconds(1));
        assert!(f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-1").await.unwrap().is_none());
        assert!(matches!(f.ledger.apply_idempotent(&f.ctx, &req, &[add_one(&crm)]).await.unwrap(), Idempotent::Fresh(_)));
        assert_eq!(f.counts(&crm).await, (3, 0, 3));
    }

    async fn a_refusal_is_not_recorded(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let ann = f.user("ann").await;
        let req = request("k-2", "fp");
        let assign = Command::Assign { user: UserRef::Id(ann.id), product: ProductRef::Id(crm.id) };
        let e = f.ledger.apply_idempotent(&f.ctx, &req, std::slice::from_ref(&assign)).await.unwrap_err();
        assert!(matches!(e, LedgerError::NoSeatFree { .. }), "{e:?}");
        assert!(f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-2").await.unwrap().is_none());
        f.add_seats(NewSeats::plain(ProductRef::Id(crm.id), 1)).await;
        assert!(matches!(f.ledger.apply_idempotent(&f.ctx, &req, &[assign]).await.unwrap(), Idempotent::Fresh(_)));
        assert!(f.assigned(&ann, &crm).await);
    }

    async fn concurrent_retries_change_once(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let req = request("k-3", "fp");
        let runs = (0..20).map(|_| {
            let (ledger, ctx, req, cmd) = (f.ledger.clone(), f.ctx.clone(), req.clone(), add_one(&crm));
            tokio::spawn(async move { ledger.apply_idempotent(&ctx, &req, &[cmd]).await })
        });
        let mut fresh = 0;
        let mut answers = Vec::new();
        for run in runs {
            match run.await.unwrap().unwrap() {
                Idempotent::Fresh(o) => { fresh += 1; answers.push(o) }
                Idempotent::Replayed(o) => answers.push(o),
            }
        }
        assert_eq!(fresh, 1);
        assert!(answers.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
    }
}
