//! Assigning products to users, taking them away, retirement.

use super::*;

pub(super) async fn add_grant(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
    via: ProductId,
) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO grants (tenant_id, user_id, product_id, via_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(via)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn has_grant(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
    via: Option<ProductId>,
) -> OpResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM grants WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3 \
           AND ($4 IS NULL OR via_id = $4)",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(via)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

/// Gives the user a seat of `product` for the reason `via`, unless it already holds one.
/// Returns the seat taken, if any, with its product. The caller has applied `rules::assignment`
/// (prerequisites).
pub(super) async fn grant_product(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    via: ProductId,
) -> OpResult<Option<(TakenSeat, ProductId)>> {
    let held = has_unexpired_seat(c, env, user.user.id, product.id()).await?;
    add_grant(c, env, user.user.id, product.id(), via).await?;
    if held {
        return Ok(None);
    }
    let taken = take_seat(c, env, user, product, None).await?;
    seat_now_held(c, env, user.user.id, product.id()).await?;
    Ok(Some((taken, product.id())))
}

pub(super) async fn has_unexpired_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats WHERE tenant_id = $1 AND holder_id = $2 AND product_id = $3 \
           AND session_uuid IS NULL AND (expires_at IS NULL OR expires_at > $4)",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(env.now)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

pub(super) async fn assign(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    product: &ProductRef,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let product = find_product(c, env.tenant(), product).await?;
    let uid = user.user.id;
    if product.product.kind == ProductKind::User {
        require_enabled(&user)?;
    }
    // What the rule needs: a plan's members, and which prerequisites the user holds (its row is
    // locked, so its holdings cannot change before the seats are taken).
    let mut members = Vec::new();
    if product.product.kind == ProductKind::User && product.product.is_user_plan() {
        for member in &product.product.plan_members {
            members.push(find_product(c, env.tenant(), &ProductRef::Id(*member)).await?);
        }
    }
    let mut held = Vec::new();
    for p in std::iter::once(&product).chain(&members) {
        if let Some(required) = p.product.prerequisite
            && !held.contains(&required)
            && holds(c, env, uid, required).await?
        {
            held.push(required);
        }
    }
    let known: Vec<Product> = members.iter().map(|m| m.product.clone()).collect();
    let verdict = rules::assignment(
        &product.product,
        &known,
        uid,
        user.user.retired,
        env.now,
        |p| held.contains(&p),
    );
    let order = match verdict {
        Ok(Some(order)) => order,
        // Granted to everyone already: the outcome holds.
        Ok(None) => return Ok(changed(0)),
        Err(LedgerError::PrerequisiteMissing {
            product: dependent,
            name,
            prerequisite,
            ..
        }) => {
            // The rule knew the products it was given; name the missing one too.
            let required = find_product(c, env.tenant(), &ProductRef::Id(prerequisite)).await?;
            return Err(LedgerError::PrerequisiteMissing {
                product: dependent,
                name,
                prerequisite,
                prerequisite_name: required.product.full_name(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    if has_grant(c, env, uid, product.id(), Some(product.id())).await?
        && has_unexpired_seat(c, env, uid, product.id()).await?
    {
        return Ok(changed(0));
    }
    let mut taken = Vec::new();
    let mut granted_members = Vec::new();
    for id in order {
        let row = if id == product.id() {
            &product
        } else {
            granted_members.push(id);
            members.iter().find(|m| m.id() == id).ok_or_else(|| {
                OpError::Store(crate::error::StoreError::Corrupt(format!(
                    "plan member {id} not loaded"
                )))
            })?
        };
        taken.extend(grant_product(c, env, &user, row, product.id()).await?);
    }
    audit(env,
        "license.assign",
        Subjects {
            user: Some(uid),
            product: Some(product.id()),
            seat: taken.first().map(|(s, _)| s.uuid),
            ..Default::default()
        },
        json!({
            "before": { "assigned": false },
            "after": { "assigned": true },
            "seats": taken.iter().map(|(s, product)| json!({ "seat": s.uuid, "number": s.number, "product": product })).collect::<Vec<_>>(),
            "plan_members": granted_members,
        }),
    )
    .await?;
    Ok(changed(1 + taken.len() as u64))
}

pub(super) async fn unassign(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    product: &ProductRef,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let product = find_product(c, env.tenant(), product).await?;
    match product.product.kind {
        ProductKind::Site => return Ok(changed(0)),
        ProductKind::Floating => {
            return Err(LedgerError::WrongKind {
                kind: ProductKind::Floating,
                action: "unassigned (log the session off instead)",
            }
            .into());
        }
        ProductKind::User => {}
    }
    let uid = user.user.id;
    let granted = has_grant(c, env, uid, product.id(), None).await?;
    if !granted && group_active(c, env, uid, product.id()).await? {
        // Only a group gives it: nothing direct to take away (remove the member instead).
        return Ok(changed(0));
    }
    let held = !held_seats(c, env.tenant(), uid, product.id())
        .await?
        .is_empty();
    if !granted && !held {
        return Ok(changed(0));
    }
    let freed = drop_products(c, env, uid, vec![product.id()]).await?;
    audit(env,
        "license.unassign",
        Subjects {
            user: Some(uid),
            product: Some(product.id()),
            ..Default::default()
        },
        json!({ "before": { "assigned": true }, "after": { "assigned": false }, "seats_freed": freed }),
    )
    .await?;
    Ok(changed(1 + freed))
}

/// Frees every seat the user holds outside sessions and drops every grant.
pub(super) async fn strip_licenses(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<u64> {
    let products: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT product_id FROM seats WHERE tenant_id = $1 AND holder_id = $2 AND session_uuid IS NULL \
         UNION SELECT DISTINCT product_id FROM grants WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(env.tenant())
    .bind(user)
    .fetch_all(&mut *c)
    .await?;
    if products.is_empty() {
        return Ok(0);
    }
    let freed = drop_products(c, env, user, products).await?;
    Ok(freed.max(1))
}

pub(super) async fn remove_all_licenses(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let freed = strip_licenses(c, env, user.user.id).await?;
    if freed == 0 {
        return Ok(changed(0));
    }
    audit(
        env,
        "license.remove_all",
        Subjects {
            user: Some(user.user.id),
            ..Default::default()
        },
        json!({ "seats_freed": freed }),
    )
    .await?;
    Ok(changed(freed))
}

pub(super) async fn retire(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    if user.user.retired {
        return Ok(changed(0));
    }
    let uid = user.user.id;
    // Flag first: from here on nothing can be granted to the user (grants re-read the flag).
    let flagged = sqlx::query(
        "UPDATE users SET retired = 1 WHERE tenant_id = $1 AND id = $2 AND retired = 0",
    )
    .bind(env.tenant())
    .bind(uid)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if flagged == 0 {
        return Ok(changed(0));
    }
    let sessions = end_live_sessions(c, env, Some(uid), None, EndReason::Admin).await?;
    retiring(c, env, uid).await?;
    let freed = strip_licenses(c, env, uid).await?;
    // Every credential acting as the user (API tokens, SuperOffice tickets, MSP360 tokens) ends
    // with the retirement; unretiring does not bring them back. Its logins are refused while
    // it is retired (see the `login` query).
    let tokens = revoke_user_tokens(c, env, uid).await?;
    audit(env,
        "user.retire",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "before": { "retired": false }, "after": { "retired": true }, "seats_freed": freed, "sessions_ended": sessions, "tokens_revoked": tokens }),
    )
    .await?;
    Ok(changed(1 + freed + sessions + tokens))
}

/// Retires the user and frees its login name in one step: the flag and the new login are one
/// conditional update, then its sessions end and its licenses go, all under one audit record.
pub(super) async fn delete_user(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let uid = user.user.id;
    let login = rules::deleted_login(&user.user.login, user.user.uuid);
    if user.user.retired && user.user.login == login {
        return Ok(changed(0));
    }
    // Conditional on the login read above (the user row is locked on PostgreSQL; SQLite has one
    // writer): a rename in between would make this match nothing rather than be overwritten.
    let flagged = sqlx::query(
        "UPDATE users SET retired = 1, login = $3, login_key = $4 \
         WHERE tenant_id = $1 AND id = $2 AND login_key = $5",
    )
    .bind(env.tenant())
    .bind(uid)
    .bind(login.clone())
    .bind(rules::name_key(&login))
    .bind(rules::name_key(&user.user.login))
    .execute(&mut *c)
    .await?
    .rows_affected();
    if flagged == 0 {
        return Err(OpError::Store(crate::error::StoreError::Contended));
    }
    let sessions = end_live_sessions(c, env, Some(uid), None, EndReason::Admin).await?;
    leave_all_groups(c, env, uid).await?;
    let freed = strip_licenses(c, env, uid).await?;
    audit(
        env,
        "user.delete",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({
            "before": { "login": user.user.login, "retired": user.user.retired },
            "after": { "login": login, "retired": true },
            "seats_freed": freed,
            "sessions_ended": sessions,
        }),
    )
    .await?;
    Ok(changed(1 + freed + sessions))
}

pub(super) async fn unretire(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let flagged = sqlx::query(
        "UPDATE users SET retired = 0 WHERE tenant_id = $1 AND id = $2 AND retired = 1",
    )
    .bind(env.tenant())
    .bind(user.user.id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if flagged == 0 {
        return Ok(changed(0));
    }
    unretired(c, env, user.user.id).await?;
    audit(
        env,
        "user.unretire",
        Subjects {
            user: Some(user.user.id),
            ..Default::default()
        },
        json!({ "before": { "retired": true }, "after": { "retired": false } }),
    )
    .await?;
    Ok(changed(1))
}
