//! The usage history: buckets of seats bought, peak and mean held, and refusals, written in the
//! transaction of every change and refusal, read as one point per step. Both stores; the
//! ledger's clock is moved by hand, so a month of history takes well under a second.

use allot_ledger::testing as common;

use allot_ledger::*;
use common::{Fixture, START, TestDb};
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

fn by_id(user: &User) -> UserRef {
    UserRef::Id(user.id)
}

fn pid(product: &Product) -> ProductRef {
    ProductRef::Id(product.id)
}

async fn usage(
    f: &Fixture,
    product: &Product,
    from: OffsetDateTime,
    to: OffsetDateTime,
    step: UsageStep,
) -> Vec<UsagePoint> {
    f.ledger
        .usage(f.tenant.id, product.id, from, to, step)
        .await
        .expect("usage")
}

/// `(total, in_use_max, in_use_avg rounded to 1/1000, denied)` of each point.
fn shape(points: &[UsagePoint]) -> Vec<(i64, i64, f64, i64)> {
    points
        .iter()
        .map(|p| {
            (
                p.total,
                p.in_use_max,
                (p.in_use_avg * 1000.0).round() / 1000.0,
                p.denied,
            )
        })
        .collect()
}

fn at(p: &UsagePoint) -> OffsetDateTime {
    p.at
}

on_both_stores! {
    async fn buckets_hold_peak_mean_and_carry_over_gaps(f: Fixture) {
        // 09:00 four seats; 09:15 ann takes one, 09:30 bob, 09:45 ann gives hers back.
        let crm = f.user_product("crm", 4).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        f.clock.advance(Duration::minutes(15));
        f.assign(&ann, &crm).await.unwrap();
        f.clock.advance(Duration::minutes(15));
        f.assign(&bob, &crm).await.unwrap();
        f.clock.advance(Duration::minutes(15));
        f.unassign(&ann, &crm).await.unwrap();
        f.clock.advance(Duration::minutes(135)); // now 12:00

        let hours = usage(&f, &crm, START, START + Duration::hours(3), UsageStep::Hour).await;
        assert_eq!(hours.iter().map(at).collect::<Vec<_>>(),
                   (0..3).map(|h| START + Duration::hours(h)).collect::<Vec<_>>());
        // 09:00-10:00: 0, 1, 2, 1 seats for 15 minutes each; then one seat, carried over.
        assert_eq!(shape(&hours), vec![(4, 2, 1.0, 0), (4, 1, 1.0, 0), (4, 1, 1.0, 0)]);

        // A range that starts and ends inside steps: the steps holding it, whole.
        let minutes = usage(&f, &crm, START + Duration::seconds(14 * 60 + 30),
                            START + Duration::seconds(16 * 60 + 10), UsageStep::Minute).await;
        assert_eq!(minutes.iter().map(at).collect::<Vec<_>>(),
                   (14..=16).map(|m| START + Duration::minutes(m)).collect::<Vec<_>>());
        assert_eq!(shape(&minutes), vec![(4, 0, 0.0, 0), (4, 1, 1.0, 0), (4, 1, 1.0, 0)]);

        // The day so far (midnight to noon): nothing before the product existed at 09:00.
        let midnight = START.replace_time(time::Time::MIDNIGHT);
        let days = usage(&f, &crm, midnight, midnight + Duration::days(2), UsageStep::Day).await;
        assert_eq!(days.len(), 1, "no point after now");
        // Held: ann 09:15-09:45, bob 09:30-12:00: 180 seat-minutes of 720 minutes.
        let expected = 180.0 / 720.0;
        assert!((days[0].in_use_avg - expected).abs() < 1e-9, "{}", days[0].in_use_avg);
        assert_eq!((days[0].total, days[0].in_use_max), (4, 2));
        // Unused: 4 seats for 3 hours less the seat-time held, in seconds.
        assert_eq!(days[0].unused_seat_seconds, 4 * 3 * 3600 - 180 * 60);

        // Before the product's first change: zeros; the hour of its creation holds it.
        let before = usage(&f, &crm, START - Duration::hours(2), START + Duration::minutes(1), UsageStep::Hour).await;
        assert_eq!(shape(&before), vec![(0, 0, 0.0, 0), (0, 0, 0.0, 0), (4, 2, 1.0, 0)]);

        // Seats bought later raise the total from then on.
        f.add_seats(NewSeats::plain(pid(&crm), 2)).await;
        f.clock.advance(Duration::minutes(30));
        let now = usage(&f, &crm, START + Duration::hours(3), START + Duration::hours(4), UsageStep::Hour).await;
        assert_eq!(shape(&now), vec![(6, 1, 1.0, 0)]);
        assert_eq!(now[0].unused_seat_seconds, 5 * 30 * 60);
    }

    async fn refusals_are_counted_though_the_refused_change_is_not(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let float = f.product(NewProduct { kind: ProductKind::Floating, ..NewProduct::user("SuperOffice", "float", 1) }).await;
        let (ann, bob, cid) = (f.user("ann").await, f.user("bob").await, f.user("cid").await);
        f.assign(&ann, &crm).await.unwrap();
        f.clock.advance(Duration::minutes(1));
        // Refused alone (its own transaction) ...
        assert!(matches!(f.assign(&bob, &crm).await, Err(LedgerError::NoSeatFree { .. })));
        // ... and inside a batch whose neighbour commits.
        let outcomes = f.ledger.apply(&f.ctx, &[
            Command::Assign { user: by_id(&cid), product: pid(&crm) },
            Command::CreateUser(NewUser::named("dan")),
        ]).await.unwrap();
        assert!(matches!(outcomes[0], Err(LedgerError::NoSeatFree { .. })));
        assert!(outcomes[1].is_ok());
        // A log-on refused for want of a floating seat.
        let logon = |u: &User| Command::LogOn { user: by_id(u), client: ClientKind::Windows, device: "pc".into(), product: Some(pid(&float)), lease_seconds: 600 };
        f.ok(logon(&ann)).await;
        assert!(matches!(f.err(logon(&bob)).await, LedgerError::NoSeatFree { .. }));
        // A refusal for another reason is not a denial.
        f.ok(Command::Retire { user: by_id(&cid) }).await;
        assert!(matches!(f.assign(&cid, &crm).await, Err(LedgerError::Retired(_))));

        let minutes = usage(&f, &crm, START, START + Duration::minutes(2), UsageStep::Minute).await;
        assert_eq!(shape(&minutes), vec![(1, 1, 1.0, 0), (1, 1, 1.0, 2)]);
        let day = usage(&f, &float, START, START + Duration::minutes(2), UsageStep::Day).await;
        assert_eq!(day.iter().map(|p| p.denied).sum::<i64>(), 1);
        // Nothing of the refused assignments happened.
        assert_eq!(f.counts(&crm).await, (1, 1, 0));
        let mut denials = f.ledger.pool_denials(f.tenant.id).await.unwrap();
        denials.sort();
        assert_eq!(denials, vec![(crm.id, 2), (float.id, 1)]);
    }

    async fn bad_ranges_are_refused_by_name(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let e = f.ledger.usage(f.tenant.id, crm.id, START, START, UsageStep::Hour).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "to", .. }), "{e:?}");
        let e = f.ledger.usage(f.tenant.id, crm.id, START, START - Duration::hours(1), UsageStep::Hour).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "to", .. }), "{e:?}");
        // A year of minutes is too many points; a week of them is not.
        let e = f.ledger.usage(f.tenant.id, crm.id, START - Duration::days(365), START, UsageStep::Minute).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "step", .. }), "{e:?}");
        assert_eq!(usage(&f, &crm, START - Duration::days(7), START, UsageStep::Minute).await.len(), 7 * 24 * 60);
        let e = f.ledger.usage(f.tenant.id, 999, START, START + Duration::hours(1), UsageStep::Hour).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownProduct(_)), "{e:?}");
    }

    async fn seats_leave_the_history_when_they_expire_not_when_next_touched(f: Fixture) {
        // 09:00: three seats of "term" that expire at 10:30 (ann holds one), one bought already
        // expired (it never counts); "old" has two seats and itself expires at 11:15.
        let term = f.user_product("term", 0).await;
        let lapse = START + Duration::minutes(90);
        f.add_seats(NewSeats { expires_at: Some(lapse), ..NewSeats::plain(pid(&term), 3) }).await;
        f.add_seats(NewSeats { expires_at: Some(START - Duration::hours(1)), ..NewSeats::plain(pid(&term), 1) }).await;
        let old = f.user_product("old", 2).await;
        f.ok(Command::EditProduct { product: pid(&old), patch: ProductPatch { expires_at: Some(Some(START + Duration::minutes(135))), ..Default::default() } }).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &term).await.unwrap();
        // Nothing happens in the tenant until 12:00, when the server's reaper runs its command.
        f.clock.advance(Duration::hours(3));
        f.ok(Command::ExpireSessions).await;

        let hours = usage(&f, &term, START, START + Duration::hours(3), UsageStep::Hour).await;
        // 10:30 the pool went from 3 seats (1 held) to none: by hand, the 10:00 hour holds
        // 3 seats for 30 minutes of which one held, 2 x 1800 unused seat-seconds.
        assert_eq!(shape(&hours), vec![(3, 1, 1.0, 0), (0, 1, 0.5, 0), (0, 0, 0.0, 0)]);
        assert_eq!(hours.iter().map(|p| p.unused_seat_seconds).collect::<Vec<_>>(), vec![2 * 3600, 2 * 1800, 0]);
        let minutes = usage(&f, &term, lapse - Duration::minutes(1), lapse + Duration::minutes(1), UsageStep::Minute).await;
        assert_eq!(shape(&minutes), vec![(3, 1, 1.0, 0), (0, 1, 0.0, 0)]);
        // The product's own expiry: two seats until 11:15.
        let old_hours = usage(&f, &old, START, START + Duration::hours(3), UsageStep::Hour).await;
        assert_eq!(old_hours.iter().map(|p| (p.total, p.unused_seat_seconds)).collect::<Vec<_>>(),
                   vec![(2, 2 * 3600), (2, 2 * 3600), (0, 2 * 900)]);

        // Giving back an expired seat changes nothing in the history (it had left already).
        f.unassign(&ann, &term).await.unwrap();
        // Extending the product brings its seats back from the edit on.
        f.clock.advance(Duration::minutes(30));
        f.ok(Command::EditProduct { product: pid(&old), patch: ProductPatch { expires_at: Some(None), ..Default::default() } }).await;
        f.clock.advance(Duration::minutes(30)); // 13:00
        let noon = usage(&f, &old, START + Duration::hours(3), START + Duration::hours(4), UsageStep::Hour).await;
        assert_eq!(noon.iter().map(|p| (p.total, p.unused_seat_seconds)).collect::<Vec<_>>(), vec![(2, 2 * 1800)]);
        let noon = usage(&f, &term, START + Duration::hours(3), START + Duration::hours(4), UsageStep::Hour).await;
        assert_eq!(shape(&noon), vec![(0, 0, 0.0, 0)]);
        // Moving the expiry into the past takes the seats out at the edit.
        f.ok(Command::EditProduct { product: pid(&old), patch: ProductPatch { expires_at: Some(Some(START)), ..Default::default() } }).await;
        f.clock.advance(Duration::minutes(10));
        let now = f.clock.now();
        let last = usage(&f, &old, now - Duration::minutes(11), now, UsageStep::Minute).await;
        assert_eq!((last[0].total, last.last().unwrap().total), (2, 0));
    }

    async fn unused_seats_cost_their_price_exactly(f: Fixture) {
        let price = |amount: &str, currency: &str| SeatPrice { amount: amount.parse().unwrap(), currency: currency.into() };
        // 09:00 three seats at 30.00 EUR per seat and 30 days; ann holds one from 09:20.
        let crm = f.product(NewProduct { seat_price_per_30_days: Some(price("30", "EUR")), ..NewProduct::user("SuperOffice", "crm", 3) }).await;
        assert_eq!(crm.seat_price_per_30_days, Some(price("30.0000", "EUR")));
        let ann = f.user("ann").await;
        f.clock.advance(Duration::minutes(20));
        f.assign(&ann, &crm).await.unwrap();
        f.clock.advance(Duration::minutes(100)); // now 11:00
        let hours = usage(&f, &crm, START, START + Duration::hours(2), UsageStep::Hour).await;
        // By hand: 09:00-10:00 3 x 3600 - 40 x 60 = 8400 unused seat-seconds; at 30.00 per
        // 2,592,000 seat-seconds that is 0.097222... -> 0.0972. 10:00-11:00: 2 x 3600 = 7200
        // -> 0.083333... -> 0.0833.
        assert_eq!(hours.iter().map(|p| p.unused_seat_seconds).collect::<Vec<_>>(), vec![8400, 7200]);
        let costs: Vec<String> = hours.iter().map(|p| p.unused_seat_cost.unwrap().to_string()).collect();
        assert_eq!(costs, ["0.0972", "0.0833"]);
        let product = f.ledger.product(f.tenant.id, &pid(&crm)).await.unwrap();
        // The total from the exact seconds: 15,600 x 30 / 2,592,000 = 0.180555... -> 0.1806
        // (the rounded points add up to 0.1805).
        assert_eq!(unused_seat_cost_total(&product, &hours).unwrap().to_string(), "0.1806");
        // Every product at once carries the same costs.
        let all = f.ledger.tenant_usage(f.tenant.id, START, START + Duration::hours(2), UsageStep::Hour).await.unwrap();
        assert_eq!(all[0].1, hours);

        // A larger price, set by an edit (audited, before and after): 1234.5678 JPY. 30 days
        // of two unused seats: exactly twice the price.
        f.ok(Command::EditProduct { product: pid(&crm), patch: ProductPatch { seat_price_per_30_days: Some(Some(price("1234.5678", "JPY"))), ..Default::default() } }).await;
        let audit = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        let edit = audit.iter().find(|e| e.action == "product.edit").expect("audited");
        assert_eq!(edit.detail["before"]["seat_price_per_30_days"]["amount"], "30.0000", "{}", edit.detail);
        assert_eq!(edit.detail["after"]["seat_price_per_30_days"]["amount"], "1234.5678", "{}", edit.detail);
        assert_eq!(edit.detail["after"]["seat_price_per_30_days"]["currency"], "JPY", "{}", edit.detail);
        f.clock.advance(Duration::days(31));
        let from = (START + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
        let days = usage(&f, &crm, from, from + Duration::days(30), UsageStep::Day).await;
        let product = f.ledger.product(f.tenant.id, &pid(&crm)).await.unwrap();
        assert_eq!(days.iter().map(|p| p.unused_seat_seconds).sum::<i64>(), 2 * 30 * 86_400);
        // Each day: 2 x 86,400 / 2,592,000 = 1/15 of the price, 82.304520 -> 82.3045; the
        // total is priced from the exact seconds, not from the rounded days (30 x 82.3045 =
        // 2469.1350).
        assert!(days.iter().all(|p| p.unused_seat_cost.unwrap().to_string() == "82.3045"), "{days:?}");
        assert_eq!(unused_seat_cost_total(&product, &days).unwrap().to_string(), "2469.1356");

        // Refused: a currency that is not three upper-case letters, a negative amount; the
        // price stays as it was.
        for bad in [price("1", "eur"), price("1", "EURO"), SeatPrice { amount: Amount::from_e4(-1), currency: "EUR".into() }] {
            let e = f.err(Command::EditProduct { product: pid(&crm), patch: ProductPatch { seat_price_per_30_days: Some(Some(bad)), ..Default::default() } }).await;
            assert!(matches!(e, LedgerError::Invalid { field, .. } if field.starts_with("seat_price_per_30_days.")), "{e:?}");
        }
        let e = f.err(Command::CreateProduct(NewProduct { seat_price_per_30_days: Some(price("1", "usd")), ..NewProduct::user("SuperOffice", "web", 1) })).await;
        assert!(matches!(e, LedgerError::Invalid { field: "seat_price_per_30_days.currency", .. }), "{e:?}");
        assert_eq!(f.ledger.product(f.tenant.id, &pid(&crm)).await.unwrap().seat_price_per_30_days, Some(price("1234.5678", "JPY")));

        // Cleared: no costs any more.
        f.ok(Command::EditProduct { product: pid(&crm), patch: ProductPatch { seat_price_per_30_days: Some(None), ..Default::default() } }).await;
        let product = f.ledger.product(f.tenant.id, &pid(&crm)).await.unwrap();
        assert_eq!(product.seat_price_per_30_days, None);
        let hours = usage(&f, &crm, START, START + Duration::hours(2), UsageStep::Hour).await;
        assert!(hours.iter().all(|p| p.unused_seat_cost.is_none()));
        assert_eq!(unused_seat_cost_total(&product, &hours), None);
    }

    async fn minute_buckets_past_their_retention_are_pruned(f: Fixture) {
        // A change every day for ten days (09:00 each day), then two quiet days.
        let crm = f.user_product("crm", 3).await;
        let ann = f.user("ann").await;
        for day in 0..10 {
            if day % 2 == 0 { f.assign(&ann, &crm).await.unwrap(); } else { f.unassign(&ann, &crm).await.unwrap(); }
            f.clock.advance(Duration::days(1));
        }
        f.clock.advance(Duration::days(2)); // now day 12, 09:00
        let day = |n: i64| START + Duration::days(n);
        let minutes_at = |f: &Fixture, n: i64| {
            let ledger = f.ledger.clone();
            let (tenant, product) = (f.tenant.id, crm.id);
            async move {
                ledger.usage(tenant, product, day(n) - Duration::minutes(1), day(n) + Duration::minutes(2), UsageStep::Minute).await.unwrap()
            }
        };
        let before_prune = minutes_at(&f, 3).await;
        assert_eq!(before_prune.iter().map(|p| p.in_use_max).collect::<Vec<_>>(), vec![1, 1, 0]);
        let hours_before = usage(&f, &crm, day(0), day(12), UsageStep::Hour).await;
        let days_before = usage(&f, &crm, day(0), day(12), UsageStep::Day).await;

        // Kept 7 days: buckets of days 0 to 4 (before day 5, 09:00) go, in batches of 2. The
        // creation of the product and the changes of days 0-4 (the creation shares day 0's minute): five minute buckets.
        let week = Duration::days(7);
        let mut deleted = Vec::new();
        loop {
            let n = f.ledger.prune_usage_minutes(week, 2).await.unwrap();
            deleted.push(n);
            if n < 2 { break; }
        }
        assert_eq!(deleted.iter().sum::<u64>(), 5, "{deleted:?}");
        assert!(deleted.iter().all(|n| *n <= 2));
        // Old minutes are gone: the minute points of day 3 carry only what came before them.
        let after_prune = minutes_at(&f, 3).await;
        assert_ne!(after_prune, before_prune);
        // Recent minutes, hours and days are untouched.
        assert_eq!(minutes_at(&f, 7).await.iter().map(|p| p.in_use_max).collect::<Vec<_>>(), vec![1, 1, 0]);
        assert_eq!(minutes_at(&f, 8).await.iter().map(|p| p.in_use_max).collect::<Vec<_>>(), vec![0, 1, 1]);
        assert_eq!(usage(&f, &crm, day(0), day(12), UsageStep::Hour).await, hours_before);
        assert_eq!(usage(&f, &crm, day(0), day(12), UsageStep::Day).await, days_before);

        // Days later with no change at all: every old minute bucket but the product's newest
        // goes, and that one still carries the counts into the minutes after it.
        f.clock.advance(Duration::days(20));
        let mut total = 0;
        while let n @ 1.. = f.ledger.prune_usage_minutes(week, 2).await.unwrap() { total += n; }
        assert_eq!(total, 4);
        let now = f.clock.now();
        let last = usage(&f, &crm, now - Duration::minutes(2), now, UsageStep::Minute).await;
        assert_eq!(last.iter().map(|p| (p.total, p.in_use_max)).collect::<Vec<_>>(), vec![(3, 0), (3, 0)]);
    }

    async fn a_month_of_history_is_one_small_read(f: Fixture) {
        // Every day for 30 days: ann holds a seat 09:00-17:00; on even days bob holds one
        // 12:00-13:00 as well.
        let crm = f.user_product("crm", 2).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        let started = std::time::Instant::now();
        for day in 0..30 {
            f.assign(&ann, &crm).await.unwrap();
            if day % 2 == 0 {
                f.clock.advance(Duration::hours(3));
                f.assign(&bob, &crm).await.unwrap();
                f.clock.advance(Duration::hours(1));
                f.unassign(&bob, &crm).await.unwrap();
                f.clock.advance(Duration::hours(4));
            } else {
                f.clock.advance(Duration::hours(8));
            }
            f.unassign(&ann, &crm).await.unwrap();
            f.clock.advance(Duration::hours(16));
        }
        eprintln!("a month of history written in {:?}", started.elapsed());
        let midnight = START.replace_time(time::Time::MIDNIGHT);
        let days = usage(&f, &crm, midnight, midnight + Duration::days(30), UsageStep::Day).await;
        assert_eq!(days.len(), 30);
        for (i, day) in days.iter().enumerate() {
            let (max, held_hours) = if i % 2 == 0 { (2, 9.0) } else { (1, 8.0) };
            assert_eq!((day.at, day.total, day.in_use_max), (midnight + Duration::days(i as i64), 2, max), "day {i}");
            assert!((day.in_use_avg - held_hours / 24.0).abs() < 1e-9, "day {i}: {}", day.in_use_avg);
            // Two seats all day, but on the first only from 09:00, when they were bought.
            let bought_hours = if i == 0 { 30.0 } else { 48.0 };
            assert_eq!(day.unused_seat_seconds, (bought_hours - held_hours) as i64 * 3600, "day {i}");
        }
        // The same month by the hour: each day's hours add up to its mean.
        let hours = usage(&f, &crm, midnight, midnight + Duration::days(30), UsageStep::Hour).await;
        assert_eq!(hours.len(), 30 * 24);
        for (i, day) in days.iter().enumerate() {
            let sum: f64 = hours[i * 24..(i + 1) * 24].iter().map(|h| h.in_use_avg).sum();
            assert!((sum / 24.0 - day.in_use_avg).abs() < 1e-9, "day {i}");
            assert_eq!(hours[i * 24 + 12].in_use_max, if i % 2 == 0 { 2 } else { 1 });
        }
    }
}

async fn sample(
    f: &Fixture,
    products: &[Product],
    samples: &mut Vec<(OffsetDateTime, usize, i64)>,
) {
    for (i, p) in products.iter().enumerate() {
        samples.push((f.clock.now(), i, f.status(p).await.in_use));
    }
}

/// Commands that change pools, at random, with the clock moving at random; after each, the
/// pool's counts are sampled. The history must then agree with those samples: the last point
/// with the pool, each hour's peak and time-weighted mean with what the samples give.
async fn history_agrees_with_the_pools(f: Fixture) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let crm = f.user_product("crm", 3).await;
    let plan_member = f.user_product("sales", 2).await;
    let plan = f
        .product(NewProduct {
            extra_flags: EXTRA_FLAG_USER_PLAN,
            plan_members: vec![pid(&plan_member)],
            ..NewProduct::user("SuperOffice", "plan", 2)
        })
        .await;
    let open = f
        .product(NewProduct {
            unrestricted: true,
            ..NewProduct::user("SuperOffice", "open", 1)
        })
        .await;
    let float = f
        .product(NewProduct {
            kind: ProductKind::Floating,
            ..NewProduct::user("SuperOffice", "float", 2)
        })
        .await;
    let products = [crm.clone(), plan_member, plan, open, float.clone()];
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(f.user(&format!("u{i}")).await);
    }
    // (time, product index, in_use) after every command.
    let mut samples: Vec<(OffsetDateTime, usize, i64)> = Vec::new();
    sample(&f, &products, &mut samples).await;
    let mut denied_expected = 0;
    for _ in 0..300 {
        f.clock
            .advance(Duration::seconds(rng.random_range(1..1800)));
        let user = users[rng.random_range(0..users.len())].clone();
        let product = &products[rng.random_range(0..4)];
        let command = match rng.random_range(0..10) {
            0..=2 => Command::Assign {
                user: by_id(&user),
                product: pid(product),
            },
            3..=4 => Command::Unassign {
                user: by_id(&user),
                product: pid(product),
            },
            5 => Command::LogOn {
                user: by_id(&user),
                client: ClientKind::Windows,
                device: "pc".into(),
                product: Some(pid(&float)),
                lease_seconds: 3600,
            },
            6 => Command::LogOff {
                users: vec![by_id(&user)],
                client: None,
                reason: EndReason::Logoff,
            },
            7 => Command::AddSeats(NewSeats::plain(pid(&crm), 1)),
            8 => Command::RemoveAllLicenses { user: by_id(&user) },
            _ => {
                // Retire, and bring back, so the user pool does not run dry.
                if user.id % 2 == 0 {
                    Command::Retire { user: by_id(&user) }
                } else {
                    Command::Unretire { user: by_id(&user) }
                }
            }
        };
        if let Err(e) = f.exec(command).await
            && matches!(
                e,
                LedgerError::NoSeatFree { .. } | LedgerError::QuotaExhausted { .. }
            )
        {
            denied_expected += 1;
        }
        sample(&f, &products, &mut samples).await;
    }
    let now = f.clock.now();
    let first_hour = START.replace_time(time::Time::from_hms(START.hour(), 0, 0).unwrap());
    let mut denied_seen = 0;
    for (i, product) in products.iter().enumerate() {
        let points = usage(
            &f,
            product,
            first_hour,
            now + Duration::seconds(1),
            UsageStep::Hour,
        )
        .await;
        let status = f.status(product).await;
        let last = points.last().unwrap();
        assert_eq!(last.total, status.total, "{}", product.name);
        denied_seen += points.iter().map(|p| p.denied).sum::<i64>();
        // The samples of this product, as steps of a function of time.
        let mine: Vec<(OffsetDateTime, i64)> = samples
            .iter()
            .filter(|(_, p, _)| *p == i)
            .map(|(t, _, n)| (*t, *n))
            .collect();
        for point in &points {
            let (start, end) = (point.at, (point.at + Duration::hours(1)).min(now));
            if end <= start {
                continue;
            }
            // The count in force at a moment: the last sample at or before it (0 before any).
            let in_force = |t: OffsetDateTime| {
                mine.iter()
                    .rev()
                    .find(|(s, _)| *s <= t)
                    .map_or(0, |(_, n)| *n)
            };
            let mut area = 0.0;
            let mut max = in_force(start);
            let mut cursor = start;
            for (t, n) in mine.iter().filter(|(t, _)| *t > start && *t < end) {
                area += in_force(cursor) as f64 * (*t - cursor).as_seconds_f64();
                cursor = *t;
                max = max.max(*n);
            }
            area += in_force(cursor) as f64 * (end - cursor).as_seconds_f64();
            let avg = area / (end - start).as_seconds_f64();
            assert_eq!(point.in_use_max, max, "{} at {}", product.name, point.at);
            assert!(
                (point.in_use_avg - avg).abs() < 1e-6,
                "{} at {}: {} != {avg}",
                product.name,
                point.at,
                point.in_use_avg
            );
        }
        assert_eq!(mine.last().unwrap().1, status.in_use);
    }
    assert!(denied_expected > 0, "the sequence should meet full pools");
    assert_eq!(denied_seen, denied_expected);
    f.finish().await;
}

#[tokio::test]
async fn history_agrees_with_the_pools_on_sqlite() {
    history_agrees_with_the_pools(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test]
async fn history_agrees_with_the_pools_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    history_agrees_with_the_pools(Fixture::new(db).await).await;
}
