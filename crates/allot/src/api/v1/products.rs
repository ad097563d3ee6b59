//! Products (module licenses) with their pool status, and adding seats.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{run, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref};
use crate::state::AppState;
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
) -> ApiResult<(StatusCode, ApiJson<ProductWithStatus>)> {
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
    match run(
        &state,
        &caller,
        tenant,
        &headers,
        Command::CreateProduct(new),
    )
    .await?
    {
        Outcome::Product(p) => Ok((
            StatusCode::CREATED,
            ApiJson(with_status(&state, tenant, p).await?),
        )),
        other => Err(unexpected(other)),
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
) -> ApiResult<ApiJson<ProductWithStatus>> {
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
    run(
        &state,
        &caller,
        tenant,
        &headers,
        Command::EditProduct {
            product: product.clone(),
            patch,
        },
    )
    .await?;
    let product = state.ledger.product(tenant, &product).await?;
    Ok(ApiJson(with_status(&state, tenant, product).await?))
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
) -> ApiResult<(StatusCode, ApiJson<Vec<Seat>>)> {
    let tenant = caller.admin()?;
    let new = NewSeats {
        product: product_ref(&product)?,
        count: req.count,
        trial: req.trial,
        expires_at: req.expires_at,
        transaction_id: req.transaction_id,
        pool_company: req.company.as_ref().map(Key::company),
    };
    match run(&state, &caller, tenant, &headers, Command::AddSeats(new)).await? {
        Outcome::Seats { seats } => Ok((StatusCode::CREATED, ApiJson(seats))),
        other => Err(unexpected(other)),
    }
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
) -> ApiResult<ApiJson<Changed>> {
    let command = Command::RemoveSeats {
        product: product_ref(&product)?,
        count: req.count,
        pool_company: req.company.as_ref().map(Key::company),
    };
    super::run_admin(&state, &caller, &headers, command).await
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
