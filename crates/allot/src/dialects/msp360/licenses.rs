//! Licenses: the seats of per-user products. `GET /api/Licenses[?isAvailable=]`,
//! `GET /api/Licenses/{id}`, and `POST /api/Licenses/Grant|Release|Revoke` with a
//! `LicenseOperation {LicenseID, UserID}` body.

use std::collections::HashMap;

use axum::response::Response;

use super::wire::Out;
use super::{Call, Fault, field, invalid, ok_empty, parse_id};
use allot_ledger::{
    Command, Product, ProductId, ProductKind, ProductRef, Seat, SeatFilter, User, UserId, UserRef,
};

/// What `DateExpired` says of a license that never expires (.NET's `DateTime.MaxValue` to the
/// second): clients cast it to a non-nullable `DateTime`, so it is never null.
pub const NEVER_EXPIRES: &str = "9999-12-31T23:59:59";

/// The XML element of one license.
const LICENSE: &str = "LicensesModels";

/// The eleven documented fields, in the documented order.
fn license_out(seat: &Seat, product: Option<&Product>, holder: Option<&User>) -> Out {
    let activation = seat.activation.as_ref();
    let expires = seat.effective_expiry(product);
    let license_type = product
        .map(|p| {
            if p.description.trim().is_empty() {
                p.name.clone()
            } else {
                p.description.clone()
            }
        })
        .unwrap_or_default();
    Out::Obj {
        name: LICENSE,
        fields: vec![
            ("ID", Out::Str(seat.id.to_string())),
            ("Number", Out::Int(seat.number)),
            (
                "ComputerName",
                Out::opt_str(activation.map(|a| a.computer_name.as_str())),
            ),
            (
                "OperatingSystem",
                Out::opt_str(activation.map(|a| a.operating_system.as_str())),
            ),
            ("IsTrial", Out::Bool(seat.is_trial(product))),
            ("IsTaken", Out::Bool(activation.is_some())),
            ("LicenseType", Out::Str(license_type)),
            (
                "DateExpired",
                Out::Str(
                    expires
                        .map(super::wire::iso_local)
                        .unwrap_or_else(|| NEVER_EXPIRES.to_owned()),
                ),
            ),
            ("Transaction", Out::opt_str(seat.transaction_id.as_deref())),
            ("User", Out::opt_str(holder.map(|u| u.login.as_str()))),
            (
                "UserID",
                Out::opt_str(holder.map(|u| u.uuid.to_string()).as_deref()),
            ),
        ],
    }
}

/// Every user of the tenant by id (retired ones too: a license names whoever holds it).
pub(super) async fn all_users(call: &Call<'_>) -> Result<HashMap<UserId, User>, Fault> {
    let mut users = HashMap::new();
    let mut after = None;
    loop {
        let page = call
            .state
            .ledger
            .users(call.tenant, after, Some(1000))
            .await?;
        let Some(last) = page.last().map(|u| u.id) else {
            break;
        };
        let full = page.len() == 1000;
        users.extend(page.into_iter().map(|u| (u.id, u)));
        if !full {
            break;
        }
        after = Some(last);
    }
    Ok(users)
}

/// Every seat matching `filter`, page by page.
pub(super) async fn all_seats(call: &Call<'_>, mut filter: SeatFilter) -> Result<Vec<Seat>, Fault> {
    let mut seats = Vec::new();
    filter.limit = Some(1000);
    loop {
        let page = call.state.ledger.seats(call.tenant, &filter).await?;
        let full = page.len() == 1000;
        filter.after_number = page.last().map(|s| s.number).or(filter.after_number);
        seats.extend(page);
        if !full {
            break;
        }
    }
    Ok(seats)
}

async fn products(call: &Call<'_>) -> Result<HashMap<ProductId, Product>, Fault> {
    Ok(call
        .state
        .ledger
        .products(call.tenant)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect())
}

/// `GET /api/Licenses`: every license, or with `isAvailable=true` (any casing) only those that
/// can be granted (free and unexpired). Other values and unknown query keys are ignored.
pub async fn list(call: &Call<'_>) -> Result<Response, Fault> {
    let available = call
        .req
        .query("isAvailable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let products = products(call).await?;
    let users = all_users(call).await?;
    let filter = SeatFilter {
        available: available.then_some(true),
        ..SeatFilter::default()
    };
    let items = all_seats(call, filter)
        .await?
        .iter()
        .filter_map(|seat| {
            let product = products.get(&seat.product)?;
            // Floating and site products have no per-computer licenses.
            (product.kind == ProductKind::User)
                .then(|| license_out(seat, Some(product), seat.holder.and_then(|h| users.get(&h))))
        })
        .collect();
    call.ok(
        &Out::List {
            item: LICENSE,
            items,
        },
        LICENSE,
    )
}

/// `GET /api/Licenses/{id}`: the license, or 200 `null` when there is none by that id.
pub async fn get(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    let Some(id) = parse_id(id) else {
        return call.ok(&Out::Null, LICENSE);
    };
    let seat = match call.state.ledger.seat(call.tenant, id).await {
        Ok(seat) => seat,
        Err(e) if !e.is_store_failure() => return call.ok(&Out::Null, LICENSE),
        Err(e) => return Err(e.into()),
    };
    let product = call
        .state
        .ledger
        .product(call.tenant, &ProductRef::Id(seat.product))
        .await?;
    if product.kind != ProductKind::User {
        return call.ok(&Out::Null, LICENSE);
    }
    let holder = match seat.holder {
        Some(h) => Some(call.state.ledger.user(call.tenant, &UserRef::Id(h)).await?),
        None => None,
    };
    call.ok(
        &license_out(&seat, Some(&product), holder.as_ref()),
        LICENSE,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Grant,
    Release,
    Revoke,
}

/// `POST /api/Licenses/Grant|Release|Revoke`: 200 with no body, or a 4xx saying what is wrong.
/// Release and Revoke of a license nobody holds succeed without changing anything.
pub async fn operate(call: &Call<'_>, op: Op) -> Result<Response, Fault> {
    let body = call.body("LicenseOperation")?;
    let license =
        field(body.given("LicenseID"))?.ok_or_else(|| invalid("LicenseID is required".into()))?;
    let seat = parse_id(&license).ok_or_else(|| {
        Fault::bad(format!(
            "License '{license}' not found: LicenseID is not a license ID."
        ))
    })?;
    let user = match field(body.given("UserID"))? {
        Some(text) => Some(UserRef::Uuid(parse_id(&text).ok_or_else(|| {
            Fault::bad(format!("User '{text}' not found: UserID is not a user ID."))
        })?)),
        None => None,
    };
    let command = match op {
        Op::Grant => Command::GrantSeat {
            seat,
            user: user.ok_or_else(|| invalid("UserID is required".into()))?,
        },
        Op::Release => Command::ReleaseSeat { seat, user },
        Op::Revoke => Command::RevokeSeat { seat, user },
    };
    call.execute(command).await?;
    ok_empty()
}
