//! Companies: `GET|POST|PUT /api/Companies`, `GET|DELETE /api/Companies/{id}`. The key is
//! `Id` (not `ID`), `LicenseSettings` is the company's pool mode (0 Custom, 1 Global Pool,
//! 2 Company Pool). Storage limits and destinations are not part of the ledger: `StorageLimit`
//! is read (and must be an integer) but answered as -1 (unlimited), `Destinations` as empty.

use axum::response::Response;

use super::wire::{self, Out};
use super::{Call, Fault, field, invalid, ok_empty, parse_id};
use allot_ledger::{Command, Company, CompanyRef, LedgerError, Outcome, PoolMode};

const COMPANY: &str = "CompanyModel";

fn company_out(company: &Company) -> Out {
    Out::Obj {
        name: COMPANY,
        fields: vec![
            ("Id", Out::Str(company.uuid.to_string())),
            ("Name", Out::Str(company.name.clone())),
            ("StorageLimit", Out::Int(-1)),
            ("LicenseSettings", wire::pool_mode_out(company.pool_mode)),
            (
                "Destinations",
                Out::List {
                    item: "CompanyDestination",
                    items: Vec::new(),
                },
            ),
        ],
    }
}

async fn find(call: &Call<'_>, id: &str) -> Result<Option<Company>, Fault> {
    let Some(uuid) = parse_id(id) else {
        return Ok(None);
    };
    match call
        .state
        .ledger
        .company(call.tenant, &CompanyRef::Uuid(uuid))
        .await
    {
        Ok(company) => Ok(Some(company)),
        Err(e) if !e.is_store_failure() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn not_found(id: &str) -> Fault {
    Fault::bad(format!("Company '{id}' not found."))
}

pub async fn list(call: &Call<'_>) -> Result<Response, Fault> {
    let items = call
        .state
        .ledger
        .companies(call.tenant)
        .await?
        .iter()
        .map(company_out)
        .collect();
    call.ok(
        &Out::List {
            item: COMPANY,
            items,
        },
        COMPANY,
    )
}

/// `GET /api/Companies/{id}`: the company, or 200 `null`.
pub async fn get(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    match find(call, id).await? {
        Some(company) => call.ok(&company_out(&company), COMPANY),
        None => call.ok(&Out::Null, COMPANY),
    }
}

fn settings(body: &wire::Fields) -> Result<Option<PoolMode>, Fault> {
    match body.get("LicenseSettings") {
        Some(v) => wire::parse_pool_mode(v).map_err(invalid),
        None => Ok(None),
    }
}

/// `POST /api/Companies` (`CompanyCreateModel`): answers the new company's `Id` as a JSON
/// string. Without `LicenseSettings` the company is Custom (0), ASP.NET's default for the enum.
pub async fn create(call: &Call<'_>) -> Result<Response, Fault> {
    let body = call.body("CompanyCreateModel")?;
    let name = field(body.given("Name"))?.ok_or_else(|| invalid("Name is required".into()))?;
    body.int("StorageLimit").map_err(invalid)?;
    let pool_mode = settings(&body)?.unwrap_or(PoolMode::Custom);
    match call
        .execute(Command::CreateCompany { name, pool_mode })
        .await?
    {
        Outcome::Company(company) => call.ok(&Out::Str(company.uuid.to_string()), "string"),
        _ => Err(Fault::unavailable()),
    }
}

/// `PUT /api/Companies` (`CompanyModel` with `Id`): renames and changes the pool mode.
pub async fn edit(call: &Call<'_>) -> Result<Response, Fault> {
    let body = call.body("CompanyModel")?;
    let id = field(body.given("Id"))?.ok_or_else(|| invalid("Id is required".into()))?;
    let company = find(call, &id).await?.ok_or_else(|| not_found(&id))?;
    body.int("StorageLimit").map_err(invalid)?;
    call.execute(Command::EditCompany {
        company: CompanyRef::Id(company.id),
        name: field(body.given("Name"))?,
        pool_mode: settings(&body)?,
    })
    .await?;
    ok_empty()
}

/// `DELETE /api/Companies/{id}`: 400 `{"Message": "... not found."}` for an unknown id. The
/// company's users stay, without a company.
pub async fn delete(call: &Call<'_>, id: &str) -> Result<Response, Fault> {
    let company = find(call, id).await?.ok_or_else(|| not_found(id))?;
    match call
        .execute(Command::DeleteCompany {
            company: CompanyRef::Id(company.id),
        })
        .await
    {
        Ok(_) => ok_empty(),
        // Deleted by someone else in between.
        Err(LedgerError::UnknownCompany(_)) => Err(not_found(id)),
        Err(e) => Err(e.into()),
    }
}
