//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2`: identity providers (Okta, Microsoft Entra ID)
//! create, change and delete the tenant's users. Only a token of the role `scim` gets in, and
//! it gets nowhere else. Like every adapter this only translates: each change is a ledger
//! command (audited there), each read a ledger query.
//!
//! A PATCH is applied to the user's SCIM JSON ([`patch`]) and the result stored like a PUT, so
//! both go through one mapping from SCIM attributes to the ledger's fields.

pub mod filter;
pub mod groups;
pub mod patch;
mod schema;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::auth::Principal;
use crate::state::AppState;
use allot_ledger::{
    Command, Context, LedgerError, NewUser, Outcome, Role, TenantId, User, UserPatch, UserRef,
};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const CONTENT_TYPE: &str = "application/scim+json";
/// Page size when the client names none, and the most one page holds.
const DEFAULT_COUNT: usize = 100;
pub(crate) const MAX_COUNT: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(schema::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(schema::resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(schema::resource_type))
        .route("/scim/v2/Schemas", get(schema::schemas))
        .route("/scim/v2/Schemas/{id}", get(schema::schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/Users/.search", axum::routing::post(search_users))
        // Across every resource type.
        .route("/scim/v2/.search", axum::routing::post(search_all))
        .route(
            "/scim/v2/Groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route(
            "/scim/v2/Groups/.search",
            axum::routing::post(groups::search_groups),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2", axum::routing::any(unknown))
        .route("/scim/v2/{*rest}", axum::routing::any(unknown))
}

async fn unknown() -> ScimError {
    ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint")
}

/// A SCIM error answer (RFC 7644 §3.12): `status` as a string, `scimType` where one applies.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("no resource {id:?}"))
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        // SCIM answers invalid values with 400 (§3.12), where the native API says 422.
        let (status, scim_type) = match (e.status.as_u16(), e.code) {
            (422, _) => (StatusCode::BAD_REQUEST, Some("invalidValue")),
            (409, "already_exists") => (StatusCode::CONFLICT, Some("uniqueness")),
            (_, _) => (e.status, None),
        };
        ScimError {
            status,
            scim_type,
            detail: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<LedgerError> for ScimError {
    fn from(e: LedgerError) -> Self {
        ScimError::from(ApiError::from(e))
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut response = scim_json(self.status, &body);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(crate) type ScimResult<T> = Result<T, ScimError>;

pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The SCIM client: a live bearer token of the role `scim`; other roles are refused here, as
/// `scim` tokens are everywhere else.
pub struct ScimCaller {
    principal: Principal,
    tenant: TenantId,
}

impl axum::extract::FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized =
            |detail: &str| ScimError::new(StatusCode::UNAUTHORIZED, None, detail.to_owned());
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send Authorization: Bearer <a token of the role scim>"))?;
        let text = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(unauthorized(
                    "the Authorization header is not Bearer <token>",
                ));
            }
        };
        let principal = state.auth.token(token).await.map_err(ApiError::from)?;
        match (principal.role, principal.tenant) {
            (Role::Scim, Some(tenant)) => Ok(ScimCaller { principal, tenant }),
            _ => Err(ScimError::new(
                StatusCode::FORBIDDEN,
                None,
                "/scim/v2 needs a token of the role scim (POST /v1/tokens {\"role\": \"scim\"})",
            )),
        }
    }
}

impl ScimCaller {
    fn context(&self, headers: &HeaderMap) -> Context {
        Context {
            tenant: self.tenant,
            actor: format!("scim:{}", self.principal.login),
            request_id: crate::api::extract::request_id(headers),
        }
    }
}

/// The base of `meta.location` and `$ref`s: under the configured public URL (`[scim]
/// public_url`) when one is set; else as the client reached us, its `Host` taken only when it
/// is a plain host[:port] (a forged header cannot put another address there); else relative.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.scim.public_url {
        return format!("{}/scim/v2", url.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| crate::config::plain_host(h));
    // The scheme a TLS-terminating proxy says, when the operator trusts it to.
    let https = state.settings.trust_forwarded_proto
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    match host {
        Some(host) => format!("{scheme}://{host}/scim/v2"),
        None => "/scim/v2".to_owned(),
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A user as SCIM JSON. Only what the published schema names, so what a client writes reads
/// back the same.
pub fn user_json(user: &User, base: &str) -> Value {
    let mut out = json!({
        "schemas": [USER_SCHEMA],
        "id": user.uuid.to_string(),
        "userName": user.login,
        "active": !user.retired && !user.disabled,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(user.created_at),
            "lastModified": rfc3339(user.modified_at),
            "location": format!("{base}/Users/{}", user.uuid),
        },
    });
    if let Some(external) = &user.external_id {
        out["externalId"] = json!(external);
    }
    let mut name = serde_json::Map::new();
    if !user.first_name.is_empty() {
        name.insert("givenName".into(), json!(user.first_name));
    }
    if !user.last_name.is_empty() {
        name.insert("familyName".into(), json!(user.last_name));
    }
    if !name.is_empty() {
        out["name"] = Value::Object(name);
    }
    if let Some(display) = &user.display_name {
        out["displayName"] = json!(display);
    }
    if !user.email.is_empty() {
        out["emails"] = json!([{ "value": user.email }]);
    }
    out
}

/// The ledger's fields, read from a SCIM user (a POST or PUT body, or a patched user).
#[derive(Debug, PartialEq)]
pub struct UserFields {
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
}

fn text_member(body: &Value, name: &str) -> ScimResult<Option<String>> {
    match filter::member(body, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// `active` as Entra sends it too: a boolean, or the string "True"/"False".
pub fn bool_value(name: &str, v: &Value) -> ScimResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be true or false"),
        )),
    }
}

pub fn user_fields(body: &Value) -> ScimResult<UserFields> {
    if !body.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    let login = text_member(body, "userName")?
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    let name = filter::member(body, "name").cloned().unwrap_or(Value::Null);
    if !(name.is_object() || name.is_null()) {
        return Err(ScimError::bad("invalidValue", "name must be an object"));
    }
    // One e-mail per user: the primary one, else the work one, else the first.
    let email = match filter::member(body, "emails") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(items)) => {
            let chosen = items
                .iter()
                .find(|e| {
                    filter::member(e, "primary")
                        .is_some_and(|p| bool_value("primary", p).unwrap_or(false))
                })
                .or_else(|| {
                    items.iter().find(|e| {
                        filter::member(e, "type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case("work"))
                    })
                })
                .or_else(|| items.first());
            match chosen {
                Some(e) => text_member(e, "value")?.unwrap_or_default(),
                None => String::new(),
            }
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "emails must be an array")),
    };
    let active = match filter::member(body, "active") {
        None | Some(Value::Null) => true,
        Some(v) => bool_value("active", v)?,
    };
    Ok(UserFields {
        login,
        first_name: text_member(&name, "givenName")?.unwrap_or_default(),
        last_name: text_member(&name, "familyName")?.unwrap_or_default(),
        email,
        display_name: text_member(body, "displayName")?,
        external_id: text_member(body, "externalId")?,
        active,
    })
}

async fn read_body(headers: &HeaderMap, body: &Bytes) -> ScimResult<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !(media.eq_ignore_ascii_case(CONTENT_TYPE) || media.eq_ignore_ascii_case("application/json"))
    {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            "send application/scim+json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

/// A user named by its SCIM id (the ledger UUID). Deleted users are gone for SCIM.
async fn find_user(state: &AppState, tenant: TenantId, id: &str) -> ScimResult<User> {
    let uuid = Uuid::parse_str(id).map_err(|_| ScimError::not_found(id))?;
    match state.ledger.user(tenant, &UserRef::Uuid(uuid)).await {
        Ok(user) if !is_deleted(&user) => Ok(user),
        Ok(_) | Err(LedgerError::UnknownUser(_)) => Err(ScimError::not_found(id)),
        Err(e) => Err(e.into()),
    }
}

fn is_deleted(user: &User) -> bool {
    user.retired && allot_ledger::rules::deleted_login(&user.login, user.uuid) == user.login
}

async fn run(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    command: Command,
) -> ScimResult<Outcome> {
    let op = command.name();
    let result = state
        .ledger
        .execute(&caller.context(headers), command)
        .await;
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    metrics::counter!("allot_ledger_operations_total", "op" => op, "outcome" => outcome)
        .increment(1);
    Ok(result?)
}

/// Runs commands in one transaction, all or nothing; answers the last user outcome.
async fn run_all(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    commands: &[Command],
) -> ScimResult<Option<User>> {
    let result = state
        .ledger
        .apply_all_or_nothing(&caller.context(headers), commands)
        .await;
    for command in commands {
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        metrics::counter!("allot_ledger_operations_total", "op" => command.name(), "outcome" => outcome)
            .increment(1);
    }
    Ok(result?.into_iter().rev().find_map(|o| match o {
        Outcome::User(u) => Some(u),
        _ => None,
    }))
}

fn user_answer(state: &AppState, status: StatusCode, user: &User, headers: &HeaderMap) -> Response {
    let base = base_url(state, headers);
    let mut response = scim_json(status, &user_json(user, &base));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("{base}/Users/{}", user.uuid))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn create_user(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = read_body(&headers, &body).await?;
    let fields = user_fields(&body)?;
    let login = fields.login.clone();
    let active = fields.active;
    let new = NewUser {
        first_name: fields.first_name,
        last_name: fields.last_name,
        email: fields.email,
        external_id: fields.external_id,
        display_name: fields.display_name,
        ..NewUser::named(&fields.login)
    };
    let mut commands = vec![Command::CreateUser(new)];
    if !active {
        // Created disabled, in the same transaction.
        commands.push(Command::DisableUser {
            user: UserRef::Login(login.clone()),
        });
    }
    run_all(&state, &caller, &headers, &commands).await?;
    let user = state
        .ledger
        .user(caller.tenant, &UserRef::Login(login))
        .await?;
    Ok(user_answer(&state, StatusCode::CREATED, &user, &headers))
}

async fn get_user(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    let user = find_user(&state, caller.tenant, &id).await?;
    let json = project(user_json(&user, &base_url(&state, &headers)), &query)?;
    Ok(scim_json(StatusCode::OK, &json))
}

/// Stores `fields` as the user's whole state (PUT, and a PATCH after it was applied).
async fn store_user(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    user: &User,
    fields: UserFields,
) -> ScimResult<Response> {
    let active = fields.active;
    let patch = UserPatch {
        login: Some(fields.login),
        first_name: Some(fields.first_name),
        last_name: Some(fields.last_name),
        email: Some(fields.email),
        external_id: Some(fields.external_id),
        display_name: Some(fields.display_name),
        ..Default::default()
    };
    let mut commands = vec![Command::EditUser {
        user: UserRef::Id(user.id),
        patch,
    }];
    // `active` maps to the ledger's disabled user: seats released (or kept, by the tenant's
    // setting), sessions and credentials ended, the user kept; in the edit's transaction.
    if active == user.disabled {
        commands.push(if active {
            Command::EnableUser {
                user: UserRef::Id(user.id),
            }
        } else {
            Command::DisableUser {
                user: UserRef::Id(user.id),
            }
        });
    }
    run_all(state, caller, headers, &commands).await?;
    let after = state
        .ledger
        .user(caller.tenant, &UserRef::Id(user.id))
        .await?;
    Ok(user_answer(state, StatusCode::OK, &after, headers))
}

async fn replace_user(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let user = find_user(&state, caller.tenant, &id).await?;
    let body = read_body(&headers, &body).await?;
    let fields = user_fields(&body)?;
    store_user(&state, &caller, &headers, &user, fields).await
}

async fn patch_user(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let user = find_user(&state, caller.tenant, &id).await?;
    let body = read_body(&headers, &body).await?;
    let operations = patch::operations(&body, PATCH_SCHEMA)?;
    let mut json = user_json(&user, &base_url(&state, &headers));
    for operation in &operations {
        patch::apply(&mut json, operation, USER_SCHEMA)?;
    }
    let fields = user_fields(&json)?;
    store_user(&state, &caller, &headers, &user, fields).await
}

async fn delete_user(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let user = find_user(&state, caller.tenant, &id).await?;
    run(
        &state,
        &caller,
        &headers,
        Command::DeleteUser {
            user: UserRef::Id(user.id),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

fn number(name: &str, text: &Option<String>) -> ScimResult<Option<i64>> {
    match text {
        None => Ok(None),
        Some(t) => t
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be an integer"))),
    }
}

/// `attributes` / `excludedAttributes` (§3.4.2.5), by top-level attribute; `id` and
/// `schemas` are always returned.
fn project(mut json: Value, query: &ListQuery) -> ScimResult<Value> {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|a| {
                let a = a.trim();
                let local = if a.len() > 4 && a[..4].eq_ignore_ascii_case("urn:") {
                    a.rsplit(':').next().unwrap_or(a)
                } else {
                    a
                };
                local
                    .split('.')
                    .next()
                    .unwrap_or(local)
                    .to_ascii_lowercase()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let Some(object) = json.as_object_mut() else {
        return Ok(json);
    };
    let always = |k: &str| k == "id" || k == "schemas";
    if let Some(list) = query.attributes.as_deref().filter(|l| !l.trim().is_empty()) {
        let keep = names(list);
        object.retain(|k, _| always(k) || keep.contains(&k.to_ascii_lowercase()));
    } else if let Some(list) = query.excluded_attributes.as_deref() {
        let drop = names(list);
        object.retain(|k, _| always(k) || !drop.contains(&k.to_ascii_lowercase()));
    }
    Ok(json)
}

/// A SearchRequest body (§3.4.3): the list's parameters.
fn search_query(body: &Value) -> ScimResult<ListQuery> {
    let text = |name: &str| -> ScimResult<Option<String>> {
        match filter::member(body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned).ok_or(()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ScimError::bad("invalidValue", format!("{name}: strings only")))?
                    .join(","),
            )),
            Some(_) => Err(ScimError::bad(
                "invalidValue",
                format!("{name} has the wrong type"),
            )),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        start_index: text("startIndex")?,
        count: text("count")?,
        attributes: text("attributes")?,
        excluded_attributes: text("excludedAttributes")?,
    })
}

/// `POST /Users/.search` (§3.4.3): the list's parameters in a SearchRequest body.
async fn search_users(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = read_body(&headers, &body).await?;
    let query = search_query(&body)?;
    list(&state, &caller, &headers, &query).await
}

async fn list_users(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    list(&state, &caller, &headers, &query).await
}

fn parse_list_filter(query: &ListQuery) -> ScimResult<Option<filter::Filter>> {
    match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => {
            Ok(Some(filter::parse_filter(text).map_err(|e| {
                ScimError::bad("invalidFilter", format!("filter: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

/// An equality an indexed ledger lookup answers.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupKey {
    /// `id eq`: the UUID.
    Id(String),
    /// `userName eq` / a group's `displayName eq`: the name, case-insensitively.
    Name(String),
    /// `externalId eq`, case-sensitively.
    External(String),
}

/// The lookups that find every resource the filter can match, when there are such: an
/// equality on `id`, `name_attr` or `externalId`; either side of an `and`; both sides of an
/// `or`. `None`: the filter must be tested on every resource. The lookups may find more than
/// the filter matches (the filter is still applied), never less.
pub fn lookup_keys(f: &filter::Filter, name_attr: &str) -> Option<Vec<LookupKey>> {
    use filter::Filter;
    match f {
        Filter::Compare(path, filter::Op::Eq, Value::String(v)) if path.sub.is_none() => {
            let attr = path.attr.as_str();
            if attr.eq_ignore_ascii_case("id") {
                Some(vec![LookupKey::Id(v.clone())])
            } else if attr.eq_ignore_ascii_case(name_attr) {
                Some(vec![LookupKey::Name(v.clone())])
            } else if attr.eq_ignore_ascii_case("externalId") {
                Some(vec![LookupKey::External(v.clone())])
            } else {
                None
            }
        }
        Filter::And(a, b) => lookup_keys(a, name_attr).or_else(|| lookup_keys(b, name_attr)),
        Filter::Or(a, b) => {
            let mut keys = lookup_keys(a, name_attr)?;
            keys.extend(lookup_keys(b, name_attr)?);
            Some(keys)
        }
        _ => None,
    }
}

/// The users an indexed lookup finds (deleted ones too; the list leaves them out).
async fn lookup_users(
    state: &AppState,
    tenant: TenantId,
    key: &LookupKey,
) -> ScimResult<Vec<User>> {
    let one = |r: Result<User, LedgerError>| -> ScimResult<Vec<User>> {
        match r {
            Ok(u) => Ok(vec![u]),
            Err(LedgerError::UnknownUser(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    };
    match key {
        LookupKey::Id(id) => match Uuid::parse_str(id) {
            Ok(uuid) => one(state.ledger.user(tenant, &UserRef::Uuid(uuid)).await),
            Err(_) => Ok(Vec::new()),
        },
        LookupKey::Name(login) => one(state
            .ledger
            .user(tenant, &UserRef::Login(login.clone()))
            .await),
        LookupKey::External(external) => {
            Ok(state.ledger.users_by_external_id(tenant, external).await?)
        }
    }
}

/// Lists users: a filter on `id`, `userName` or `externalId` equality reads only the users
/// those indexed lookups find; other filters are tested on every user, a ledger page at a
/// time. Either way the whole filter decides.
async fn list(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    query: &ListQuery,
) -> ScimResult<Response> {
    let (start, count) = paging(query)?;
    let (total, items) = users_page(state, caller, headers, query, start, count).await?;
    Ok(list_answer(total, start, items))
}

/// `startIndex` (1-based; below 1 means 1, §3.4.2.4) and `count` (negative means 0; at most
/// [`MAX_COUNT`]).
fn paging(query: &ListQuery) -> ScimResult<(usize, usize)> {
    let start = number("startIndex", &query.start_index)?
        .unwrap_or(1)
        .max(1) as usize;
    let count = number("count", &query.count)?
        .map(|c| c.clamp(0, MAX_COUNT as i64) as usize)
        .unwrap_or(DEFAULT_COUNT);
    Ok((start, count))
}

fn list_answer(total: usize, start: usize, items: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    });
    scim_json(StatusCode::OK, &body)
}

/// `POST /.search` across every resource type: the matching users, then the matching groups,
/// as one list.
async fn search_all(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = read_body(&headers, &body).await?;
    let query = search_query(&body)?;
    let (start, count) = paging(&query)?;
    let (users, mut items) = users_page(&state, &caller, &headers, &query, start, count).await?;
    let group_start = start.saturating_sub(users).max(1);
    let (groups, more) = groups::page(
        &state,
        &caller,
        &headers,
        &query,
        group_start,
        count - items.len(),
    )
    .await?;
    items.extend(more);
    Ok(list_answer(users + groups, start, items))
}

/// The users matching the query's filter: how many, and the page from `start` of `count`.
async fn users_page(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    query: &ListQuery,
    start: usize,
    count: usize,
) -> ScimResult<(usize, Vec<Value>)> {
    let filter = parse_list_filter(query)?;
    let base = base_url(state, headers);
    let keys = filter.as_ref().and_then(|f| lookup_keys(f, "userName"));
    let mut matched: Vec<Value> = Vec::new();
    let mut total = 0usize;
    let mut after = None;
    loop {
        let page = match &keys {
            Some(keys) => {
                let mut found = Vec::new();
                for key in keys {
                    found.extend(lookup_users(state, caller.tenant, key).await?);
                }
                found.sort_by_key(|u| u.id);
                found.dedup_by_key(|u| u.id);
                found
            }
            None => {
                state
                    .ledger
                    .users(caller.tenant, after, Some(MAX_COUNT as i64))
                    .await?
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for user in &page {
            if is_deleted(user) {
                continue;
            }
            let json = user_json(user, &base);
            if filter.as_ref().is_none_or(|f| f.matches(&json)) {
                total += 1;
                if total >= start && matched.len() < count {
                    matched.push(project(json, query)?);
                }
            }
        }
        if keys.is_some() || page.len() < MAX_COUNT {
            break;
        }
    }
    Ok((total, matched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Option<Vec<LookupKey>> {
        lookup_keys(&filter::parse_filter(text).unwrap(), "userName")
    }

    #[test]
    fn equalities_that_decide_become_lookups_and_nothing_else_does() {
        use LookupKey::*;
        assert_eq!(keys(r#"userName eq "Ann""#), Some(vec![Name("Ann".into())]));
        assert_eq!(keys(r#"USERNAME eq "ann""#), Some(vec![Name("ann".into())]));
        assert_eq!(
            keys(r#"externalId eq "x" and name.familyName sw "S""#),
            Some(vec![External("x".into())])
        );
        assert_eq!(
            keys(r#"active eq true and id eq "u""#),
            Some(vec![Id("u".into())])
        );
        assert_eq!(
            keys(r#"userName eq "a" or externalId eq "b""#),
            Some(vec![Name("a".into()), External("b".into())])
        );
        // One side of an `or` unindexed, a negation, other operators: every user is tested.
        assert_eq!(keys(r#"userName eq "a" or active eq true"#), None);
        assert_eq!(keys(r#"not (userName eq "a")"#), None);
        assert_eq!(keys(r#"userName sw "a""#), None);
        assert_eq!(keys(r#"userName ne "a""#), None);
        assert_eq!(keys(r#"emails[value eq "a"]"#), None);
        assert_eq!(keys(r#"name.givenName eq "a""#), None);
    }
}
