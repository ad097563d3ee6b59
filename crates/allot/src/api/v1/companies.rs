//! Companies, their pool mode and per-product quotas.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{answer, run, single, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref};
use crate::state::AppState;
use allot_ledger::idempotency::{AnswerRead, ReadValue, RunMode};
use allot_ledger::*;

fn company_key(text: &str) -> CompanyRef {
    match text.parse::<i64>() {
        Ok(id) => CompanyRef::Id(id),
        Err(_) => Key::Name(text.to_owned()).company(),
    }
}

#[utoipa::path(get, path = "/v1/companies", tag = "companies", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Company>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Company>>> {
    let tenant = caller.reader()?;
    let companies = state.ledger.companies(tenant).await?;
    Ok(ApiJson(Page::slice(companies, &q, |c| c.id)))
}

#[utoipa::path(post, path = "/v1/companies", tag = "companies", security(("bearer" = [])), request_body = NewCompanyRequest,
    responses((status = 201, body = Company), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewCompanyRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let command = Command::CreateCompany {
        name: req.name,
        pool_mode: req.pool_mode,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| None,
        |ran| match single(ran)? {
            (Outcome::Company(c), _) => Ok((StatusCode::CREATED, c)),
            (other, _) => Err(unexpected(other)),
        },
    )
    .await)
}

#[utoipa::path(get, path = "/v1/companies/{company}", tag = "companies", security(("bearer" = [])),
    params(("company" = String, Path, description = "id, UUID or name")),
    responses((status = 200, body = Company), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(company): ApiPath<String>,
) -> ApiResult<ApiJson<Company>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(
        state.ledger.company(tenant, &company_key(&company)).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/companies/{company}", tag = "companies", security(("bearer" = [])),
    params(("company" = String, Path)), request_body = CompanyPatchRequest,
    responses((status = 200, body = Company), (status = 409, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(company): ApiPath<String>,
    ApiJson(req): ApiJson<CompanyPatchRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let id = state
        .ledger
        .company(tenant, &company_key(&company))
        .await?
        .id;
    let command = Command::EditCompany {
        company: CompanyRef::Id(id),
        name: req.name,
        pool_mode: req.pool_mode,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| Some(AnswerRead::Company(CompanyRef::Id(id))),
        |ran| match ran?.read {
            Some(ReadValue::Company(company)) => Ok((StatusCode::OK, company)),
            _ => Err(super::unexpected_read()),
        },
    )
    .await)
}

#[utoipa::path(put, path = "/v1/companies/{company}/quotas/{product}", tag = "companies", security(("bearer" = [])),
    params(("company" = String, Path), ("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")), request_body = QuotaRequest,
    responses((status = 200, body = Changed), (status = 409, body = ErrorBody)))]
pub async fn set_quota(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((company, product)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<QuotaRequest>,
) -> ApiResult<ApiJson<Changed>> {
    let tenant = caller.admin()?;
    let command = Command::SetCompanyQuota {
        company: company_key(&company),
        product: product_ref(&product)?,
        quota: req.quota,
    };
    let outcome = run(&state, &caller, tenant, &headers, command).await?;
    Ok(ApiJson(Changed {
        changed: outcome.changed(),
    }))
}
