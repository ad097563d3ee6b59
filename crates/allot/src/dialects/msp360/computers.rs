//! Computers (the 2025 endpoints): `POST /api/Computers/{hid}/authorization` binds a computer to
//! a user (the ledger's `RegisterComputer`); `GET /api/Computers/{offset}/{count}` pages through
//! them and `GET /api/Computers/{hid}` answers one, with a summary of the license activated on
//! each. These endpoints answer in
//! their own shapes: `{"ResultCode": 0, "ErrorMessage": ""}` and `{"ErrorCode": -6, ...}`.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;

use super::wire::{self, Out};
use super::{Call, Fault, field, invalid, parse_id};
use allot_ledger::{Command, Computer, LedgerError, Seat, SeatFilter, UserRef};

/// The Computers endpoints' code for "object not found".
const NOT_FOUND: i64 = -6;
/// Most computers one page answers.
const MAX_PAGE: usize = allot_ledger::rules::MAX_PAGE as usize;

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
        Ok(_) => return Err(object_not_found(&user_id)),
        Err(e) if !e.is_store_failure() => return Err(object_not_found(&user_id)),
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

/// What describing computers needs: users, company names, products and activated seats.
struct Inventory {
    users: HashMap<allot_ledger::UserId, allot_ledger::User>,
    companies: HashMap<allot_ledger::CompanyId, String>,
    products: HashMap<allot_ledger::ProductId, allot_ledger::Product>,
    activated: Vec<Seat>,
}

impl Inventory {
    async fn load(call: &Call<'_>) -> Result<Inventory, Fault> {
        Ok(Inventory {
            users: super::licenses::all_users(call).await?,
            companies: super::users::company_names(call).await?,
            products: call
                .state
                .ledger
                .products(call.tenant)
                .await?
                .into_iter()
                .map(|p| (p.id, p))
                .collect(),
            activated: super::licenses::all_seats(
                call,
                SeatFilter {
                    activated: Some(true),
                    ..SeatFilter::default()
                },
            )
            .await?,
        })
    }

    /// One computer with the summary of the (first) license activated on it.
    fn describe(&self, computer: &Computer) -> Out {
        let user = computer.user.and_then(|u| self.users.get(&u));
        let company = user
            .and_then(|u| u.company)
            .and_then(|c| self.companies.get(&c));
        let seat = self.activated.iter().find(|s| {
            s.activation
                .as_ref()
                .is_some_and(|a| a.hardware_id == computer.hardware_id)
        });
        let license = match seat {
            Some(seat) => {
                let product = self.products.get(&seat.product);
                let expires = seat.effective_expiry(product);
                Out::Obj {
                    name: "ComputerLicense",
                    fields: vec![
                        ("Granted", Out::Bool(true)),
                        ("IsTrial", Out::Bool(seat.is_trial(product))),
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
        Out::Obj {
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
        }
    }
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
    let inventory = Inventory::load(call).await?;
    let items = computers
        .iter()
        .skip(offset)
        .take(count)
        .map(|c| inventory.describe(c))
        .collect();
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

/// `GET /api/Computers/{hid}`: one computer, or 400 `{"ErrorCode": -6, ...}` when unknown.
pub async fn one(call: &Call<'_>, hid: &str) -> Result<Response, Fault> {
    let computer = call
        .state
        .ledger
        .computers(call.tenant, None)
        .await?
        .into_iter()
        .find(|c| c.hardware_id == hid.trim())
        .ok_or_else(|| object_not_found(hid))?;
    let inventory = Inventory::load(call).await?;
    call.ok(&inventory.describe(&computer), "Computer")
}
