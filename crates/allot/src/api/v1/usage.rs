//! Usage history: per product, one point per step with the seats bought, the peak and mean of
//! seats held, and the requests refused for want of a seat; JSON, or CSV for spreadsheets.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref};
use crate::state::AppState;
use allot_ledger::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// RFC 3339 time: the first point is the step holding it [default: a day before `to`].
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// RFC 3339 time: points start before it, and no later than now [default: now].
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// Width of a point [default: hour]. At most 10080 points per product.
    pub step: Option<UsageStep>,
}

impl UsageQuery {
    fn range(&self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime, UsageStep) {
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to - Duration::days(1));
        (from, to, self.step.unwrap_or(UsageStep::Hour))
    }
}

/// One product's usage history.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductUsage {
    pub product: Product,
    pub step: UsageStep,
    pub points: Vec<UsagePoint>,
    /// The currency of the costs, when the product has a seat price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// What the unused seats cost over the whole range (priced from the sum of the points'
    /// unused seat-seconds, rounded once), when the product has a seat price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "12.3456")]
    pub unused_seat_cost: Option<Amount>,
}

impl ProductUsage {
    pub fn new(product: Product, step: UsageStep, points: Vec<UsagePoint>) -> ProductUsage {
        ProductUsage {
            currency: product
                .seat_price_per_30_days
                .as_ref()
                .map(|p| p.currency.clone()),
            unused_seat_cost: unused_seat_cost_total(&product, &points),
            product,
            step,
            points,
        }
    }
}

/// Every product's usage history over one range.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantUsage {
    pub step: UsageStep,
    pub products: Vec<ProductUsage>,
}

/// One CSV row: a point of one product.
#[derive(Serialize)]
struct CsvRow<'a> {
    product_id: ProductId,
    owner: &'a str,
    product: &'a str,
    at: String,
    total: i64,
    in_use_max: i64,
    in_use_avg: f64,
    denied: i64,
    unused_seat_seconds: i64,
    unused_seat_cost: Option<String>,
    currency: Option<&'a str>,
}

/// Whether the client asked for CSV (`Accept: text/csv`) rather than JSON.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
        })
}

/// The points of `usages` as CSV with a header row (the API's `text/csv` answer, and the CLI's
/// `--csv`): one row a point, the product named on each.
pub fn usage_csv(usages: &[ProductUsage]) -> Result<Vec<u8>, csv::Error> {
    // The header row is written by hand, so that it is there even when there are no points.
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    out.write_record([
        "product_id",
        "owner",
        "product",
        "at",
        "total",
        "in_use_max",
        "in_use_avg",
        "denied",
        "unused_seat_seconds",
        "unused_seat_cost",
        "currency",
    ])?;
    for usage in usages {
        for point in &usage.points {
            out.serialize(CsvRow {
                product_id: usage.product.id,
                owner: &usage.product.owner,
                product: &usage.product.name,
                at: point
                    .at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                total: point.total,
                in_use_max: point.in_use_max,
                in_use_avg: point.in_use_avg,
                denied: point.denied,
                unused_seat_seconds: point.unused_seat_seconds,
                unused_seat_cost: point.unused_seat_cost.map(|c| c.to_string()),
                currency: usage.currency.as_deref(),
            })?;
        }
    }
    out.into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

fn csv_response(usages: &[ProductUsage]) -> ApiResult<Response> {
    let body = usage_csv(usages).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("csv: {e}"),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

/// One product's usage history (`Accept: text/csv` for CSV with a header row).
#[utoipa::path(get, path = "/v1/products/{product}/usage", tag = "products", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$"), UsageQuery),
    responses(
        (status = 200, content((ProductUsage = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody, description = "a malformed time or an unknown step"),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`to` not after `from`, or more points than allowed")))]
pub async fn product(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Response> {
    let tenant = caller.reader()?;
    let (from, to, step) = q.range(state.ledger.now_time());
    let product = state
        .ledger
        .product(tenant, &product_ref(&product)?)
        .await?;
    let points = state
        .ledger
        .usage(tenant, product.id, from, to, step)
        .await?;
    let usage = ProductUsage::new(product, step, points);
    if wants_csv(&headers) {
        return csv_response(std::slice::from_ref(&usage));
    }
    Ok(ApiJson(usage).into_response())
}

/// Every product's usage history at once (`Accept: text/csv` for one CSV of them all).
#[utoipa::path(get, path = "/v1/usage", tag = "products", security(("bearer" = [])), params(UsageQuery),
    responses(
        (status = 200, content((TenantUsage = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody, description = "a malformed time or an unknown step"),
        (status = 422, body = ErrorBody, description = "`to` not after `from`, or more points than allowed")))]
pub async fn tenant(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Response> {
    let tenant = caller.reader()?;
    let (from, to, step) = q.range(state.ledger.now_time());
    let products = state
        .ledger
        .tenant_usage(tenant, from, to, step)
        .await?
        .into_iter()
        .map(|(product, points)| ProductUsage::new(product, step, points))
        .collect::<Vec<_>>();
    if wants_csv(&headers) {
        return csv_response(&products);
    }
    Ok(ApiJson(TenantUsage { step, products }).into_response())
}
