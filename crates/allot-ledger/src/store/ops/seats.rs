//! Individual seats (MSP360 Grant / Release / Revoke) and activation.

use super::*;

/// Loads a seat and locks its holder (if any) the way `find_user_locked` does, then re-reads
/// the seat so that what the caller sees cannot change under it.
pub(super) async fn find_seat_locked(
    c: &mut Conn,
    env: &Env<'_>,
    seat: Uuid,
) -> OpResult<(SeatRow, Option<UserRow>)> {
    let first = find_seat(c, env.tenant(), seat).await?;
    let Some(holder) = first.seat.holder else {
        return Ok((first, None));
    };
    let user = find_user_locked(c, env, &UserRef::Id(holder)).await?;
    let seat_row = find_seat(c, env.tenant(), seat).await?;
    if seat_row.seat.holder != Some(holder) {
        // The holder changed between the two reads (it cannot change again now): retry
        // the command's transaction from the start.
        return Err(OpError::Store(crate::error::StoreError::Contended));
    }
    Ok((seat_row, Some(user)))
}

/// When the caller named a user, the seat must be that user's.
pub(super) fn require_holder(seat: &SeatRow, named: Option<&UserRow>) -> OpResult<()> {
    if let (Some(named), Some(holder)) = (named, seat.seat.holder)
        && named.user.id != holder
    {
        return Err(LedgerError::WrongHolder { seat: seat.seat.id }.into());
    }
    Ok(())
}

pub(super) async fn grant_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat_id: Uuid,
    user: &UserRef,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let seat = find_seat(c, env.tenant(), seat_id).await?;
    let product = find_product(c, env.tenant(), &ProductRef::Id(seat.seat.product)).await?;
    if product.product.kind != ProductKind::User {
        return Err(LedgerError::WrongKind {
            kind: product.product.kind,
            action: "granted to a user",
        }
        .into());
    }
    match seat.seat.holder {
        Some(holder) if holder == user.user.id => return Ok(changed(0)),
        Some(_) => return Err(LedgerError::WrongHolder { seat: seat_id }.into()),
        None => {}
    }
    require_active(&user)?;
    if seat.expired(env.now) {
        return Err(LedgerError::SeatExpired(seat_id).into());
    }
    if product.expired(env.now) {
        return Err(LedgerError::ProductExpired {
            product: product.id(),
            name: product.product.full_name(),
        }
        .into());
    }
    require_prerequisite(c, env, user.user.id, &product.product).await?;
    // The seat must be in a pool the user may take from.
    let charge = match (user.pool(), seat.seat.pool_company) {
        (Pool::Global, None) => None,
        (Pool::Company(company), Some(pool)) if company == pool => None,
        (Pool::Company(company), None) => {
            if !charge_quota(c, env, company, product.id()).await? {
                return Err(if has_quota(c, env, company, product.id()).await? {
                    LedgerError::QuotaExhausted {
                        product: product.id(),
                        name: product.product.full_name(),
                    }
                } else {
                    LedgerError::WrongPool {
                        seat: seat_id,
                        user: user.user.id,
                    }
                }
                .into());
            }
            Some(company)
        }
        _ => {
            return Err(LedgerError::WrongPool {
                seat: seat_id,
                user: user.user.id,
            }
            .into());
        }
    };
    let claimed = sqlx::query(
        "UPDATE seats SET holder_id = $3, held_since = $4, charged_company_id = $5 \
         WHERE tenant_id = $1 AND number = $2 AND holder_id IS NULL",
    )
    .bind(env.tenant())
    .bind(seat.seat.number)
    .bind(user.user.id)
    .bind(env.now)
    .bind(charge)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if claimed == 0 {
        // Taken by a concurrent transaction after it was read.
        return Err(LedgerError::WrongHolder { seat: seat_id }.into());
    }
    add_grant(c, env, user.user.id, product.id(), product.id()).await?;
    seat_now_held(c, env, user.user.id, product.id()).await?;
    audit(env,
        "seat.grant",
        Subjects {
            user: Some(user.user.id),
            product: Some(product.id()),
            seat: Some(seat_id),
            ..Default::default()
        },
        json!({ "before": { "holder": null }, "after": { "holder": user.user.id }, "charged_company": charge }),
    )
    .await?;
    let seat = seat_by_number(c, env.tenant(), seat.seat.number)
        .await?
        .seat;
    Ok(Outcome::Seat(seat))
}

pub(super) async fn release_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat_id: Uuid,
    user: Option<&UserRef>,
) -> OpResult<Outcome> {
    let named = match user {
        Some(u) => Some(find_user(c, env.tenant(), u).await?),
        None => None,
    };
    let (seat, holder) = find_seat_locked(c, env, seat_id).await?;
    if holder.is_none() {
        return Ok(changed(0));
    }
    require_holder(&seat, named.as_ref())?;
    let n = release_held_seat(c, env, &seat).await?;
    Ok(changed(n))
}

pub(super) async fn revoke_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat_id: Uuid,
    user: Option<&UserRef>,
) -> OpResult<Outcome> {
    let named = match user {
        Some(u) => Some(find_user(c, env.tenant(), u).await?),
        None => None,
    };
    let (seat, holder) = find_seat_locked(c, env, seat_id).await?;
    let Some(holder) = holder else {
        return Ok(changed(0));
    };
    require_holder(&seat, named.as_ref())?;
    if rules::revoke_clears_holder(holder.user.license_mode, holder.company_mode) {
        let n = release_held_seat(c, env, &seat).await?;
        return Ok(changed(n));
    }
    let Some(activation) = &seat.seat.activation else {
        return Ok(changed(0));
    };
    sqlx::query(
        "UPDATE seats SET activation_hid = NULL, activation_name = NULL, activation_os = NULL \
         WHERE tenant_id = $1 AND number = $2",
    )
    .bind(env.tenant())
    .bind(seat.seat.number)
    .execute(&mut *c)
    .await?;
    audit(env,
        "seat.revoke",
        Subjects {
            user: Some(holder.user.id),
            product: Some(seat.seat.product),
            seat: Some(seat_id),
            ..Default::default()
        },
        json!({ "before": { "activation": activation }, "after": { "activation": null, "holder": holder.user.id } }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn activate_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat_id: Uuid,
    activation: &Activation,
    user: Option<&UserRef>,
) -> OpResult<Outcome> {
    let hid = rules::validate_name("hardware_id", &activation.hardware_id)?;
    rules::validate_text("computer_name", &activation.computer_name)?;
    rules::validate_text("operating_system", &activation.operating_system)?;
    let named = match user {
        Some(u) => Some(find_user(c, env.tenant(), u).await?),
        None => None,
    };
    let (seat, holder) = find_seat_locked(c, env, seat_id).await?;
    let Some(holder) = holder else {
        return Err(LedgerError::NotHeld(seat_id).into());
    };
    // Checked on the locked holder, so the seat cannot pass to someone else before the update.
    require_holder(&seat, named.as_ref())?;
    if seat.expired(env.now) {
        return Err(LedgerError::SeatExpired(seat_id).into());
    }
    match &seat.seat.activation {
        Some(a) if a.hardware_id == hid => return Ok(changed(0)),
        Some(_) => return Err(LedgerError::AlreadyActivated { seat: seat_id }.into()),
        None => {}
    }
    let owner: Option<Option<i64>> =
        sqlx::query_scalar("SELECT user_id FROM computers WHERE tenant_id = $1 AND hid = $2")
            .bind(env.tenant())
            .bind(hid.clone())
            .fetch_optional(&mut *c)
            .await?;
    match owner {
        Some(Some(owner)) if owner != holder.user.id => {
            return Err(LedgerError::ComputerOfAnotherUser(hid).into());
        }
        Some(_) => {}
        None => {
            sqlx::query(
                "INSERT INTO computers (tenant_id, hid, name, os, user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(env.tenant())
            .bind(hid.clone())
            .bind(activation.computer_name.clone())
            .bind(activation.operating_system.clone())
            .bind(holder.user.id)
            .bind(env.now)
            .execute(&mut *c)
            .await?;
        }
    }
    let result = sqlx::query(
        "UPDATE seats SET activation_hid = $3, activation_name = $4, activation_os = $5, \
           last_used_at = $7 \
         WHERE tenant_id = $1 AND number = $2 AND activation_hid IS NULL AND holder_id = $6",
    )
    .bind(env.tenant())
    .bind(seat.seat.number)
    .bind(hid.clone())
    .bind(activation.computer_name.clone())
    .bind(activation.operating_system.clone())
    .bind(holder.user.id)
    .bind(env.now)
    .execute(&mut *c)
    .await;
    match result {
        Ok(r) if r.rows_affected() == 1 => {}
        // The seat changed after it was read (the holder's lock should prevent it): start over.
        Ok(_) => return Err(OpError::Store(crate::error::StoreError::Contended)),
        Err(e) if is_unique_violation(&e) => return Err(LedgerError::ComputerHasSeat(hid).into()),
        Err(e) => return Err(e.into()),
    }
    let activation = Activation {
        hardware_id: hid,
        computer_name: activation.computer_name.clone(),
        operating_system: activation.operating_system.clone(),
    };
    audit(
        env,
        "seat.activate",
        Subjects {
            user: Some(holder.user.id),
            product: Some(seat.seat.product),
            seat: Some(seat_id),
            ..Default::default()
        },
        json!({ "before": { "activation": null }, "after": { "activation": activation } }),
    )
    .await?;
    Ok(Outcome::Seat(
        seat_by_number(c, env.tenant(), seat.seat.number)
            .await?
            .seat,
    ))
}

pub(super) async fn register_computer(
    c: &mut Conn,
    env: &Env<'_>,
    hid: &str,
    name: &str,
    os: &str,
    user: Option<&UserRef>,
) -> OpResult<Outcome> {
    let hid = rules::validate_name("hardware_id", hid)?;
    rules::validate_text("name", name)?;
    rules::validate_text("operating_system", os)?;
    let user = match user {
        Some(u) => Some(find_user_locked(c, env, u).await?.user.id),
        None => None,
    };
    let before =
        sqlx::query("SELECT name, os, user_id FROM computers WHERE tenant_id = $1 AND hid = $2")
            .bind(env.tenant())
            .bind(hid.clone())
            .fetch_optional(&mut *c)
            .await?;
    let computer = Computer {
        hardware_id: hid.clone(),
        name: name.to_owned(),
        operating_system: os.to_owned(),
        user,
    };
    let previous = match &before {
        Some(row) => {
            let prev = Computer {
                hardware_id: hid.clone(),
                name: row.try_get("name")?,
                operating_system: row.try_get("os")?,
                user: row.try_get("user_id")?,
            };
            if prev == computer {
                return Ok(changed(0));
            }
            Some(prev)
        }
        None => None,
    };
    sqlx::query(
        "INSERT INTO computers (tenant_id, hid, name, os, user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, hid) DO UPDATE SET name = excluded.name, os = excluded.os, user_id = excluded.user_id",
    )
    .bind(env.tenant())
    .bind(hid.clone())
    .bind(name.to_owned())
    .bind(os.to_owned())
    .bind(user)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    // A computer handed to someone else keeps no activation of its previous user's seats.
    let mut deactivated = 0;
    if let Some(prev) = &previous
        && prev.user.is_some()
        && prev.user != user
    {
        deactivated = sqlx::query(
            "UPDATE seats SET activation_hid = NULL, activation_name = NULL, activation_os = NULL \
             WHERE tenant_id = $1 AND activation_hid = $2",
        )
        .bind(env.tenant())
        .bind(hid.clone())
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    audit(
        env,
        "computer.register",
        Subjects {
            user,
            ..Default::default()
        },
        json!({ "before": previous, "after": computer, "activations_cleared": deactivated }),
    )
    .await?;
    Ok(Outcome::Computer(computer))
}
