//! Idempotent command runs on both stores: the key, the change and the answer commit in one
//! transaction. One change per key however often (and however concurrently) it is retried,
//! the stored answer given again, another request under the same key refused, a refusal
//! stored as the first answer, a server error not stored, keys expiring after 24 hours, and a
//! crash right after the commit leaving a key that still answers.

use allot_ledger::testing as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use allot_ledger::idempotency::{
    Answer, AnswerRead, Answered, IdempotentRequest, Ran, ReadValue, RunMode,
};
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

/// A renderer as an adapter would write one: the outcomes and the read as JSON, 201; a refusal
/// as 409 with its message. Counts its calls.
fn renderer(calls: Arc<AtomicUsize>) -> impl Fn(Result<Ran, LedgerError>) -> Answer + Send + Sync {
    move |ran| {
        calls.fetch_add(1, Ordering::SeqCst);
        match ran {
            Ok(ran) => Answer {
                status: 201,
                body: serde_json::json!({
                    "outcomes": ran.results.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>(),
                    "read": ran.read.map(|r| format!("{r:?}")),
                })
                .to_string(),
            },
            Err(e) => Answer {
                status: 409,
                body: e.to_string(),
            },
        }
    }
}

/// Adds a seat to `product` under `req`, answering the product's pool as the change left it.
async fn add_seat_answered(
    ledger: &Ledger,
    ctx: &Context,
    req: &IdempotentRequest,
    product: &Product,
    calls: &Arc<AtomicUsize>,
) -> Answered {
    let id = product.id;
    ledger
        .apply_answered(
            ctx,
            req,
            &[add_one(product)],
            RunMode::Atomic,
            move |_| Some(AnswerRead::Product(ProductRef::Id(id))),
            renderer(calls.clone()),
        )
        .await
        .unwrap()
}

on_both_stores! {
    async fn a_retry_gets_the_first_answer_and_changes_nothing(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let req = request("k-1", "fp-1");
        let Answered::Fresh(first) = add_seat_answered(&f.ledger, &f.ctx, &req, &crm, &calls).await else {
            panic!("the first run is fresh")
        };
        assert_eq!(first.status, 201);
        // The read ran after the command, in its transaction: it sees the new seat.
        assert!(first.body.contains("total: 1"), "{}", first.body);
        // A later change does not leak into the stored answer.
        f.add_seats(NewSeats::plain(ProductRef::Id(crm.id), 1)).await;
        let again = add_seat_answered(&f.ledger, &f.ctx, &req, &crm, &calls).await;
        assert_eq!(again, Answered::Replayed(first.clone()));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a replay renders nothing");
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
        let record = f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-1").await.unwrap().unwrap();
        assert_eq!(record.response, Some((first.status, first.body.clone())));
        // The same key with another request: refused, nothing changed.
        let e = f.ledger
            .apply_answered(&f.ctx, &request("k-1", "fp-2"), &[add_one(&crm)], RunMode::Atomic, |_| None, renderer(calls.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "Idempotency-Key", .. }), "{e:?}");
        // Keys are scoped to the principal.
        let other = IdempotentRequest { principal: "admin:other".into(), ..req.clone() };
        assert!(matches!(add_seat_answered(&f.ledger, &f.ctx, &other, &crm, &calls).await, Answered::Fresh(_)));
        assert_eq!(f.counts(&crm).await, (3, 0, 3));
        // After 24 hours the key is forgotten.
        f.clock.advance(Duration::hours(24) + Duration::seconds(1));
        assert!(f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-1").await.unwrap().is_none());
        assert!(matches!(add_seat_answered(&f.ledger, &f.ctx, &req, &crm, &calls).await, Answered::Fresh(_)));
        assert_eq!(f.counts(&crm).await, (4, 0, 4));
    }

    async fn a_refusal_is_stored_as_the_first_answer(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let ann = f.user("ann").await;
        let calls = Arc::new(AtomicUsize::new(0));
        let req = request("k-2", "fp");
        let assign = Command::Assign { user: UserRef::Id(ann.id), product: ProductRef::Id(crm.id) };
        let run = || f.ledger.apply_answered(
            &f.ctx, &req, std::slice::from_ref(&assign), RunMode::Atomic, |_| None, renderer(calls.clone()));
        let Answered::Fresh(first) = run().await.unwrap() else { panic!("fresh") };
        assert_eq!(first.status, 409);
        assert!(first.body.contains("no free seat"), "{}", first.body);
        let record = f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-2").await.unwrap().unwrap();
        assert_eq!(record.response, Some((409, first.body.clone())));
        // The refusal is counted in the usage history once, with the stored answer.
        assert_eq!(f.ledger.pool_denials(f.tenant.id).await.unwrap(), vec![(crm.id, 1)]);
        // A seat appears; the retry still gets the first answer and takes nothing.
        f.add_seats(NewSeats::plain(ProductRef::Id(crm.id), 1)).await;
        assert_eq!(run().await.unwrap(), Answered::Replayed(first));
        assert!(!f.assigned(&ann, &crm).await);
        assert_eq!(f.ledger.pool_denials(f.tenant.id).await.unwrap(), vec![(crm.id, 1)]);
        // Another key is another request.
        let fresh = f.ledger.apply_answered(
            &f.ctx, &request("k-3", "fp"), std::slice::from_ref(&assign), RunMode::Atomic, |_| None, renderer(calls.clone()))
            .await
            .unwrap();
        assert!(matches!(fresh, Answered::Fresh(Answer { status: 201, .. })));
        assert!(f.assigned(&ann, &crm).await);
        f.assert_invariants().await;
    }

    async fn a_server_error_is_not_stored_and_undoes_the_change(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let req = request("k-4", "fp");
        let failed = f.ledger
            .apply_answered(&f.ctx, &req, &[add_one(&crm)], RunMode::Atomic, |_| None, |_| Answer {
                status: 500,
                body: "{\"error\":{\"code\":\"internal\"}}".into(),
            })
            .await
            .unwrap();
        assert!(matches!(failed, Answered::Fresh(Answer { status: 500, .. })));
        assert_eq!(f.counts(&crm).await, (0, 0, 0));
        assert!(f.ledger.idempotency_record(f.tenant.id, "admin:admin", "k-4").await.unwrap().is_none());
        let calls = Arc::new(AtomicUsize::new(0));
        assert!(matches!(add_seat_answered(&f.ledger, &f.ctx, &req, &crm, &calls).await, Answered::Fresh(Answer { status: 201, .. })));
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
    }

    async fn a_batch_answers_each_command_and_a_dry_run_changes_nothing(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        let calls = Arc::new(AtomicUsize::new(0));
        let assign = |u: &User| Command::Assign { user: UserRef::Id(u.id), product: ProductRef::Id(crm.id) };
        let commands = [assign(&ann), assign(&bob)];
        let dry = f.ledger
            .apply_answered(&f.ctx, &request("dry", "fp"), &commands, RunMode::DryRun, |_| None, renderer(calls.clone()))
            .await
            .unwrap();
        assert!(dry.answer().body.contains("Ok(") && dry.answer().body.contains("Err("), "{dry:?}");
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
        let each = request("each", "fp");
        let run = || f.ledger.apply_answered(&f.ctx, &each, &commands, RunMode::Each, |_| None, renderer(calls.clone()));
        let Answered::Fresh(first) = run().await.unwrap() else { panic!("fresh") };
        assert!(f.assigned(&ann, &crm).await);
        assert!(!f.assigned(&bob, &crm).await);
        assert_eq!(run().await.unwrap(), Answered::Replayed(first));
        assert_eq!(f.counts(&crm).await, (1, 1, 0));
        // The dry run's answer is stored too.
        let again = f.ledger
            .apply_answered(&f.ctx, &request("dry", "fp"), &commands, RunMode::DryRun, |_| None, renderer(calls.clone()))
            .await
            .unwrap();
        assert_eq!(again, Answered::Replayed(dry.answer().clone()));
        f.assert_invariants().await;
    }

    async fn expired_keys_are_pruned_or_taken_over(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let calls = Arc::new(AtomicUsize::new(0));
        // More expired keys than one request prunes.
        for i in 0..150 {
            add_seat_answered(&f.ledger, &f.ctx, &request(&format!("old-{i}"), "fp"), &crm, &calls).await;
        }
        f.clock.advance(Duration::hours(25));
        for i in (0..150).rev() {
            let again = add_seat_answered(&f.ledger, &f.ctx, &request(&format!("old-{i}"), "fp"), &crm, &calls).await;
            assert!(matches!(again, Answered::Fresh(_)), "old-{i}: {again:?}");
        }
        assert_eq!(f.counts(&crm).await.0, 300);
    }

    async fn concurrent_retries_change_once(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let req = request("k-5", "fp");
        let calls = Arc::new(AtomicUsize::new(0));
        let runs = (0..20).map(|_| {
            let (ledger, ctx, req, crm, calls) = (f.ledger.clone(), f.ctx.clone(), req.clone(), crm.clone(), calls.clone());
            tokio::spawn(async move { add_seat_answered(&ledger, &ctx, &req, &crm, &calls).await })
        });
        let mut fresh = 0;
        let mut answers = Vec::new();
        for run in runs {
            match run.await.unwrap() {
                Answered::Fresh(a) => { fresh += 1; answers.push(a) }
                Answered::Replayed(a) => answers.push(a),
            }
        }
        assert_eq!(fresh, 1);
        assert!(answers.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
    }

    async fn a_crash_right_after_the_commit_leaves_a_key_that_answers(f: Fixture) {
        // The process that ran the request dies as soon as the ledger returned, before it
        // could do anything more (write an answer, send it): another process on the same
        // store must still find the change answered.
        let crm = f.user_product("crm", 0).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let req = request("k-crash", "fp");
        let Answered::Fresh(first) = add_seat_answered(&f.ledger, &f.ctx, &req, &crm, &calls).await else {
            panic!("fresh")
        };
        // The "restarted" server: a new ledger on the same store.
        let restarted = Ledger::open(&f.db.url()).await.unwrap().with_clock(Arc::new(f.clock.clone()));
        let record = restarted.idempotency_record(f.tenant.id, "admin:admin", "k-crash").await.unwrap().unwrap();
        assert_eq!(record.response, Some((first.status, first.body.clone())));
        // The state moves on; the retry still gets the answer of its own change.
        f.add_seats(NewSeats::plain(ProductRef::Id(crm.id), 2)).await;
        let again = add_seat_answered(&restarted, &f.ctx, &req, &crm, &calls).await;
        assert_eq!(again, Answered::Replayed(first));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.counts(&crm).await, (3, 0, 3));
        restarted.close().await;
    }
}

/// The answer's read is what the commands left, not what was there before them.
#[tokio::test]
async fn the_read_sees_the_change() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let crm = f.user_product("crm", 1).await;
    let ann = f.user("ann").await;
    let answered = f
        .ledger
        .apply_answered(
            &f.ctx,
            &request("read", "fp"),
            &[Command::Assign {
                user: UserRef::Id(ann.id),
                product: ProductRef::Id(crm.id),
            }],
            RunMode::Atomic,
            move |_| {
                Some(AnswerRead::UserProduct {
                    user: UserRef::Id(ann.id),
                    product: crm.id,
                })
            },
            |ran| match ran.unwrap().read {
                Some(ReadValue::UserProduct(view)) => Answer {
                    status: 200,
                    body: format!("{} {}", view.assigned, view.status.in_use),
                },
                other => panic!("{other:?}"),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        answered,
        Answered::Fresh(Answer {
            status: 200,
            body: "true 1".into()
        })
    );
    f.finish().await;
}
