//! Users: `GET|POST|PUT /api/Users`, `GET|DELETE /api/Users/{id}`,
//! `DELETE /api/Users/{id}/Account`, `GET /api/Users/{id}/Computers`.
//!
//! `ID` is the user's UUID, `Email` its login, `Company` its company's name. Deleting a user
//! retires it in the ledger: its licenses are released, its login is freed, and it is gone from
//! the API from then on (lists, lookups, a second delete), while the audit trail keeps it.

use std::collections::HashMap;

use axum::response::Response;

use super::wire::{self, Out};
use super::{Call, Fault, field, invalid, ok_empty, parse_id};
use allot_ledger::{
    Command, CompanyId, CompanyRef, LicenseMode, NewUser, Outcome, User, UserPatch, UserRef,
};

const USER: &str = "UsersModels";

/// Both spellings of the mode field: the API's `LicenseManagmentMode` and the help pages'.
const MODE_KEYS: &[&str] = &["LicenseManagmentMode", "LicenseManagementMode"];

fn user_out(user: &User, companies: &HashMap<CompanyId, String>) -> Out {
    let emails = if user.email.is_empty() {
        Vec::new()
    } else {
        vec![Out::Str(user.email.clone())]
    };
    Out::Obj {
        name: USER,
        fields: vec![
            ("ID", Out::Str(user.uuid.to_string())),
            ("Email", Out::Str(user.login.clone())),
            ("FirstName", Out::Str(user.first_name.clone())),
            ("LastName", Out::Str(user.last_name.clone())),
            (
                "NotificationEmails",
                Out::List {
                    item: "string",
                    items: emails,
                },
            ),
            (
                "Company",
                Out::opt_str(
                    user.company
                        .and_then(|c| companies.get(&c))
                        .map(String::as_str),
                ),
            ),
            ("Enabled", Out::Bool(!user.retired && !user.disabled)),
            (
                "LicenseManagmentMode",
                wire::user_mode_out(user.license_mode),
            ),
            (
                "DestinationList",
                Out::List {
                    item: "DestinationModel",
                    items: Vec::new(),
                },
            ),
            ("SpaceUsed", Out::Int(0)),
        ],
    }
}

pub(super) async fn company_names(call: &Call<'_>) -> Result<HashMap<CompanyId, String>, Fault> {
    Ok(call
        .state
        .ledger
        .companies(call.tenant)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}

/// The live (not deleted) user with this `ID`, if any.
async fn find(call: &Call<'_>, id: &str) -> Result<Option<User>, Fault> {
    let Some(uuid) = parse_id(id) else {
        return Ok(None);
    };
    match call
        .state
        .ledger
        .user(call.tenant, &UserRef::Uuid(uuid))
        .await
    {
        Ok(user) if !user.retired => Ok(Some(user)),
        Ok(_) => Ok(None),
        Err(e) if !e.is_store_failure() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The user a change names, or a 400.
async fn require(call: &Call<'_>, id: &str) -> Result<User, Fault> {
    find(call, id)
        .await?
        .ok_or_else(|| Fault::bad(format!("User '{id}' not found.")))
}

/// `GET /api/Users`: every user not deleted.
pub async fn list(call: &Call<'_>) -> Result<Response, Fault> {
    let companies = company_names(call).await?;
    let mut users: Vec<User> = super::licenses::all_users(call)
        .await?
        .into_values()
        .filter(|u| !u.retired)
        .collect();
    users.sort_by_key(|u| u.id);
    let items = users.iter().map(|u| user_out(u, &companies)).collect();
    call.ok(&Out::List { item: USER, items }, USER)
}

/// `GET /api/Users/{id}`: the user, or 200 `null`.
pub async fn get(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    match find(call, id).await? {
        Some(user) => call.ok(&user_out(&user, &company_names(call).await?), USER),
        None => call.ok(&Out::Null, USER),
    }
}

fn mode(body: &wire::Fields) -> Result<Option<LicenseMode>, Fault> {
    match body.get_any(MODE_KEYS) {
        Some(v) => wire::parse_user_mode(v).map_err(invalid),
        None => Ok(None),
    }
}

/// Passwords are checked for the API's length rule (6 to 100) but not kept: backup-agent
/// logins are not part of the ledger.
fn check_password(password: Option<&str>) -> Result<(), Fault> {
    if let Some(p) = password
        && !(6..=100).contains(&p.chars().count())
    {
        return Err(invalid(
            "Password must be between 6 and 100 characters long".into(),
        ));
    }
    Ok(())
}

/// `Enabled` as the ledger's command: `false` disables the user (seats released unless the
/// tenant keeps them, logins and tokens refused, the user kept), `true` enables it again.
fn enabled_command(body: &wire::Fields, user: UserRef) -> Result<Option<Command>, Fault> {
    Ok(match body.boolean("Enabled").map_err(invalid)? {
        Some(false) => Some(Command::DisableUser { user }),
        Some(true) => Some(Command::EnableUser { user }),
        None => None,
    })
}

/// Runs the commands of one request all or nothing; the first refusal is the answer.
async fn apply(call: &Call<'_>, commands: &[Command]) -> Result<Vec<Outcome>, Fault> {
    Ok(call
        .state
        .ledger
        .apply_all_or_nothing(&call.context(), commands)
        .await?)
}

/// The first notification e-mail is the user's e-mail address.
fn notification_email(body: &wire::Fields) -> Result<Option<String>, Fault> {
    Ok(body
        .strings("NotificationEmails")
        .map_err(invalid)?
        .map(|list| {
            list.into_iter()
                .map(|e| e.trim().to_owned())
                .find(|e| !e.is_empty())
                .unwrap_or_default()
        }))
}

/// `POST /api/Users` (`UsersAddModels`): answers the new user's `ID` as a JSON string.
pub async fn create(call: &Call<'_>) -> Result<Response, Fault> {
    let body = call.body("UsersAddModels")?;
    let login = field(body.given("Email"))?.ok_or_else(|| invalid("Email is required".into()))?;
    let password = field(body.text("Password"))?;
    if password.as_deref().is_none_or(str::is_empty) {
        return Err(invalid("Password is required".into()));
    }
    check_password(password.as_deref())?;
    let enabled = enabled_command(&body, UserRef::Login(login.clone()))?;
    let company = field(body.given("Company"))?;
    let new = NewUser {
        id: None,
        login,
        first_name: field(body.text("FirstName"))?.unwrap_or_default(),
        last_name: field(body.text("LastName"))?.unwrap_or_default(),
        email: notification_email(&body)?.unwrap_or_default(),
        company: company.map(CompanyRef::Name),
        license_mode: mode(&body)?.unwrap_or(LicenseMode::Manual),
        user_type: "internal".to_owned(),
        external_id: None,
        display_name: None,
    };
    // Created disabled in the same transaction, or not at all.
    let commands: Vec<Command> = std::iter::once(Command::CreateUser(new))
        .chain(enabled)
        .collect();
    match apply(call, &commands).await?.into_iter().next() {
        Some(Outcome::User(user)) => call.ok(&Out::Str(user.uuid.to_string()), "string"),
        _ => Err(Fault::unavailable()),
    }
}

/// `PUT /api/Users` (`UsersEditModels`, `ID` in the body): empty strings leave a field as it
/// is (PowerShell sends `""` for what it does not change). 200 with no body.
pub async fn edit(call: &Call<'_>) -> Result<Response, Fault> {
    let body = call.body("UsersEditModels")?;
    let id = field(body.given("ID"))?.ok_or_else(|| invalid("ID is required".into()))?;
    let user = require(call, &id).await?;
    check_password(field(body.given("Password"))?.as_deref())?;
    let enabled = enabled_command(&body, UserRef::Id(user.id))?;
    let patch = UserPatch {
        login: field(body.given("Email"))?,
        first_name: field(body.given("FirstName"))?,
        last_name: field(body.given("LastName"))?,
        email: notification_email(&body)?,
        company: field(body.given("Company"))?.map(|name| Some(CompanyRef::Name(name))),
        license_mode: mode(&body)?,
        ..Default::default()
    };
    let commands: Vec<Command> = std::iter::once(Command::EditUser {
        user: UserRef::Id(user.id),
        patch,
    })
    .chain(enabled)
    .collect();
    apply(call, &commands).await?;
    ok_empty()
}

/// `DELETE /api/Users/{id}` and `/{id}/Account`: the ledger's `DeleteUser` releases the user's
/// licenses, retires it and renames its login to `<login> (deleted <ID>)` in one transaction, so
/// the `Email` is free for a new user, as it is after a delete in MSP360. 400 for an id that
/// names no (live) user.
pub async fn delete(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    let user = require(call, id).await?;
    call.execute(Command::DeleteUser {
        user: UserRef::Id(user.id),
    })
    .await?;
    ok_empty()
}

/// `GET /api/Users/{id}/Computers`: `[{DestinationId, ComputerName}]` for the computers bound
/// to the user. allot keeps no backup destinations, so `DestinationId` is null.
pub async fn computers(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    let user = require(call, id).await?;
    let computers = call
        .state
        .ledger
        .computers(call.tenant, Some(user.id))
        .await?;
    let items = computers
        .iter()
        .map(|c| Out::Obj {
            name: "UserComputer",
            fields: vec![
                ("DestinationId", Out::Null),
                ("ComputerName", Out::Str(c.name.clone())),
            ],
        })
        .collect();
    call.ok(
        &Out::List {
            item: "UserComputer",
            items,
        },
        "UserComputer",
    )
}
