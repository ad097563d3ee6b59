//! License rules that need no store: validation, pool selection, counting, lease tokens.
//! The store applies them inside its transactions; keeping them here keeps them testable.

use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::model::{CompanyId, LicenseMode, PoolMode, Product, ProductId, ProductKind, UserId};

/// Longest name, login or description accepted.
pub const MAX_TEXT: usize = 400;
/// Most seats one command may add.
pub const MAX_SEATS_PER_CALL: i64 = 100_000;
/// Shortest and longest session lease.
pub const MIN_LEASE_SECONDS: i64 = 1;
pub const MAX_LEASE_SECONDS: i64 = 7 * 24 * 3600;

/// Case-insensitive key under which names are unique ("SuperOffice" == "SUPEROFFICE").
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A name that identifies something: trimmed, non-empty, bounded, no control characters.
pub fn validate_name(field: &'static str, value: &str) -> Result<String, LedgerError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(LedgerError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    validate_text(field, trimmed)?;
    Ok(trimmed.to_owned())
}

/// Free text: bounded, no control characters other than tab and newline.
pub fn validate_text(field: &'static str, value: &str) -> Result<(), LedgerError> {
    if value.chars().count() > MAX_TEXT {
        return Err(LedgerError::Invalid {
            field,
            reason: format!("longer than {MAX_TEXT} characters"),
        });
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(LedgerError::Invalid {
            field,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

/// The highest seat price accepted: a billion units of any currency per seat and 30 days.
pub const MAX_SEAT_PRICE_E4: i128 = 1_000_000_000 * 10_000;

/// Seconds in the period a seat price is for: 30 days of 86,400 seconds.
pub const SEAT_PRICE_PERIOD_SECONDS: i128 = 30 * 86_400;

/// A seat price: an amount from zero to [`MAX_SEAT_PRICE_E4`], and an ISO 4217 currency code
/// (three upper-case ASCII letters; the code's form is checked, not the list of codes).
pub fn validate_seat_price(price: &crate::model::SeatPrice) -> Result<(), LedgerError> {
    if price.amount.e4 < 0 || price.amount.e4 > MAX_SEAT_PRICE_E4 {
        return Err(LedgerError::Invalid {
            field: "seat_price_per_30_days.amount",
            reason: format!(
                "{} is outside 0 to {}",
                price.amount,
                crate::model::Amount::from_e4(MAX_SEAT_PRICE_E4)
            ),
        });
    }
    if price.currency.len() != 3 || !price.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(LedgerError::Invalid {
            field: "seat_price_per_30_days.currency",
            reason: format!(
                "{:?} is not an ISO 4217 code (three upper-case letters, e.g. EUR)",
                price.currency
            ),
        });
    }
    Ok(())
}

/// What `seat_seconds` of unused seat time cost at `price` (per seat and 30 days), in the
/// price's currency: `seat_seconds * price / 2,592,000`, computed exactly in integers of
/// 1/10,000 of the unit and rounded once, half away from zero (half up), to 1/10,000. A usage
/// answer prices each point this way, and its total from the sum of the points' seconds.
pub fn unused_seat_cost(seat_seconds: i64, price: crate::model::Amount) -> crate::model::Amount {
    let exact = seat_seconds as i128 * price.e4;
    let (q, r) = (
        exact / SEAT_PRICE_PERIOD_SECONDS,
        exact % SEAT_PRICE_PERIOD_SECONDS,
    );
    let rounded = if r.abs() * 2 >= SEAT_PRICE_PERIOD_SECONDS {
        q + exact.signum()
    } else {
        q
    };
    crate::model::Amount::from_e4(rounded)
}

pub fn validate_seat_count(count: i64, allow_zero: bool) -> Result<(), LedgerError> {
    let min = if allow_zero { 0 } else { 1 };
    if count < min || count > MAX_SEATS_PER_CALL {
        return Err(LedgerError::Invalid {
            field: "count",
            reason: format!("must be between {min} and {MAX_SEATS_PER_CALL}"),
        });
    }
    Ok(())
}

/// How stale a seat's `last_used_at` may get before a use writes it again: uses within the
/// hour cost no write, and idle thresholds are counted in days, so an hour is no loss.
pub const USE_GRANULARITY_MICROS: i64 = 3_600 * 1_000_000;

pub const MAX_IDLE_DAYS: i64 = 3650;

pub fn validate_idle_days(days: i64) -> Result<(), LedgerError> {
    if !(1..=MAX_IDLE_DAYS).contains(&days) {
        return Err(LedgerError::Invalid {
            field: "idle_days",
            reason: format!("must be between 1 and {MAX_IDLE_DAYS}"),
        });
    }
    Ok(())
}

pub const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

pub fn validate_lease(seconds: i64) -> Result<(), LedgerError> {
    if !(MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&seconds) {
        return Err(LedgerError::Invalid {
            field: "lease_seconds",
            reason: format!("must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}"),
        });
    }
    Ok(())
}

/// Where a user takes seats from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Global,
    /// The company's own seats, plus tenant-wide seats within the company's quota.
    Company(CompanyId),
}

/// A user follows its company's pool only in `company` mode under a company-pool company;
/// manual and automatic users (and everyone under a global or custom company) use the
/// tenant-wide pool.
pub fn effective_pool(mode: LicenseMode, company: Option<(CompanyId, PoolMode)>) -> Pool {
    match (mode, company) {
        (LicenseMode::Company, Some((id, PoolMode::Company))) => Pool::Company(id),
        _ => Pool::Global,
    }
}

/// Revoke clears the activation; it also clears the holder for users who take seats
/// automatically (automatic mode, or company mode under a global-pool company): their agent
/// would simply take a seat again. Manual and company-pool users keep the seat (msp360.md §1.5).
pub fn revoke_clears_holder(mode: LicenseMode, company_mode: Option<PoolMode>) -> bool {
    match mode {
        LicenseMode::Automatic => true,
        LicenseMode::Manual => false,
        LicenseMode::Company => matches!(company_mode, Some(PoolMode::Global) | None),
    }
}

/// The login a deleted user keeps: `<login> (deleted <uuid>)`, cut to fit [`MAX_TEXT`]. The
/// user's row stays (the audit trail points at it), so its own login must make way for a new
/// user of the same name; the UUID keeps the renamed login unique. A login already renamed
/// stays as it is.
pub fn deleted_login(login: &str, uuid: uuid::Uuid) -> String {
    let suffix = format!(" (deleted {uuid})");
    if login.ends_with(&suffix) {
        return login.to_owned();
    }
    let keep = MAX_TEXT.saturating_sub(suffix.chars().count());
    login.chars().take(keep).collect::<String>() + &suffix
}

/// Free = Total - InUse, never negative (unrestricted products may be over-assigned).
pub fn free_seats(total: i64, in_use: i64) -> i64 {
    (total - in_use).max(0)
}

pub fn is_expired(expires_at: Option<i64>, now: i64) -> bool {
    matches!(expires_at, Some(at) if at <= now)
}

/// A fresh lease (fencing) token: 32 random bytes, hex.
pub fn new_lease_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Lease tokens are stored only as their SHA-256.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of two token hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ledger stores times as microseconds since the Unix epoch.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Orders a plan's members so that a member whose prerequisite is also in the plan comes after
/// it. `prereq_of` gives each member's prerequisite. Cycles cannot occur (prerequisite chains
/// are kept acyclic), but a malformed input still terminates: leftovers keep their order.
pub fn prerequisites_first(members: &[i64], prereq_of: impl Fn(i64) -> Option<i64>) -> Vec<i64> {
    let mut ordered: Vec<i64> = Vec::with_capacity(members.len());
    let mut pending: Vec<i64> = members.to_vec();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|&m| {
            let ready = match prereq_of(m) {
                Some(p) if members.contains(&p) => ordered.contains(&p),
                _ => true,
            };
            if ready {
                ordered.push(m);
            }
            !ready
        });
        if pending.len() == before {
            ordered.append(&mut pending);
        }
    }
    ordered
}

/// The one "can this user be assigned this product" rule, used by the assign command and by the
/// user view's `can_assign` alike.
///
/// Answers the products assigning `product` gives the user, in the order they are granted: the
/// product itself, then (for a user plan) its user-kind, unexpired members, prerequisites first.
/// `Ok(None)`: there is nothing to assign (a site product is everyone's already). Refusals, in
/// this order: a floating product (`WrongKind`), a retired user, an expired product, and any
/// product of the answer whose prerequisite the user neither holds nor gets earlier in the same
/// assignment.
///
/// `known` holds the plan's members (and may hold other products, used for names); `holds(id)`
/// says whether the user holds a product now. Seats are not decided here: each product of the
/// answer that the user does not hold yet needs a free seat in the user's pool, or to be
/// unrestricted, which the command takes by conditional update and the view counts.
pub fn assignment(
    product: &Product,
    known: &[Product],
    user: UserId,
    retired: bool,
    now: i64,
    holds: impl Fn(ProductId) -> bool,
) -> Result<Option<Vec<ProductId>>, LedgerError> {
    match product.kind {
        ProductKind::Site => return Ok(None),
        ProductKind::Floating => {
            return Err(LedgerError::WrongKind {
                kind: ProductKind::Floating,
                action: "assigned (its seats go to sessions)",
            });
        }
        ProductKind::User => {}
    }
    if retired {
        return Err(LedgerError::Retired(user));
    }
    let expired = |p: &Product| is_expired(p.expires_at.map(to_micros), now);
    if expired(product) {
        return Err(LedgerError::ProductExpired {
            product: product.id,
            name: product.full_name(),
        });
    }
    let find = |id: ProductId| std::iter::once(product).chain(known).find(|p| p.id == id);
    let mut order = vec![product];
    if product.is_user_plan() {
        let members = prerequisites_first(&product.plan_members, |m| {
            find(m).and_then(|p| p.prerequisite)
        });
        for member in members {
            if let Some(p) = find(member)
                && p.kind == ProductKind::User
                && !expired(p)
                && !order.iter().any(|o| o.id == member)
            {
                order.push(p);
            }
        }
    }
    for (i, p) in order.iter().enumerate() {
        if let Some(required) = p.prerequisite
            && !holds(required)
            && !order[..i].iter().any(|o| o.id == required)
        {
            return Err(LedgerError::PrerequisiteMissing {
                product: p.id,
                name: p.full_name(),
                prerequisite: required,
                prerequisite_name: find(required)
                    .map(Product::full_name)
                    .unwrap_or_else(|| format!("#{required}")),
            });
        }
    }
    Ok(Some(order.iter().map(|p| p.id).collect()))
}

/// A page of a listing when the caller names no size.
pub const DEFAULT_PAGE: i64 = 100;
/// The largest page any listing returns, whatever the caller asks for.
pub const MAX_PAGE: i64 = 1000;

/// The page size a listing uses for a requested `limit`: every adapter and the store agree on it,
/// so an adapter can tell a full page (there may be more) from the last one.
pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_clean() {
        assert_eq!(validate_name("name", "  web ").unwrap(), "web");
        assert!(validate_name("name", "   ").is_err());
        assert!(validate_name("name", "a\u{0}b").is_err());
        assert!(validate_name("name", &"x".repeat(MAX_TEXT + 1)).is_err());
        assert_eq!(name_key(" SuperOffice "), "superoffice");
    }

    #[test]
    fn seat_counts_and_leases_are_bounded() {
        assert!(validate_seat_count(0, false).is_err());
        assert!(validate_seat_count(0, true).is_ok());
        assert!(validate_seat_count(-1, true).is_err());
        assert!(validate_seat_count(MAX_SEATS_PER_CALL + 1, true).is_err());
        assert!(validate_lease(0).is_err());
        assert!(validate_lease(60).is_ok());
        assert!(validate_lease(MAX_LEASE_SECONDS + 1).is_err());
    }

    #[test]
    fn only_company_mode_users_of_company_pools_use_the_company_pool() {
        use LicenseMode::*;
        assert_eq!(
            effective_pool(Manual, Some((3, PoolMode::Company))),
            Pool::Global
        );
        assert_eq!(
            effective_pool(Automatic, Some((3, PoolMode::Company))),
            Pool::Global
        );
        assert_eq!(
            effective_pool(Company, Some((3, PoolMode::Company))),
            Pool::Company(3)
        );
        assert_eq!(
            effective_pool(Company, Some((3, PoolMode::Global))),
            Pool::Global
        );
        assert_eq!(
            effective_pool(Company, Some((3, PoolMode::Custom))),
            Pool::Global
        );
        assert_eq!(effective_pool(Company, None), Pool::Global);
    }

    #[test]
    fn revoke_clears_the_holder_only_for_automatic_takers() {
        use LicenseMode::*;
        assert!(revoke_clears_holder(Automatic, None));
        assert!(revoke_clears_holder(Automatic, Some(PoolMode::Company)));
        assert!(!revoke_clears_holder(Manual, Some(PoolMode::Global)));
        assert!(revoke_clears_holder(Company, Some(PoolMode::Global)));
        assert!(!revoke_clears_holder(Company, Some(PoolMode::Company)));
        assert!(!revoke_clears_holder(Company, Some(PoolMode::Custom)));
    }

    #[test]
    fn a_deleted_login_is_unique_and_bounded() {
        let id = uuid::Uuid::nil();
        assert_eq!(deleted_login("ann", id), format!("ann (deleted {id})"));
        let long = deleted_login(&"x".repeat(MAX_TEXT), id);
        assert_eq!(long.chars().count(), MAX_TEXT);
        assert!(long.ends_with(&format!("(deleted {id})")));
        assert!(validate_name("login", &long).is_ok());
        assert_eq!(deleted_login(&long, id), long);
    }

    #[test]
    fn free_never_goes_negative() {
        assert_eq!(free_seats(10, 3), 7);
        assert_eq!(free_seats(1, 5), 0);
    }

    #[test]
    fn expiry_is_inclusive_of_the_instant() {
        assert!(!is_expired(None, 10));
        assert!(is_expired(Some(10), 10));
        assert!(!is_expired(Some(11), 10));
    }

    #[test]
    fn lease_tokens_are_random_and_hashed() {
        let a = new_lease_token();
        let b = new_lease_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(hashes_match(&hash_token(&a), &hash_token(&a)));
        assert!(!hashes_match(&hash_token(&a), &hash_token(&b)));
        assert!(!hashes_match("ab", "abc"));
    }

    #[test]
    fn amounts_parse_exactly_and_print_with_four_places() {
        use crate::model::Amount;
        let parse = |s: &str| s.parse::<Amount>().map(|a| a.e4);
        assert_eq!(parse("12"), Ok(120_000));
        assert_eq!(parse("12.5"), Ok(125_000));
        assert_eq!(parse("0.0001"), Ok(1));
        assert_eq!(parse("0.1"), Ok(1_000));
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1.23456", "1,5", " 1", "0x10", "1.2.3",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Amount::from_e4(125_000).to_string(), "12.5000");
        assert_eq!(Amount::from_e4(1).to_string(), "0.0001");
        assert_eq!(Amount::from_e4(0).to_string(), "0.0000");
    }

    #[test]
    fn unused_seat_cost_is_exact_and_rounds_half_up() {
        use crate::model::Amount;
        // 30 days of one seat at 30.00: 30.00.
        assert_eq!(
            unused_seat_cost(2_592_000, Amount::from_e4(300_000)).e4,
            300_000
        );
        // One hour at 30.00 a 30 days: 30 / 720 = 0.041666... -> 0.0417.
        assert_eq!(unused_seat_cost(3_600, Amount::from_e4(300_000)).e4, 417);
        // Exactly half a unit of 1/10,000 rounds up: 1,296,000 s at 0.0001 = 0.00005.
        assert_eq!(unused_seat_cost(1_296_000, Amount::from_e4(1)).e4, 1);
        assert_eq!(unused_seat_cost(1_295_999, Amount::from_e4(1)).e4, 0);
        assert_eq!(unused_seat_cost(0, Amount::from_e4(300_000)).e4, 0);
        // No overflow at the largest price over a century of a million seats.
        let big = unused_seat_cost(
            1_000_000 * 100 * 365 * 86_400,
            Amount::from_e4(MAX_SEAT_PRICE_E4),
        );
        assert_eq!(
            big.e4,
            (1_000_000i128 * 100 * 365 * MAX_SEAT_PRICE_E4 + 15) / 30
        );
    }

    #[test]
    fn micros_round_trip() {
        let t = time::macros::datetime!(2026-11-23 04:00:00.123456 UTC);
        assert_eq!(from_micros(to_micros(t)), t);
    }

    fn product(id: ProductId, name: &str) -> Product {
        Product {
            id,
            owner: "SuperOffice".into(),
            name: name.into(),
            description: String::new(),
            tooltip: String::new(),
            kind: ProductKind::User,
            unrestricted: false,
            hidden: false,
            sort_order: 0,
            extra_flags: 0,
            plan_members: Vec::new(),
            prerequisite: None,
            expires_at: None,
            trial: false,
            seat_price_per_30_days: None,
        }
    }

    #[test]
    fn assignment_names_what_a_plan_gives_and_refuses_in_order() {
        let now = 1_000;
        let user = product(1, "user");
        let web = Product {
            prerequisite: Some(1),
            ..product(2, "web")
        };
        let old = Product {
            expires_at: Some(from_micros(now)),
            ..product(3, "old")
        };
        let plan = Product {
            extra_flags: crate::model::EXTRA_FLAG_USER_PLAN,
            plan_members: vec![2, 3, 1],
            ..product(4, "plan")
        };
        let all = [user.clone(), web.clone(), old.clone(), plan.clone()];
        let none = |_| false;
        // The plan, then its live members with the prerequisite first; the expired one is skipped.
        assert_eq!(
            assignment(&plan, &all, 7, false, now, none),
            Ok(Some(vec![4, 1, 2]))
        );
        // A member's prerequisite neither held nor in the plan refuses the whole plan.
        let web_only = Product {
            plan_members: vec![2],
            ..plan.clone()
        };
        assert_eq!(
            assignment(&web_only, &all, 7, false, now, none)
                .unwrap_err()
                .to_string(),
            "SuperOffice/web requires SuperOffice/user first"
        );
        assert_eq!(
            assignment(&web_only, &all, 7, false, now, |p| p == 1),
            Ok(Some(vec![4, 2]))
        );
        assert_eq!(
            assignment(&old, &all, 7, false, now, none),
            Err(LedgerError::ProductExpired {
                product: 3,
                name: "SuperOffice/old".into()
            })
        );
        assert_eq!(
            assignment(&user, &all, 7, true, now, none),
            Err(LedgerError::Retired(7))
        );
        let site = Product {
            kind: ProductKind::Site,
            ..product(5, "site")
        };
        assert_eq!(assignment(&site, &all, 7, true, now, none), Ok(None));
        let float = Product {
            kind: ProductKind::Floating,
            ..product(6, "float")
        };
        assert!(matches!(
            assignment(&float, &all, 7, false, now, none),
            Err(LedgerError::WrongKind { .. })
        ));
    }

    #[test]
    fn plan_members_come_after_their_prerequisites() {
        // web (2) and travel (4) need user (1) and windows (3) respectively; windows needs user.
        let prereq = |m| match m {
            2 => Some(1),
            3 => Some(1),
            4 => Some(3),
            _ => None,
        };
        let order = prerequisites_first(&[4, 2, 3, 1, 9], prereq);
        let pos = |x| order.iter().position(|&m| m == x).unwrap();
        assert_eq!(order.len(), 5);
        assert!(pos(1) < pos(2) && pos(1) < pos(3) && pos(3) < pos(4));
    }
}
