//! Sessions and floating seats.

use super::*;

pub(crate) const SESSION_COLUMNS: &str = "uuid, number, user_id, client, device, product_id, started_at, \
     last_heartbeat_at, lease_expires_at, lease_token_hash, ended_at, end_reason";

pub(crate) fn session_from_row(row: &AnyRow) -> OpResult<(Session, String)> {
    let ended_at: Option<i64> = row.try_get("ended_at")?;
    let end_reason: Option<String> = row.try_get("end_reason")?;
    Ok((
        Session {
            id: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
            number: row.try_get("number")?,
            user: row.try_get("user_id")?,
            client: parse_enum(&row.try_get::<String, _>("client")?)?,
            device: row.try_get("device")?,
            product: row.try_get("product_id")?,
            started_at: rules::from_micros(row.try_get("started_at")?),
            last_heartbeat_at: rules::from_micros(row.try_get("last_heartbeat_at")?),
            lease_expires_at: rules::from_micros(row.try_get("lease_expires_at")?),
            ended_at: ended_at.map(rules::from_micros),
            end_reason: end_reason.as_deref().map(parse_enum).transpose()?,
        },
        row.try_get("lease_token_hash")?,
    ))
}

pub(super) async fn find_session(
    c: &mut Conn,
    env: &Env<'_>,
    session: Uuid,
) -> OpResult<(Session, String)> {
    let row = sqlx::query(sql(format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND uuid = $2"
    )))
    .bind(env.tenant())
    .bind(session.to_string())
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => session_from_row(&row),
        None => Err(LedgerError::UnknownSession(session).into()),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn log_on(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    client: ClientKind,
    device: &str,
    product: Option<&ProductRef>,
    lease_seconds: i64,
) -> OpResult<Outcome> {
    rules::validate_lease(lease_seconds)?;
    rules::validate_text("device", device)?;
    let user = find_user_locked(c, env, user).await?;
    require_active(&user)?;
    let product = match product {
        Some(p) => {
            let p = find_product(c, env.tenant(), p).await?;
            if p.product.kind != ProductKind::Floating {
                return Err(LedgerError::WrongKind {
                    kind: p.product.kind,
                    action: "taken by a session (only floating products are)",
                }
                .into());
            }
            require_prerequisite(c, env, user.user.id, &p.product).await?;
            Some(p)
        }
        None => None,
    };
    let id = Uuid::new_v4();
    let number = bump_counter(c, env.tenant(), "last_session_number", 1).await?;
    let token = rules::new_lease_token();
    let expires = env.now + lease_seconds * 1_000_000;
    sqlx::query(
        "INSERT INTO sessions (tenant_id, uuid, user_id, client, device, product_id, started_at, \
           last_heartbeat_at, lease_expires_at, lease_token_hash, number) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
    )
    .bind(env.tenant())
    .bind(id.to_string())
    .bind(user.user.id)
    .bind(client.as_str())
    .bind(device.to_owned())
    .bind(product.as_ref().map(|p| p.id()))
    .bind(env.now)
    .bind(expires)
    .bind(rules::hash_token(&token))
    .bind(number)
    .execute(&mut *c)
    .await?;
    let mut seat = None;
    if let Some(product) = &product {
        // Seats of sessions whose lease lapsed are up for grabs: end those sessions first.
        expire_sessions(c, env, Some(product.id())).await?;
        seat = Some(take_seat(c, env, &user, product, Some(id)).await?.uuid);
    }
    audit(
        env,
        "session.logon",
        Subjects {
            user: Some(user.user.id),
            product: product.as_ref().map(|p| p.id()),
            seat,
            session: Some(id),
            ..Default::default()
        },
        json!({ "after": { "client": client, "device": device, "lease_expires_at": expires } }),
    )
    .await?;
    // A log-on is a use of every seat the user holds (written at most hourly per seat).
    touch_user_seats(c, env, user.user.id, None, env.now).await?;
    let (session, _) = find_session(c, env, id).await?;
    Ok(Outcome::Lease(Lease {
        session,
        lease_token: token,
        seat,
    }))
}

/// Renews a lease. Fencing: the renewal is one conditional UPDATE on the session row, which
/// whoever takes a lapsed session's seat must end first; so once the seat has gone elsewhere
/// the old holder can never renew, whatever it presents.
pub(super) async fn heartbeat(
    c: &mut Conn,
    env: &Env<'_>,
    session: Uuid,
    token: &str,
    lease_seconds: i64,
) -> OpResult<Outcome> {
    rules::validate_lease(lease_seconds)?;
    let (found, hash) = find_session(c, env, session).await?;
    if !rules::hashes_match(&hash, &rules::hash_token(token)) {
        return Err(LedgerError::BadLeaseToken.into());
    }
    if found.ended_at.is_some() {
        return Err(LedgerError::LeaseLost.into());
    }
    let expires = env.now + lease_seconds * 1_000_000;
    let renewed = sqlx::query(
        "UPDATE sessions SET last_heartbeat_at = $3, lease_expires_at = $4 \
         WHERE tenant_id = $1 AND uuid = $2 AND ended_at IS NULL AND lease_token_hash = $5",
    )
    .bind(env.tenant())
    .bind(session.to_string())
    .bind(env.now)
    .bind(expires)
    .bind(hash)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if renewed == 0 {
        return Err(LedgerError::LeaseLost.into());
    }
    // Not audited: a renewal only moves a lease's end, it changes no holding.
    let (session, _) = find_session(c, env, session).await?;
    let seat: Option<String> =
        sqlx::query_scalar("SELECT uuid FROM seats WHERE tenant_id = $1 AND session_uuid = $2")
            .bind(env.tenant())
            .bind(session.id.to_string())
            .fetch_optional(&mut *c)
            .await?;
    Ok(Outcome::Lease(Lease {
        session,
        lease_token: token.to_owned(),
        seat: seat.as_deref().map(parse_uuid).transpose()?,
    }))
}

/// Ends one live session and frees its floating seat. Returns false if it had already ended.
pub(super) async fn end_session(
    c: &mut Conn,
    env: &Env<'_>,
    session: Uuid,
    reason: EndReason,
) -> OpResult<bool> {
    #[derive(sqlx::FromRow)]
    struct Ended {
        user_id: UserId,
        product_id: Option<ProductId>,
        last_heartbeat_at: i64,
    }
    let ended: Option<Ended> = sqlx::query_as(
        "UPDATE sessions SET ended_at = $3, end_reason = $4 \
         WHERE tenant_id = $1 AND uuid = $2 AND ended_at IS NULL \
         RETURNING user_id, product_id, last_heartbeat_at",
    )
    .bind(env.tenant())
    .bind(session.to_string())
    .bind(env.now)
    .bind(reason.as_str())
    .fetch_optional(&mut *c)
    .await?;
    let Some(Ended {
        user_id: user,
        product_id: product,
        last_heartbeat_at,
    }) = ended
    else {
        return Ok(false);
    };
    // While live, the session's heartbeats counted as uses of the user's seats (the harvest
    // reads them); once it ends, its last heartbeat is kept on the seats instead.
    touch_user_seats(c, env, user, None, last_heartbeat_at).await?;
    #[derive(sqlx::FromRow)]
    struct SessionSeat {
        number: i64,
        uuid: String,
    }
    let seat: Option<SessionSeat> =
        sqlx::query_as("SELECT number, uuid FROM seats WHERE tenant_id = $1 AND session_uuid = $2")
            .bind(env.tenant())
            .bind(session.to_string())
            .fetch_optional(&mut *c)
            .await?;
    if let Some(seat) = &seat {
        free_seat(c, env, seat.number).await?;
    }
    audit(
        env,
        "session.end",
        Subjects {
            user: Some(user),
            product,
            seat: seat.as_ref().map(|s| parse_uuid(&s.uuid)).transpose()?,
            session: Some(session),
            ..Default::default()
        },
        json!({ "after": { "ended": true, "reason": reason } }),
    )
    .await?;
    Ok(true)
}

/// Ends every live session of a user (or all users), of one client kind (or all).
pub(super) async fn end_live_sessions(
    c: &mut Conn,
    env: &Env<'_>,
    user: Option<UserId>,
    client: Option<ClientKind>,
    reason: EndReason,
) -> OpResult<u64> {
    // One user's sessions are found through the live-sessions index; `($2 IS NULL OR ...)`
    // would make the planner walk every live session of the tenant instead.
    let user_clause = if user.is_some() {
        "user_id = $2"
    } else {
        "$2 IS NULL"
    };
    let ids: Vec<String> = sqlx::query_scalar(sql(format!(
        "SELECT uuid FROM sessions WHERE tenant_id = $1 AND ended_at IS NULL \
           AND {user_clause} AND ($3 IS NULL OR client = $3) ORDER BY started_at, uuid"
    )))
    .bind(env.tenant())
    .bind(user)
    .bind(client.map(|c| c.as_str()))
    .fetch_all(&mut *c)
    .await?;
    let mut ended = 0;
    for id in ids {
        if end_session(c, env, parse_uuid(&id)?, reason).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

pub(super) async fn log_off(
    c: &mut Conn,
    env: &Env<'_>,
    users: &[UserRef],
    client: Option<ClientKind>,
    reason: EndReason,
) -> OpResult<Outcome> {
    let mut ended = 0;
    for user in users {
        let user = find_user(c, env.tenant(), user).await?;
        ended += end_live_sessions(c, env, Some(user.user.id), client, reason).await?;
    }
    Ok(changed(ended))
}

pub(super) async fn end_session_command(
    c: &mut Conn,
    env: &Env<'_>,
    session: Uuid,
    token: Option<&str>,
    reason: EndReason,
) -> OpResult<Outcome> {
    let (found, hash) = find_session(c, env, session).await?;
    if let Some(token) = token
        && !rules::hashes_match(&hash, &rules::hash_token(token))
    {
        return Err(LedgerError::BadLeaseToken.into());
    }
    if found.ended_at.is_some() {
        return Ok(changed(0));
    }
    Ok(changed(end_session(c, env, session, reason).await? as u64))
}

/// Ends sessions whose lease has lapsed (of one product, or all), freeing their seats.
pub(super) async fn expire_sessions(
    c: &mut Conn,
    env: &Env<'_>,
    product: Option<ProductId>,
) -> OpResult<u64> {
    let ids: Vec<String> = sqlx::query_scalar(sql(format!(
        "SELECT uuid FROM sessions WHERE tenant_id = $1 AND ended_at IS NULL AND lease_expires_at <= $2 \
           AND ($3 IS NULL OR product_id = $3) ORDER BY lease_expires_at, uuid{}",
        env.skip_locked()
    )))
    .bind(env.tenant())
    .bind(env.now)
    .bind(product)
    .fetch_all(&mut *c)
    .await?;
    let mut ended = 0;
    for id in ids {
        if end_session(c, env, parse_uuid(&id)?, EndReason::Expiry).await? {
            ended += 1;
        }
    }
    Ok(ended)
}
