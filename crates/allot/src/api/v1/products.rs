//! Products (module licenses) with their pool status, and adding seats.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{answer, single, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref};
use crate::state::AppState;
use allot_ledger::idempotency::{AnswerRead, ReadValue, RunMode};
use allot_ledger::*;

async fn with_status(
    state: &AppState,
    tenant: TenantId,
    product: Product,
) -> ApiResult<ProductWithStatus> {
    let mut status = state.ledger.pool_status(tenant, Some(product.id)).await?;
    let status = status
        .pop()
        .ok_or_else(|| ApiError::not_found("product vanished"))?;
    Ok(ProductWithStatus { product, status })
}

#[utoipa::path(get, path = "/v1/products", tag = "products", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<ProductWithStatus>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<ProductWithStatus>>> {
    let tenant = caller.reader()?;
    let products = state.ledger.products(tenant).await?;
    let statuses = state.ledger.pool_status(tenant, None).await?;
    let items = products
        .into_iter()
        .filter_map(|product| {
            let status = statuses.iter().find(|s| s.product == product.id)?.clone();
            Some(ProductWithStatus { product, status })
        })
        .collect();
    Ok(ApiJson(Page::slice(items, &q, |p| p.product.id)))
}

#[utoipa::path(post, path = "/v1/products", tag = "products", security(("bearer" = [])), request_body = NewProductRequest,
    responses((status = 201, body = ProductWithStatus), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewProductRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let new = NewProduct {
        owner: req.owner,
        name: req.name,
        description: req.description,
        tooltip: req.tooltip,
        kind: req.kind,
        unrestricted: req.unrestricted,
        hidden: req.hidden,
        sort_order: req.sort_order,
        extra_flags: req.extra_flags,
        plan_members: req
            .plan_members
            .iter()
            .map(Key::product)
            .collect::<Result<_, _>>()?,
        prerequisite: req.prerequisite.as_ref().map(Key::product).transpose()?,
        expires_at: req.expires_at,
        trial: req.trial,
        seats: req.seats,
        seat_price_per_30_days: req.seat_price_per_30_days,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![Command::CreateProduct(new)],
        RunMode::Atomic,
        |results| match results.first() {
            Some(Ok(Outcome::Product(p))) => Some(AnswerRead::Product(ProductRef::Id(p.id))),
            _ => None,
        },
        |ran| Ok((StatusCode::CREATED, product_answer(ran)?)),
    )
    .await)
}

/// The product with its pool counts, as the answer's read found it.
fn product_answer(
    ran: Result<allot_ledger::idempotency::Ran, LedgerError>,
) -> ApiResult<ProductWithStatus> {
    let (_, ran) = single(ran)?;
    match ran.read {
        Some(ReadValue::Product(product, status)) => Ok(ProductWithStatus { product, status }),
        _ => Err(super::unexpected_read()),
    }
}

#[utoipa::path(get, path = "/v1/products/{product}", tag = "products", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    responses((status = 200, body = ProductWithStatus), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(product): ApiPath<String>,
) -> ApiResult<ApiJson<ProductWithStatus>> {
    let tenant = caller.reader()?;
    let product = state
        .ledger
        .product(tenant, &product_ref(&product)?)
        .await?;
    Ok(ApiJson(with_status(&state, tenant, product).await?))
}

#[utoipa::path(patch, path = "/v1/products/{product}", tag = "products", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")), request_body = ProductPatchRequest,
    responses((status = 200, body = ProductWithStatus), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a field refused, e.g. a seat price's amount or currency")))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
    ApiJson(req): ApiJson<ProductPatchRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let product = product_ref(&product)?;
    let patch = ProductPatch {
        description: req.description,
        tooltip: req.tooltip,
        unrestricted: req.unrestricted,
        hidden: req.hidden,
        sort_order: req.sort_order,
        extra_flags: req.extra_flags,
        plan_members: req
            .plan_members
            .map(|m| m.iter().map(Key::product).collect::<Result<Vec<_>, _>>())
            .transpose()?,
        prerequisite: req
            .prerequisite
            .map(|p| p.as_ref().map(Key::product).transpose())
            .transpose()?,
        expires_at: req.expires_at,
        trial: req.trial,
        seat_price_per_30_days: req.seat_price_per_30_days,
    };
    let command = Command::EditProduct {
        product: product.clone(),
        patch,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| Some(AnswerRead::Product(product.clone())),
        |ran| Ok((StatusCode::OK, product_answer(ran)?)),
    )
    .await)
}

#[utoipa::path(post, path = "/v1/products/{product}/seats", tag = "products", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")), request_body = AddSeatsRequest,
    responses((status = 201, body = Vec<Seat>), (status = 409, body = ErrorBody)))]
pub async fn add_seats(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
    ApiJson(req): ApiJson<AddSeatsRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let new = NewSeats {
        product: product_ref(&product)?,
        count: req.count,
        trial: req.trial,
        expires_at: req.expires_at,
        transaction_id: req.transaction_id,
        pool_company: req.company.as_ref().map(Key::company),
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![Command::AddSeats(new)],
        RunMode::Atomic,
        |_| None,
        |ran| match single(ran)? {
            (Outcome::Seats { seats }, _) => Ok((StatusCode::CREATED, seats)),
            (other, _) => Err(unexpected(other)),
        },
    )
    .await)
}

/// Removes free seats (never a held one): all `count` of them, or none and 409 saying how many
/// are free.
#[utoipa::path(post, path = "/v1/products/{product}/seats/remove", tag = "products", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    request_body = RemoveSeatsRequest,
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody),
        (status = 409, description = "fewer free seats than asked (code not_enough_free_seats; the message says how many are free)", body = ErrorBody)))]
pub async fn remove_seats(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
    ApiJson(req): ApiJson<RemoveSeatsRequest>,
) -> ApiResult<Response> {
    let command = Command::RemoveSeats {
        product: product_ref(&product)?,
        count: req.count,
        pool_company: req.company.as_ref().map(Key::company),
    };
    Ok(super::answer_changed(&state, &caller, &headers, command).await)
}

/// Pool status of every product: Total, InUse, Free.
#[utoipa::path(get, path = "/v1/pools", tag = "products", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<PoolStatus>)))]
pub async fn pools(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<PoolStatus>>> {
    let tenant = caller.reader()?;
    let pools = state.ledger.pool_status(tenant, None).await?;
    Ok(ApiJson(Page::slice(pools, &q, |p| p.product)))
}
