//! Logins and API tokens (hashes only).

use super::*;

pub(super) async fn create_login(
    c: &mut Conn,
    env: &Env<'_>,
    login: &str,
    password_hash: &str,
    role: Role,
    user: Option<&UserRef>,
) -> OpResult<Outcome> {
    let login = rules::validate_name("login", login)?;
    if role == Role::Operator {
        return Err(LedgerError::Invalid {
            field: "role",
            reason: "operator logins are not bound to a tenant".into(),
        }
        .into());
    }
    if role == Role::Scim {
        return Err(LedgerError::Invalid {
            field: "role",
            reason: "a SCIM client gets a token (POST /v1/tokens), not a password login".into(),
        }
        .into());
    }
    let user = match user {
        Some(u) => Some(find_user(c, env.tenant(), u).await?.user.id),
        None if role == Role::User => {
            return Err(LedgerError::Invalid {
                field: "user",
                reason: "a login with the user role must name its user".into(),
            }
            .into());
        }
        None => None,
    };
    sqlx::query(
        "INSERT INTO logins (tenant_id, login, login_key, password_hash, role, user_id, created_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(env.tenant())
    .bind(login.clone())
    .bind(rules::name_key(&login))
    .bind(password_hash.to_owned())
    .bind(role.as_str())
    .bind(user)
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "login", &login))?;
    let info = LoginInfo { login, role, user };
    audit(
        env,
        "login.create",
        Subjects {
            user,
            ..Default::default()
        },
        json!({ "after": info }),
    )
    .await?;
    Ok(Outcome::Login(info))
}

pub(super) async fn set_password(
    c: &mut Conn,
    env: &Env<'_>,
    login: &str,
    password_hash: &str,
) -> OpResult<Outcome> {
    let key = rules::name_key(login);
    let updated = sqlx::query(
        "UPDATE logins SET password_hash = $3, password_changed_at = $4 WHERE tenant_id = $1 AND login_key = $2",
    )
    .bind(env.tenant())
    .bind(key.clone())
    .bind(password_hash.to_owned())
    .bind(env.now)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(LedgerError::UnknownUser(login.to_owned()).into());
    }
    // A new password ends every token the old one handed out.
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND lower(login) = $2 AND revoked_at IS NULL",
    )
    .bind(env.tenant())
    .bind(key)
    .bind(env.now)
    .execute(&mut *c)
    .await?
    .rows_affected();
    audit(
        env,
        "login.password",
        Subjects::default(),
        json!({ "login": login, "tokens_revoked": revoked }),
    )
    .await?;
    Ok(changed(1 + revoked))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn issue_token(
    c: &mut Conn,
    env: &Env<'_>,
    token_hash: &str,
    role: Role,
    login: &str,
    user: Option<UserId>,
    label: &str,
    expires_at: time::OffsetDateTime,
) -> OpResult<Outcome> {
    rules::validate_text("label", label)?;
    if role == Role::Operator {
        return Err(LedgerError::Invalid {
            field: "role",
            reason: "operator tokens are not bound to a tenant".into(),
        }
        .into());
    }
    if role == Role::Scim && user.is_some() {
        return Err(LedgerError::Invalid {
            field: "user",
            reason: "a SCIM token acts for the identity provider, not as a user".into(),
        }
        .into());
    }
    if let Some(uid) = user {
        // Locked on PostgreSQL, so a retirement cannot commit between this check and the insert
        // (SQLite's single writer orders them anyway).
        let lock = if env.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let flags: Option<(i64, i64)> = sqlx::query_as(sql(format!(
            "SELECT retired, disabled FROM users WHERE tenant_id = $1 AND id = $2{lock}"
        )))
        .bind(env.tenant())
        .bind(uid)
        .fetch_optional(&mut *c)
        .await?;
        match flags {
            None => return Err(LedgerError::UnknownUser(uid.to_string()).into()),
            Some((0, 0)) => {}
            Some((0, _)) => return Err(LedgerError::Disabled(uid).into()),
            Some(_) => return Err(LedgerError::Retired(uid).into()),
        }
    }
    let info = TokenInfo {
        id: Uuid::new_v4(),
        tenant: Some(env.tenant()),
        role,
        login: login.to_owned(),
        user,
        label: label.to_owned(),
        created_at: rules::from_micros(env.now),
        expires_at,
        revoked_at: None,
    };
    insert_token(c, &info, token_hash, env.now).await?;
    audit(
        env,
        "token.issue",
        Subjects {
            user,
            ..Default::default()
        },
        json!({ "after": info }),
    )
    .await?;
    Ok(Outcome::Token(info))
}

pub(crate) async fn insert_token(
    c: &mut Conn,
    info: &TokenInfo,
    token_hash: &str,
    now: i64,
) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, tenant_id, token_hash, role, login, user_id, label, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(info.id.to_string())
    .bind(info.tenant)
    .bind(token_hash.to_owned())
    .bind(info.role.as_str())
    .bind(info.login.clone())
    .bind(info.user)
    .bind(info.label.clone())
    .bind(now)
    .bind(rules::to_micros(info.expires_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn revoke_token(c: &mut Conn, env: &Env<'_>, id: Uuid) -> OpResult<Outcome> {
    let row = sqlx::query("SELECT revoked_at FROM api_tokens WHERE tenant_id = $1 AND id = $2")
        .bind(env.tenant())
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else {
        return Err(LedgerError::UnknownToken(id).into());
    };
    if row.try_get::<Option<i64>, _>(0)?.is_some() {
        return Ok(changed(0));
    }
    sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
        .bind(env.tenant())
        .bind(id.to_string())
        .bind(env.now)
        .execute(&mut *c)
        .await?;
    audit(
        env,
        "token.revoke",
        Subjects::default(),
        json!({ "token": id }),
    )
    .await?;
    Ok(changed(1))
}

/// Revokes every live credential acting as `user`; answers how many.
pub(super) async fn revoke_user_tokens(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<u64> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(env.now)
    .execute(&mut *c)
    .await?
    .rows_affected())
}

pub(crate) const TOKEN_COLUMNS: &str =
    "id, tenant_id, role, login, user_id, label, created_at, expires_at, revoked_at";

pub(crate) fn token_from_row(row: &AnyRow) -> OpResult<TokenInfo> {
    Ok(TokenInfo {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        tenant: row.try_get("tenant_id")?,
        role: parse_enum(&row.try_get::<String, _>("role")?)?,
        login: row.try_get("login")?,
        user: row.try_get("user_id")?,
        label: row.try_get("label")?,
        created_at: rules::from_micros(row.try_get("created_at")?),
        expires_at: rules::from_micros(row.try_get("expires_at")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(rules::from_micros),
    })
}
