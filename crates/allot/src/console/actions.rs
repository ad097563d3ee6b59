//! The console's forms: each runs one ledger command as the logged-in login, through the same
//! `run` and role checks as the API, then redirects back with what happened (or why the ledger
//! refused). A role refusal is answered 403 whatever the page showed; CSRF is checked before any
//! of this runs (`session::require_csrf`).

use std::str::FromStr;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::pages::{parse_uuid, tokens_page};
use super::session::{Viewer, secure};
use super::views::{ConsoleError, ConsoleResult, Flash, redirect_with};
use crate::api::error::ApiError;
use crate::state::AppState;
use allot_ledger::*;

/// A form body; a malformed one is a 400 page.
pub struct ConsoleForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ConsoleForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ConsoleError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| ConsoleForm(v))
            .map_err(|e| ConsoleError::bad_request(e.body_text()))
    }
}

/// Where a form goes back to: the console page it names (`back`), else `default`.
fn back_to(back: Option<&str>, default: String) -> String {
    match back {
        Some(b) if b.starts_with("/console") && !b.starts_with("//") && !b.contains('\\') => {
            b.to_owned()
        }
        _ => default,
    }
}

/// Runs `command` as the viewer (admins only) and redirects to `back` with `done` or the
/// ledger's refusal. A role refusal is a 403 page; nothing is changed.
async fn run_as_admin(
    state: &AppState,
    headers: &HeaderMap,
    viewer: &Viewer,
    command: Command,
    back: String,
    done: impl FnOnce(&Outcome) -> String,
) -> ConsoleResult {
    let tenant = viewer.admin()?;
    let caller = viewer.caller();
    let flash = match crate::api::v1::run(state, &caller, tenant, headers, command).await {
        Ok(outcome) => Flash::ok(done(&outcome)),
        Err(e) => refusal(e)?,
    };
    Ok(redirect_with(&back, flash, secure(state, headers)))
}

/// A rule's refusal becomes a message on the page the form came from; a role refusal or a
/// store failure is an error page.
fn refusal(e: ApiError) -> Result<Flash, ConsoleError> {
    match e.status {
        StatusCode::CONFLICT
        | StatusCode::NOT_FOUND
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::BAD_REQUEST => Ok(Flash::error(e.message)),
        _ => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ProductForm {
    product: ProductId,
    back: Option<String>,
}

async fn names(
    state: &AppState,
    tenant: TenantId,
    user: UserId,
    product: ProductId,
) -> (String, String) {
    let login = match state.ledger.user(tenant, &UserRef::Id(user)).await {
        Ok(u) => u.login,
        Err(_) => format!("user #{user}"),
    };
    let product = match state.ledger.product(tenant, &ProductRef::Id(product)).await {
        Ok(p) => p.full_name(),
        Err(_) => format!("product #{product}"),
    };
    (login, product)
}

pub async fn assign(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(user): Path<UserId>,
    ConsoleForm(form): ConsoleForm<ProductForm>,
) -> ConsoleResult {
    let (login, product) = names(&state, viewer.tenant, user, form.product).await;
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::Assign {
            user: UserRef::Id(user),
            product: ProductRef::Id(form.product),
        },
        back_to(form.back.as_deref(), format!("/console/users/{user}")),
        |o| match o.changed() {
            0 => format!("{login} already had {product}."),
            _ => format!("Assigned {product} to {login}."),
        },
    )
    .await
}

pub async fn unassign(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(user): Path<UserId>,
    ConsoleForm(form): ConsoleForm<ProductForm>,
) -> ConsoleResult {
    let (login, product) = names(&state, viewer.tenant, user, form.product).await;
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::Unassign {
            user: UserRef::Id(user),
            product: ProductRef::Id(form.product),
        },
        back_to(form.back.as_deref(), format!("/console/users/{user}")),
        |o| match o.changed() {
            0 => format!("{login} did not have {product}."),
            _ => format!("Took {product} from {login}."),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct BackForm {
    back: Option<String>,
}

pub async fn retire(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(user): Path<UserId>,
    ConsoleForm(form): ConsoleForm<BackForm>,
) -> ConsoleResult {
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::Retire {
            user: UserRef::Id(user),
        },
        back_to(form.back.as_deref(), format!("/console/users/{user}")),
        |_| "Retired: the user's licenses and sessions are gone.".to_owned(),
    )
    .await
}

pub async fn unretire(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(user): Path<UserId>,
    ConsoleForm(form): ConsoleForm<BackForm>,
) -> ConsoleResult {
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::Unretire {
            user: UserRef::Id(user),
        },
        back_to(form.back.as_deref(), format!("/console/users/{user}")),
        |_| "The user is active again.".to_owned(),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    login: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    ConsoleForm(form): ConsoleForm<NewUserForm>,
) -> ConsoleResult {
    let tenant = viewer.admin()?;
    let command = Command::CreateUser(NewUser {
        first_name: form.first_name,
        last_name: form.last_name,
        email: form.email,
        ..NewUser::named(&form.login)
    });
    let secure = secure(&state, &headers);
    match crate::api::v1::run(&state, &viewer.caller(), tenant, &headers, command).await {
        Ok(Outcome::User(user)) => Ok(redirect_with(
            &format!("/console/users/{}", user.id),
            Flash::ok(format!("Created user {}.", user.login)),
            secure,
        )),
        Ok(other) => Err(crate::api::v1::unexpected(other).into()),
        Err(e) => Ok(redirect_with("/console/users", refusal(e)?, secure)),
    }
}

pub async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
    ConsoleForm(form): ConsoleForm<BackForm>,
) -> ConsoleResult {
    let session = parse_uuid(&id)?;
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::EndSession {
            session,
            lease_token: None,
            reason: EndReason::Admin,
        },
        back_to(form.back.as_deref(), "/console/sessions".to_owned()),
        |o| match o.changed() {
            0 => "That session had already ended.".to_owned(),
            _ => "Logged the session off.".to_owned(),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct QuotaForm {
    product: ProductId,
    /// Seats; empty removes the quota.
    #[serde(default)]
    quota: String,
}

pub async fn set_quota(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(company): Path<CompanyId>,
    ConsoleForm(form): ConsoleForm<QuotaForm>,
) -> ConsoleResult {
    let back = format!("/console/companies/{company}");
    let quota = match form.quota.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                viewer.admin()?;
                return Ok(redirect_with(
                    &back,
                    Flash::error("A quota is a whole number of seats, 0 or more (empty: none)."),
                    secure(&state, &headers),
                ));
            }
        },
    };
    run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::SetCompanyQuota {
            company: CompanyRef::Id(company),
            product: ProductRef::Id(form.product),
            quota,
        },
        back.clone(),
        |_| match quota {
            Some(n) => format!("Quota set to {n}."),
            None => "Quota removed.".to_owned(),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct NewTokenForm {
    label: String,
    role: String,
    /// The user a `user` token acts as (login, id or UUID).
    #[serde(default)]
    user: String,
    #[serde(default)]
    ttl_hours: String,
}

/// Creates an API token and shows it on the answer, once (it is stored only as a hash).
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    ConsoleForm(form): ConsoleForm<NewTokenForm>,
) -> ConsoleResult {
    let tenant = viewer.admin()?;
    let secure = secure(&state, &headers);
    let back = |text: String| Ok(redirect_with("/console/tokens", Flash::error(text), secure));
    let role = match Role::from_str(form.role.trim()) {
        Ok(role) if role != Role::Operator => role,
        _ => return back("Choose a role: admin, reader or user.".into()),
    };
    let user = match (role, form.user.trim()) {
        (_, "") if role == Role::User => return back("A user token names its user.".into()),
        (_, "") => None,
        (_, text) => match state
            .ledger
            .user(tenant, &crate::api::extract::user_ref(text))
            .await
        {
            Ok(u) => Some(u.id),
            Err(e) => return back(e.to_string()),
        },
    };
    let hours = match form.ttl_hours.trim() {
        "" => 720,
        text => match text.parse::<i64>() {
            Ok(h) if (1..=24 * 366).contains(&h) => h,
            _ => return back("Hours valid: a whole number from 1 to 8784.".into()),
        },
    };
    let (secret, hash) = crate::auth::new_token();
    let command = Command::IssueToken {
        token_hash: hash,
        role,
        login: viewer.principal.login.clone(),
        user,
        label: form.label,
        expires_at: state.ledger.now_time() + time::Duration::hours(hours),
    };
    match crate::api::v1::run(&state, &viewer.caller(), tenant, &headers, command).await {
        Ok(Outcome::Token(info)) => {
            let mut response = tokens_page(&state, &headers, &viewer, Some((secret, info))).await?;
            *response.status_mut() = StatusCode::CREATED;
            Ok(response)
        }
        Ok(other) => Err(crate::api::v1::unexpected(other).into()),
        Err(e) => back(refusal(e)?.text),
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
) -> ConsoleResult {
    let id = parse_uuid(&id)?;
    let own = viewer.principal.token == Some(id);
    let response = run_as_admin(
        &state,
        &headers,
        &viewer,
        Command::RevokeToken { id },
        if own {
            "/console/login".to_owned()
        } else {
            "/console/tokens".to_owned()
        },
        |o| match o.changed() {
            0 => "That token was already revoked.".to_owned(),
            _ if own => "You revoked this session's own token: you are logged out.".to_owned(),
            _ => "Token revoked.".to_owned(),
        },
    )
    .await?;
    Ok(response)
}

/// A 404 page for console paths nobody serves.
pub async fn not_found() -> Response {
    ConsoleError::Page {
        status: StatusCode::NOT_FOUND,
        title: "Not found",
        message: "There is no such page in the console.".into(),
        retry_after: None,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::back_to;

    #[test]
    fn forms_go_back_only_to_console_pages() {
        assert_eq!(
            back_to(Some("/console/users"), "/x".into()),
            "/console/users"
        );
        assert_eq!(back_to(Some("https://evil.example"), "/x".into()), "/x");
        assert_eq!(back_to(Some("//evil.example"), "/x".into()), "/x");
        assert_eq!(back_to(None, "/x".into()), "/x");
    }
}
