//! Computers (the 2025 endpoints): `POST /api/Computers/{hid}/authorization` binds a computer to
//! a user (the ledger's `RegisterComputer`), and `GET /api/Computers/{offset}/{count}` pages
//! through them with a summary of the license activated on each. These endpoints answer in
//! their own shapes: `{"ResultCode": 0, "ErrorMessage": ""}` and `{"ErrorCode": -6, ...}`.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;

use super::wire::{self, Out};
use super::{Call, Fault, field, invalid, parse_id};
use crate::ledger::{Command, LedgerError, QueryError, Seat, SeatFilter, UserRef};

/// The Computers endpoints' code for "object not found".
const NOT_FOUND: i64 = -6;
/// Most computers one page answers.
const MAX_PAGE: usize = 1000;

fn object_not_found(what: &str) -> Fault {
    Fault::coded(
        StatusCode::BAD_REQUEST,
        NOT_FOUND,
        format!("Object \"{what}\" not found"),
    )
}

/// Binds the computer `hid` to the user `UserId` of the body. `ComputerName` and
/// `OperatingSystem` may come along (an allot extension); otherwise a known computer keeps its
/// own and a new one is named by its hardware id. Binding a computer to another user clears the
/// activations its previous user had on it.
pub async fn authorize(call: &Call<'_>, hid: &str) -> Result<Response, Fault> {
    let body = call.body("ComputerAuthorization")?;
    let Some(user_id) = field(body.given("UserId"))? else {
        return Err(match field(body.given("CompanyId"))? {
            Some(_) => invalid(
                "binding a computer to a company without a user is not supported; give UserId"
                    .into(),
            ),
            None => invalid("UserId is required".into()),
        });
    };
    let Some(uuid) = parse_id(&user_id) else {
        return Err(object_not_found(&user_id));
    };
    let user = match call
        .state
        .ledger
        .user(call.tenant, &UserRef::Uuid(uuid))
        .await
    {
        Ok(user) if !user.retired => user,
        Ok(_) | Err(QueryError::Ledger(_)) => return Err(object_not_found(&user_id)),
        Err(e) => return Err(e.into()),
    };
    let known = call
        .state
        .ledger
        .computers(call.tenant, None)
        .await?
        .into_iter()
        .find(|c| c.hardware_id == hid.trim());
    let name = field(body.given("ComputerName"))?
        .or_else(|| known.as_ref().map(|c| c.name.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| hid.trim().to_owned());
    let os = field(body.given("OperatingSystem"))?
        .or_else(|| known.as_ref().map(|c| c.operating_system.clone()))
        .unwrap_or_default();
    match call
        .execute(Command::RegisterComputer {
            hardware_id: hid.to_owned(),
            name,
            operating_system: os,
            user: Some(UserRef::Id(user.id)),
        })
        .await
    {
        Ok(_) => {}
        Err(LedgerError::UnknownUser(_)) => return Err(object_not_found(&user_id)),
        Err(e) => return Err(e.into()),
    }
    call.ok(
        &Out::Obj {
            name: "AuthorizationResult",
            fields: vec![
                ("ResultCode", Out::Int(0)),
                ("ErrorMessage", Out::Str(String::new())),
            ],
        },
        "AuthorizationResult",
    )
}

/// `GET /api/Computers/{offset}/{count}`: `Count` is how many computers there are in all.
pub async fn page(call: &Call<'_>, offset: &str, count: &str) -> Result<Response, Fault> {
    let parse = |name: &str, text: &str| {
        text.trim().parse::<usize>().map_err(|_| {
            invalid(format!(
                "{name} must be a non-negative integer, not '{text}'"
            ))
        })
    };
    let offset = parse("offset", offset)?;
    let count = parse("count", count)?.min(MAX_PAGE);
    let computers = call.state.ledger.computers(call.tenant, None).await?;
    let users = super::licenses::all_users(call).await?;
    let companies = super::users::company_names(call).await?;
    let activated = super::licenses::all_seats(
        call,
        SeatFilter {
            activated: Some(true),
            ..SeatFilter::default()
        },
    )
    .await?;
    let products: HashMap<_, _> = call
        .state
        .ledger
        .products(call.tenant)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut by_hid: HashMap<&str, &Seat> = HashMap::new();
    for seat in &activated {
        if let Some(a) = &seat.activation {
            by_hid.entry(a.hardware_id.as_str()).or_insert(seat);
        }
    }
    let mut items = Vec::new();
    for computer in computers.iter().skip(offset).take(count) {
        let user = computer.user.and_then(|u| users.get(&u));
        let company = user.and_then(|u| u.company).and_then(|c| companies.get(&c));
        let license = match by_hid.get(computer.hardware_id.as_str()) {
            Some(seat) => {
                let product = products.get(&seat.product);
                let expires = match (seat.expires_at, product.and_then(|p| p.expires_at)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Out::Obj {
                    name: "ComputerLicense",
                    fields: vec![
                        ("Granted", Out::Bool(true)),
                        (
                            "IsTrial",
                            Out::Bool(seat.trial || product.is_some_and(|p| p.trial)),
                        ),
                        (
                            "DisplayExpiresDate",
                            Out::Str(
                                expires
                                    .map(wire::iso_local)
                                    .unwrap_or_else(|| super::licenses::NEVER_EXPIRES.into()),
                            ),
                        ),
                    ],
                }
            }
            None => Out::Obj {
                name: "ComputerLicense",
                fields: vec![
                    ("Granted", Out::Bool(false)),
                    ("IsTrial", Out::Bool(false)),
                    ("DisplayExpiresDate", Out::Null),
                ],
            },
        };
        items.push(Out::Obj {
            name: "Computer",
            fields: vec![
                ("ComputerHID", Out::Str(computer.hardware_id.clone())),
                ("ComputerName", Out::Str(computer.name.clone())),
                (
                    "OperatingSystem",
                    Out::Str(computer.operating_system.clone()),
                ),
                ("CompanyName", Out::opt_str(company.map(String::as_str))),
                ("UserEmail", Out::opt_str(user.map(|u| u.login.as_str()))),
                (
                    "UserID",
                    Out::opt_str(user.map(|u| u.uuid.to_string()).as_deref()),
                ),
                ("License", license),
            ],
        });
    }
    call.ok(
        &Out::Obj {
            name: "ComputersResult",
            fields: vec![
                ("Count", Out::Int(computers.len() as i64)),
                ("Message", Out::Str("Success".into())),
                ("StatusCode", Out::Int(200)),
                (
                    "Computers",
                    Out::List {
                        item: "Computer",
                        items,
                    },
                ),
            ],
        },
        "ComputersResult",
    )
}
