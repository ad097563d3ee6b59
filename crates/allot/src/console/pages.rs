//! The console's pages: each reads what it shows through the ledger's queries (the ones the API
//! uses) and renders it. No rule is decided here; who may see a page is the API's role check.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use minijinja::context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::history;
use super::session::Viewer;
use super::views::{ConsoleError, ConsoleResult, fragment, page};
use crate::state::AppState;
use allot_ledger::*;

/// Whether htmx asked for a fragment (a table it refreshes) rather than a whole page.
fn wants_fragment(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some() && headers.get("hx-boosted").is_none()
}

/// Names for the ids a page mentions: products (all, one query) and users (those named).
struct Names {
    products: HashMap<ProductId, Product>,
    users: HashMap<UserId, User>,
    companies: HashMap<CompanyId, Company>,
}

#[derive(Serialize)]
pub struct Named {
    id: i64,
    name: String,
}

impl Names {
    async fn load(
        state: &AppState,
        tenant: TenantId,
        users: impl IntoIterator<Item = UserId>,
    ) -> Result<Names, ConsoleError> {
        let products = state
            .ledger
            .products(tenant)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let companies = state
            .ledger
            .companies(tenant)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut names = Names {
            products,
            users: HashMap::new(),
            companies,
        };
        for id in users.into_iter().collect::<BTreeSet<_>>() {
            match state.ledger.user(tenant, &UserRef::Id(id)).await {
                Ok(user) => {
                    names.users.insert(id, user);
                }
                // A user the page mentions but the ledger no longer knows shows as its number.
                Err(LedgerError::UnknownUser(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(names)
    }

    fn product(&self, id: Option<ProductId>) -> Option<Named> {
        let id = id?;
        Some(Named {
            id,
            name: self
                .products
                .get(&id)
                .map(Product::full_name)
                .unwrap_or_else(|| format!("product #{id}")),
        })
    }

    fn user(&self, id: Option<UserId>) -> Option<Named> {
        let id = id?;
        Some(Named {
            id,
            name: self
                .users
                .get(&id)
                .map(|u| u.login.clone())
                .unwrap_or_else(|| format!("user #{id}")),
        })
    }

    fn company(&self, id: Option<CompanyId>) -> Option<Named> {
        let id = id?;
        Some(Named {
            id,
            name: self
                .companies
                .get(&id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("company #{id}")),
        })
    }
}

/// `/`: the console.
pub async fn root() -> Redirect {
    Redirect::to("/console")
}

#[derive(Serialize)]
struct PoolRow {
    product: Named,
    kind: ProductKind,
    unrestricted: bool,
    total: i64,
    in_use: i64,
    free: i64,
    /// Whole percent in use (of the seats bought).
    percent: i64,
    spark: Option<history::Sparkline>,
}

fn pool_rows(
    pools: Vec<PoolStatus>,
    sparks: &mut HashMap<ProductId, history::Sparkline>,
) -> Vec<PoolRow> {
    pools
        .into_iter()
        .map(|p| PoolRow {
            product: Named {
                id: p.product,
                name: format!("{}/{}", p.owner, p.name),
            },
            kind: p.kind,
            unrestricted: p.unrestricted,
            total: p.total,
            in_use: p.in_use,
            free: p.free,
            percent: if p.total > 0 {
                (p.in_use * 100 + p.total / 2) / p.total
            } else {
                0
            },
            spark: sparks.remove(&p.product),
        })
        .collect()
}

#[derive(Serialize)]
struct ExpiryRow {
    product: Option<Named>,
    at: String,
    whole_product: bool,
    seats: i64,
    held: i64,
}

pub async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> ConsoleResult {
    // A `user` login has no tenant to overview: its own page is its dashboard.
    if !viewer.principal.can_read() {
        return match viewer.principal.user {
            Some(id) => Ok(Redirect::to(&format!("/console/users/{id}")).into_response()),
            None => Err(ConsoleError::forbidden(
                "This login is bound to no user and may not read the tenant.",
            )),
        };
    }
    let tenant = viewer.reader()?;
    let pools = state.ledger.pool_status(tenant, None).await?;
    let ids: Vec<ProductId> = pools.iter().map(|p| p.product).collect();
    let overview = history::dashboard(&state, tenant, &ids).await?;
    let mut sparks = overview.sparklines;
    let expiring = state
        .ledger
        .expiring(tenant, time::Duration::days(30))
        .await?;
    let names = Names::load(&state, tenant, []).await?;
    let expiring: Vec<ExpiryRow> = expiring
        .into_iter()
        .map(|e| ExpiryRow {
            product: names.product(Some(e.product)),
            at: rfc3339(e.at),
            whole_product: e.whole_product,
            seats: e.seats,
            held: e.held,
        })
        .collect();
    let pools = pool_rows(pools, &mut sparks);
    page(
        &viewer,
        &headers,
        "dashboard.html",
        "dashboard",
        context! { pools => pools, expiring => expiring, refusals => overview.refusals_24h,
        history => overview.available },
    )
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Serialize)]
struct ProductRow {
    pool: PoolRow,
    product: Product,
    prerequisite: Option<Named>,
}

pub async fn products(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let names = Names::load(&state, tenant, []).await?;
    let pools = state.ledger.pool_status(tenant, None).await?;
    let rows: Vec<ProductRow> = pool_rows(pools, &mut HashMap::new())
        .into_iter()
        .filter_map(|pool| {
            let product = names.products.get(&pool.product.id)?.clone();
            Some(ProductRow {
                prerequisite: names.product(product.prerequisite),
                pool,
                product,
            })
        })
        .collect();
    page(
        &viewer,
        &headers,
        "products.html",
        "products",
        context! { products => rows },
    )
}

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

#[derive(Serialize)]
struct SeatRow {
    seat: Seat,
    holder: Option<Named>,
    company: Option<Named>,
}

pub async fn product(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<ProductId>,
    Query(q): Query<RangeQuery>,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let product = state.ledger.product(tenant, &ProductRef::Id(id)).await?;
    let pool = state
        .ledger
        .pool_status(tenant, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ConsoleError::from(LedgerError::UnknownProduct(format!("#{id}"))))?;
    let seats = state
        .ledger
        .seats(
            tenant,
            &SeatFilter {
                product: Some(id),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await?;
    let names = Names::load(&state, tenant, seats.iter().filter_map(|s| s.holder)).await?;
    let mut holders: Vec<Named> = seats
        .iter()
        .filter_map(|s| names.user(s.holder))
        .collect::<Vec<_>>();
    holders.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    holders.dedup_by_key(|n| n.id);
    let seats: Vec<SeatRow> = seats
        .into_iter()
        .map(|seat| SeatRow {
            holder: names.user(seat.holder),
            company: names.company(seat.pool_company),
            seat,
        })
        .collect();
    let range = history::Range::parse(q.range.as_deref());
    let chart = history::chart(&state, tenant, &product, range).await?;
    let pool = pool_rows(vec![pool], &mut HashMap::new()).pop();
    page(
        &viewer,
        &headers,
        "product.html",
        "products",
        context! {
            product => product.clone(),
            full_name => product.full_name(),
            prerequisite => names.product(product.prerequisite),
            pool => pool,
            seats => seats,
            holders => holders,
            range => range.as_str(),
            range_label => range.label(),
            ranges => history::Range::ALL.iter().map(|r| (r.as_str(), r.label())).collect::<Vec<_>>(),
            chart => chart,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    show: Option<String>,
}

#[derive(Serialize)]
struct UserRow {
    user: User,
    company: Option<Named>,
}

pub async fn users(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(q): Query<UsersQuery>,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let retired = match q.show.as_deref() {
        Some("retired") => Some(true),
        Some("all") => None,
        _ => Some(false),
    };
    let found = state
        .ledger
        .find_users(
            tenant,
            &UserSearch {
                text: Some(q.q.clone()),
                retired,
                limit: Some(200),
                ..Default::default()
            },
        )
        .await?;
    let names = Names::load(&state, tenant, []).await?;
    let rows: Vec<UserRow> = found
        .into_iter()
        .map(|user| UserRow {
            company: names.company(user.company),
            user,
        })
        .collect();
    let show = q.show.clone().unwrap_or_else(|| "active".into());
    if wants_fragment(&headers) {
        return fragment(
            &viewer,
            "users_table.html",
            context! { users => rows, q => q.q, show => show },
        );
    }
    page(
        &viewer,
        &headers,
        "users.html",
        "users",
        context! { users => rows, q => q.q, show => show },
    )
}

#[derive(Serialize)]
struct LicenseRow {
    product: Named,
    kind: ProductKind,
    assigned: bool,
    can_assign: bool,
    total: i64,
    in_use: i64,
    free: i64,
}

#[derive(Serialize)]
struct DeviceRow {
    name: String,
    operating_system: String,
    hardware_id: String,
    seats: Vec<DeviceSeat>,
}

#[derive(Serialize)]
struct DeviceSeat {
    product: Option<Named>,
    number: i64,
}

#[derive(Serialize)]
struct SessionRow {
    session: Session,
    user: Option<Named>,
    product: Option<Named>,
}

pub async fn user(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<UserId>,
) -> ConsoleResult {
    let tenant = viewer.caller().reader_or_self(id)?;
    let user = state.ledger.user(tenant, &UserRef::Id(id)).await?;
    let views = state.ledger.user_view(tenant, &UserRef::Id(id)).await?;
    let held = state
        .ledger
        .seats(
            tenant,
            &SeatFilter {
                holder: Some(id),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await?;
    let computers = state.ledger.computers(tenant, Some(id)).await?;
    let sessions = state
        .ledger
        .live_sessions(tenant, Some(id), None, None, Some(1000))
        .await?;
    let names = Names::load(&state, tenant, [id]).await?;
    let licenses: Vec<LicenseRow> = views
        .into_iter()
        // Hidden products are not offered; one the user holds still shows.
        .filter(|v| !v.product.hidden || v.assigned)
        .map(|v| LicenseRow {
            product: Named {
                id: v.product.id,
                name: v.product.full_name(),
            },
            kind: v.product.kind,
            assigned: v.assigned,
            can_assign: v.can_assign,
            total: v.status.total,
            in_use: v.status.in_use,
            free: v.status.free,
        })
        .collect();
    // Computers registered to the user, and any other computer one of its seats is activated on.
    let mut devices: Vec<DeviceRow> = computers
        .into_iter()
        .map(|c| DeviceRow {
            name: c.name,
            operating_system: c.operating_system,
            hardware_id: c.hardware_id,
            seats: Vec::new(),
        })
        .collect();
    for seat in held {
        let Some(activation) = seat.activation else {
            continue;
        };
        let on = DeviceSeat {
            product: names.product(Some(seat.product)),
            number: seat.number,
        };
        match devices
            .iter_mut()
            .find(|d| d.hardware_id == activation.hardware_id)
        {
            Some(device) => device.seats.push(on),
            None => devices.push(DeviceRow {
                name: activation.computer_name,
                operating_system: activation.operating_system,
                hardware_id: activation.hardware_id,
                seats: vec![on],
            }),
        }
    }
    let sessions: Vec<SessionRow> = sessions
        .into_iter()
        .map(|session| SessionRow {
            user: None,
            product: names.product(session.product),
            session,
        })
        .collect();
    page(
        &viewer,
        &headers,
        "user.html",
        if viewer.principal.can_read() {
            "users"
        } else {
            "me"
        },
        context! {
            user => user.clone(),
            company => names.company(user.company),
            licenses => licenses,
            devices => devices,
            sessions => sessions,
        },
    )
}

pub async fn sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> ConsoleResult {
    // Admins and readers see every live session; a `user` login only its own.
    let only = if viewer.principal.can_read() {
        None
    } else {
        match viewer.principal.user {
            Some(user) => Some(user),
            None => return Err(ConsoleError::forbidden("This login is bound to no user.")),
        }
    };
    let sessions = state
        .ledger
        .live_sessions(viewer.tenant, only, None, None, Some(1000))
        .await?;
    let names = Names::load(&state, viewer.tenant, sessions.iter().map(|s| s.user)).await?;
    let rows: Vec<SessionRow> = sessions
        .into_iter()
        .map(|session| SessionRow {
            user: names.user(Some(session.user)),
            product: names.product(session.product),
            session,
        })
        .collect();
    if wants_fragment(&headers) {
        return fragment(
            &viewer,
            "sessions_table.html",
            context! { sessions => rows },
        );
    }
    page(
        &viewer,
        &headers,
        "sessions.html",
        "sessions",
        context! { sessions => rows },
    )
}

pub async fn companies(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let companies = state.ledger.companies(tenant).await?;
    page(
        &viewer,
        &headers,
        "companies.html",
        "companies",
        context! { companies => companies },
    )
}

pub async fn company(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<CompanyId>,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let company = state.ledger.company(tenant, &CompanyRef::Id(id)).await?;
    let pools = state
        .ledger
        .company_pools(tenant, &CompanyRef::Id(id))
        .await?;
    let members = state
        .ledger
        .find_users(
            tenant,
            &UserSearch {
                company: Some(id),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await?;
    let names = Names::load(&state, tenant, []).await?;
    let mut products: Vec<Named> = names
        .products
        .values()
        .filter(|p| p.kind == ProductKind::User)
        .map(|p| Named {
            id: p.id,
            name: p.full_name(),
        })
        .collect();
    products.sort_by(|a, b| a.name.cmp(&b.name));
    page(
        &viewer,
        &headers,
        "company.html",
        "companies",
        context! { company => company, pools => pools, members => members, products => products },
    )
}

#[derive(Debug, Default, Deserialize, Serialize, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    pub actor: String,
    /// A user's login, id or UUID.
    #[serde(default)]
    pub user: String,
    /// A product id ("" for any).
    #[serde(default)]
    pub product: String,
    /// A day (YYYY-MM-DD): records from its start.
    #[serde(default)]
    pub since: String,
}

/// An [`AuditQuery`] resolved to the ledger's filter (unknown users and products are errors, as
/// in the API).
pub async fn audit_filter(
    state: &AppState,
    tenant: TenantId,
    q: &AuditQuery,
) -> Result<AuditFilter, ConsoleError> {
    let user = match q.user.trim() {
        "" => None,
        text => Some(
            state
                .ledger
                .user(tenant, &crate::api::extract::user_ref(text))
                .await?
                .id,
        ),
    };
    let product = match q.product.trim() {
        "" => None,
        text => {
            let id: ProductId = text
                .parse()
                .map_err(|_| ConsoleError::bad_request("product: choose one from the list"))?;
            Some(state.ledger.product(tenant, &ProductRef::Id(id)).await?.id)
        }
    };
    let since = match q.since.trim() {
        "" => None,
        text => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let day = time::Date::parse(text, &format)
                .map_err(|_| ConsoleError::bad_request("since: a day as YYYY-MM-DD"))?;
            Some(rules::to_micros(day.midnight().assume_utc()))
        }
    };
    Ok(AuditFilter {
        since,
        actor: Some(q.actor.trim().to_owned()).filter(|a| !a.is_empty()),
        user,
        product,
        limit: Some(100),
        ..Default::default()
    })
}

#[derive(Serialize)]
pub struct AuditRow {
    pub event: AuditEvent,
    pub at: String,
    pub user: Option<Named>,
    pub product: Option<Named>,
    pub company: Option<Named>,
    /// The record's detail as compact JSON.
    pub detail: String,
}

pub async fn audit_rows(
    state: &AppState,
    tenant: TenantId,
    events: Vec<AuditEvent>,
) -> Result<Vec<AuditRow>, ConsoleError> {
    let names = Names::load(state, tenant, events.iter().filter_map(|e| e.user)).await?;
    Ok(events
        .into_iter()
        .map(|event| AuditRow {
            at: rfc3339(event.at),
            user: names.user(event.user),
            product: names.product(event.product),
            company: names.company(event.company),
            detail: event.detail.to_string(),
            event,
        })
        .collect())
}

pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> ConsoleResult {
    let tenant = viewer.reader()?;
    let filter = audit_filter(&state, tenant, &q).await?;
    let events = state.ledger.audit_latest(tenant, &filter).await?;
    let newest = events.first().map(|e| e.seq).unwrap_or(0);
    let rows = audit_rows(&state, tenant, events).await?;
    let names = Names::load(&state, tenant, []).await?;
    let mut products: Vec<Named> = names
        .products
        .values()
        .map(|p| Named {
            id: p.id,
            name: p.full_name(),
        })
        .collect();
    products.sort_by(|a, b| a.name.cmp(&b.name));
    let stream = format!(
        "/console/audit/stream?{}",
        serde_urlencoded::to_string(&q).unwrap_or_default()
    );
    page(
        &viewer,
        &headers,
        "audit.html",
        "audit",
        context! { events => rows, filter => q, products => products, newest => newest,
        stream => stream },
    )
}

#[derive(Serialize)]
struct TokenRow {
    token: TokenInfo,
    user: Option<Named>,
    live: bool,
}

/// The tokens page; `issued` is a token just created, shown this once.
pub async fn tokens_page(
    state: &AppState,
    headers: &HeaderMap,
    viewer: &Viewer,
    issued: Option<(String, TokenInfo)>,
) -> ConsoleResult {
    let tenant = viewer.admin()?;
    let tokens = state.ledger.tokens(tenant).await?;
    let names = Names::load(state, tenant, tokens.iter().filter_map(|t| t.user)).await?;
    let now = state.ledger.now_time();
    let rows: Vec<TokenRow> = tokens
        .into_iter()
        .map(|token| TokenRow {
            user: names.user(token.user),
            live: matches!(
                TokenState::of(Some(token.clone()), now),
                TokenState::Live(_)
            ),
            token,
        })
        .collect();
    let issued = issued.map(|(secret, info)| context! { secret => secret, info => info });
    page(
        viewer,
        headers,
        "tokens.html",
        "tokens",
        context! { tokens => rows, issued => issued, own_token => viewer.principal.token },
    )
}

pub async fn tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> ConsoleResult {
    tokens_page(&state, &headers, &viewer, None).await
}

/// A seat or session id in a path that is not a UUID.
pub fn parse_uuid(text: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(text).map_err(|_| ConsoleError::bad_request("not a valid id"))
}
