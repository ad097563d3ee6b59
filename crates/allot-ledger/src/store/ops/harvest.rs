//! Idle seats: when a held seat was last used, the per-product policies that reclaim seats
//! nobody uses, and the one command that reclaims a seat (only if it is still idle).
//!
//! A seat's last use is the latest of: when it was taken (`held_since`), its `last_used_at`
//! (written by a log-on of its holder, the end of a holder's session, an activation, a license
//! file fetched: only when over an hour old, see [`touch_user_seats`]), and the last heartbeat
//! of any live session of its holder. Heartbeats themselves write nothing more: the session row
//! they already update is what the harvest reads.

use super::*;

/// The SQL of "greatest of these values" on each engine.
fn greatest(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "GREATEST",
        Backend::Sqlite => "MAX",
    }
}

/// A seat's last use (microseconds), as an SQL expression over `seats s`.
pub(crate) fn last_use_sql(backend: Backend) -> String {
    let greatest = greatest(backend);
    format!(
        "{greatest}(s.held_since, COALESCE(s.last_used_at, 0), COALESCE((SELECT max(x.last_heartbeat_at) \
           FROM sessions x WHERE x.tenant_id = s.tenant_id AND x.user_id = s.holder_id \
           AND x.ended_at IS NULL), 0))"
    )
}

/// Records a use at `at` of the user's held seats (or one of them), writing only rows whose
/// stored use is older than the granularity: a user who uses the product all day costs one
/// write an hour, not one per call.
pub(super) async fn touch_user_seats(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    seat: Option<i64>,
    at: i64,
) -> OpResult<u64> {
    let seat_clause = if seat.is_some() {
        "AND number = $5"
    } else {
        ""
    };
    let query = sqlx::query(sql(format!(
        "UPDATE seats SET last_used_at = $3 WHERE tenant_id = $1 AND holder_id = $2 \
           AND {}(held_since, COALESCE(last_used_at, 0)) < $4 {seat_clause}",
        greatest(env.backend)
    )))
    .bind(env.tenant())
    .bind(user)
    .bind(at)
    .bind(at - rules::USE_GRANULARITY_MICROS);
    let query = match seat {
        Some(number) => query.bind(number),
        None => query,
    };
    Ok(query.execute(&mut *c).await?.rows_affected())
}

pub(super) async fn record_use(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    seat: Option<Uuid>,
) -> OpResult<Outcome> {
    // Locked like every other change to the user's holdings, so a harvest deciding this
    // user's seat is idle either sees this use or runs entirely before it.
    let user = find_user_locked(c, env, user).await?;
    let number = match seat {
        Some(seat) => Some(find_seat(c, env.tenant(), seat).await?.seat.number),
        None => None,
    };
    let n = touch_user_seats(c, env, user.user.id, number, env.now).await?;
    Ok(changed(n))
}

pub(super) async fn set_harvest_policy(
    c: &mut Conn,
    env: &Env<'_>,
    product: &ProductRef,
    policy: Option<HarvestPolicy>,
) -> OpResult<Outcome> {
    let product = find_product(c, env.tenant(), product).await?;
    if product.product.kind != ProductKind::User {
        return Err(LedgerError::WrongKind {
            kind: product.product.kind,
            action: "harvested (only user products' seats are held between uses)",
        }
        .into());
    }
    let before = sqlx::query(
        "SELECT idle_days, action FROM harvest_policies WHERE tenant_id = $1 AND product_id = $2",
    )
    .bind(env.tenant())
    .bind(product.id())
    .fetch_optional(&mut *c)
    .await?
    .map(|row| -> OpResult<HarvestPolicy> {
        Ok(HarvestPolicy {
            idle_days: row.try_get("idle_days")?,
            action: parse_enum(&row.try_get::<String, _>("action")?)?,
        })
    })
    .transpose()?;
    if before == policy {
        return Ok(changed(0));
    }
    match policy {
        Some(policy) => {
            rules::validate_idle_days(policy.idle_days)?;
            sqlx::query(
                "INSERT INTO harvest_policies (tenant_id, product_id, idle_days, action) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, product_id) \
                 DO UPDATE SET idle_days = excluded.idle_days, action = excluded.action",
            )
            .bind(env.tenant())
            .bind(product.id())
            .bind(policy.idle_days)
            .bind(policy.action.as_str())
            .execute(&mut *c)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM harvest_policies WHERE tenant_id = $1 AND product_id = $2")
                .bind(env.tenant())
                .bind(product.id())
                .execute(&mut *c)
                .await?;
        }
    }
    audit(
        env,
        "harvest.policy",
        Subjects {
            product: Some(product.id()),
            ..Default::default()
        },
        json!({ "before": before, "after": policy }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn set_harvest_exempt(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    exempt: bool,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let n = if exempt {
        sqlx::query(
            "INSERT INTO harvest_exempt_users (tenant_id, user_id) VALUES ($1, $2) \
             ON CONFLICT (tenant_id, user_id) DO NOTHING",
        )
    } else {
        sqlx::query("DELETE FROM harvest_exempt_users WHERE tenant_id = $1 AND user_id = $2")
    }
    .bind(env.tenant())
    .bind(user.user.id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(changed(0));
    }
    audit(
        env,
        "harvest.exempt",
        Subjects {
            user: Some(user.user.id),
            ..Default::default()
        },
        json!({ "after": { "exempt": exempt } }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn set_harvest_exempt_group(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    exempt: bool,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let n = if exempt {
        sqlx::query(
            "INSERT INTO harvest_exempt_groups (tenant_id, group_id) VALUES ($1, $2) \
             ON CONFLICT (tenant_id, group_id) DO NOTHING",
        )
    } else {
        sqlx::query("DELETE FROM harvest_exempt_groups WHERE tenant_id = $1 AND group_id = $2")
    }
    .bind(env.tenant())
    .bind(group.id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(changed(0));
    }
    audit(
        env,
        "harvest.exempt_group",
        Subjects::default(),
        json!({ "group": group.id, "group_name": group.name, "after": { "exempt": exempt } }),
    )
    .await?;
    Ok(changed(1))
}

/// Why the harvest leaves a holder's seats alone, as an SQL expression over `s.holder_id`:
/// `user` (the user is exempt), `group:<name>` (a group it belongs to is; the first by name),
/// or NULL.
pub(crate) fn exemption_sql() -> &'static str {
    "COALESCE((SELECT 'user' FROM harvest_exempt_users e \
        WHERE e.tenant_id = s.tenant_id AND e.user_id = s.holder_id), \
      (SELECT 'group:' || g.name FROM harvest_exempt_groups eg \
        JOIN group_members m ON m.tenant_id = eg.tenant_id AND m.group_id = eg.group_id \
        JOIN user_groups g ON g.tenant_id = eg.tenant_id AND g.id = eg.group_id \
        WHERE eg.tenant_id = s.tenant_id AND m.user_id = s.holder_id \
        ORDER BY g.name_key LIMIT 1))"
}

/// Releases a seat the harvest listed, re-deciding everything after its holder is locked: the
/// product's policy (still release, its idle days), the holder's exemption, and the seat's last
/// use. Anything that changed since the listing wins: the answer is then changed 0.
pub(super) async fn harvest_seat(c: &mut Conn, env: &Env<'_>, seat_id: Uuid) -> OpResult<Outcome> {
    let (seat, holder) = find_seat_locked(c, env, seat_id).await?;
    let Some(holder) = holder else {
        return Ok(changed(0));
    };
    // Floating seats belong to their sessions; leases reclaim them.
    if seat.seat.session.is_some() {
        return Ok(changed(0));
    }
    let policy = sqlx::query(
        "SELECT idle_days, action FROM harvest_policies WHERE tenant_id = $1 AND product_id = $2",
    )
    .bind(env.tenant())
    .bind(seat.seat.product)
    .fetch_optional(&mut *c)
    .await?;
    let Some(policy) = policy else {
        return Ok(changed(0));
    };
    let idle_days: i64 = policy.try_get("idle_days")?;
    let action: HarvestAction = parse_enum(&policy.try_get::<String, _>("action")?)?;
    if action != HarvestAction::Release {
        return Ok(changed(0));
    }
    // The holder is locked, so its memberships (and exemption) cannot change under us; a
    // group's exemption set meanwhile is seen once committed, as any other policy change.
    let exempt: Option<String> = sqlx::query_scalar(sql(format!(
        "SELECT {} FROM seats s WHERE s.tenant_id = $1 AND s.number = $2",
        exemption_sql()
    )))
    .bind(env.tenant())
    .bind(seat.seat.number)
    .fetch_one(&mut *c)
    .await?;
    if exempt.is_some() {
        return Ok(changed(0));
    }
    let last_use: Option<i64> = sqlx::query_scalar(sql(format!(
        "SELECT {} FROM seats s WHERE s.tenant_id = $1 AND s.number = $2 AND s.holder_id = $3",
        last_use_sql(env.backend)
    )))
    .bind(env.tenant())
    .bind(seat.seat.number)
    .bind(holder.user.id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(last_use) = last_use else {
        return Ok(changed(0));
    };
    let cutoff = env.now - idle_days * rules::MICROS_PER_DAY;
    if last_use > cutoff {
        // Used since the listing (or never idle): the use wins.
        return Ok(changed(0));
    }
    let why = json!({
        "reason": "idle",
        "last_used_at": last_use,
        "idle_days": (env.now - last_use) / rules::MICROS_PER_DAY,
        "policy_idle_days": idle_days,
    });
    let n = release_held_seat_because(c, env, &seat, Some(why)).await?;
    Ok(changed(n))
}
