//! Products and their seats.

use super::*;

pub(super) async fn find_or_create_owner(
    c: &mut Conn,
    env: &Env<'_>,
    name: &str,
) -> OpResult<OwnerId> {
    let name = rules::validate_name("owner", name)?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM owners WHERE tenant_id = $1 AND name_key = $2")
            .bind(env.tenant())
            .bind(rules::name_key(&name))
            .fetch_optional(&mut *c)
            .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = bump_counter(c, env.tenant(), "last_owner_id", 1).await?;
    sqlx::query("INSERT INTO owners (tenant_id, id, name, name_key) VALUES ($1, $2, $3, $4)")
        .bind(env.tenant())
        .bind(id)
        .bind(name.clone())
        .bind(rules::name_key(&name))
        .execute(&mut *c)
        .await
        .map_err(|e| created_meanwhile(unique_to(e, "owner", &name), "owner"))?;
    Ok(id)
}

/// Resolves plan members; only a user plan may have them.
pub(super) async fn resolve_plan(
    c: &mut Conn,
    env: &Env<'_>,
    extra_flags: i64,
    members: &[ProductRef],
) -> OpResult<Vec<ProductId>> {
    if !members.is_empty() && extra_flags & EXTRA_FLAG_USER_PLAN == 0 {
        return Err(LedgerError::Invalid {
            field: "plan_members",
            reason: "only a user plan (extra flag 1) brings other products along".into(),
        }
        .into());
    }
    let mut ids = Vec::with_capacity(members.len());
    for member in members {
        let id = find_product(c, env.tenant(), member).await?.id();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub(super) async fn write_plan(
    c: &mut Conn,
    env: &Env<'_>,
    plan: ProductId,
    members: &[ProductId],
) -> OpResult<()> {
    sqlx::query("DELETE FROM plan_members WHERE tenant_id = $1 AND plan_id = $2")
        .bind(env.tenant())
        .bind(plan)
        .execute(&mut *c)
        .await?;
    for member in members {
        if *member == plan {
            return Err(LedgerError::Invalid {
                field: "plan_members",
                reason: "a plan cannot bring itself along".into(),
            }
            .into());
        }
        sqlx::query("INSERT INTO plan_members (tenant_id, plan_id, member_id) VALUES ($1, $2, $3)")
            .bind(env.tenant())
            .bind(plan)
            .bind(*member)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Refuses a prerequisite that would make a chain loop back to `product`.
pub(super) async fn check_prerequisite_chain(
    c: &mut Conn,
    env: &Env<'_>,
    product: Option<ProductId>,
    prerequisite: ProductId,
) -> OpResult<()> {
    let mut next = Some(prerequisite);
    let mut steps = 0;
    while let Some(current) = next {
        steps += 1;
        if Some(current) == product || steps > 64 {
            return Err(LedgerError::Invalid {
                field: "prerequisite",
                reason: "prerequisites would form a cycle".into(),
            }
            .into());
        }
        next = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT prerequisite_id FROM products WHERE tenant_id = $1 AND id = $2",
        )
        .bind(env.tenant())
        .bind(current)
        .fetch_optional(&mut *c)
        .await?
        .flatten();
    }
    Ok(())
}

pub(super) async fn create_product(
    c: &mut Conn,
    env: &Env<'_>,
    new: &NewProduct,
) -> OpResult<Outcome> {
    let name = rules::validate_name("name", &new.name)?;
    rules::validate_text("description", &new.description)?;
    rules::validate_text("tooltip", &new.tooltip)?;
    rules::validate_seat_count(new.seats, true)?;
    if let Some(price) = &new.seat_price_per_30_days {
        rules::validate_seat_price(price)?;
    }
    let owner_id = find_or_create_owner(c, env, &new.owner).await?;
    let full_name = format!("{}/{}", new.owner.trim(), name);
    if find_product(c, env.tenant(), &ProductRef::named(&new.owner, &name))
        .await
        .is_ok()
    {
        return Err(LedgerError::AlreadyExists {
            what: "product",
            name: full_name,
        }
        .into());
    }
    let prerequisite = match &new.prerequisite {
        Some(p) => Some(find_product(c, env.tenant(), p).await?.id()),
        None => None,
    };
    let members = resolve_plan(c, env, new.extra_flags, &new.plan_members).await?;
    let id = bump_counter(c, env.tenant(), "last_product_id", 1).await?;
    let expires_at = new.expires_at.map(rules::to_micros);
    sqlx::query(
        "INSERT INTO products (tenant_id, id, owner_id, name, name_key, description, tooltip, kind, \
           unrestricted, hidden, sort_order, extra_flags, prerequisite_id, expires_at, trial, created_at, \
           seat_price_e4, seat_price_currency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(env.tenant())
    .bind(id)
    .bind(owner_id)
    .bind(name.clone())
    .bind(rules::name_key(&name))
    .bind(new.description.clone())
    .bind(new.tooltip.clone())
    .bind(new.kind.as_str())
    .bind(new.unrestricted as i64)
    .bind(new.hidden as i64)
    .bind(new.sort_order)
    .bind(new.extra_flags)
    .bind(prerequisite)
    .bind(expires_at)
    .bind(new.trial as i64)
    .bind(env.now)
    .bind(price_e4(&new.seat_price_per_30_days))
    .bind(new.seat_price_per_30_days.as_ref().map(|p| p.currency.clone()))
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "product", &full_name))?;
    write_plan(c, env, id, &members).await?;
    if new.seats > 0 {
        insert_seats(c, env, id, new.seats, new.trial, expires_at, None, None).await?;
    }
    let product = find_product(c, env.tenant(), &ProductRef::Id(id))
        .await?
        .product;
    audit(
        env,
        "product.create",
        Subjects {
            product: Some(id),
            ..Default::default()
        },
        json!({ "after": product, "seats": new.seats }),
    )
    .await?;
    Ok(Outcome::Product(product))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_seats(
    c: &mut Conn,
    env: &Env<'_>,
    product: ProductId,
    count: i64,
    trial: bool,
    expires_at: Option<i64>,
    transaction_id: Option<String>,
    pool_company: Option<CompanyId>,
) -> OpResult<Vec<Seat>> {
    const CHUNK: i64 = 200;
    // New seats may go to members waiting for them (the list locked before the seat counter).
    env.note_seats_changed(product);
    lock_waiting_list(c, env, product).await?;
    let last = bump_counter(c, env.tenant(), "last_seat_number", count).await?;
    let first = last - count + 1;
    // Seats bought already expired (or for an expired product) never count in the history.
    let product_expires: Option<i64> =
        sqlx::query_scalar("SELECT expires_at FROM products WHERE tenant_id = $1 AND id = $2")
            .bind(env.tenant())
            .bind(product)
            .fetch_one(&mut *c)
            .await?;
    let lapsed = [expires_at, product_expires]
        .iter()
        .any(|e| rules::is_expired(*e, env.now));
    let mut seats = Vec::with_capacity(count as usize);
    let mut start = first;
    while start <= last {
        let end = (start + CHUNK - 1).min(last);
        let rows = (start..=end)
            .map(|i| {
                let b = (i - start) as usize * 2;
                format!(
                    "($1, ${}, ${}, $2, $3, $4, $5, $6, $7, 0, $8)",
                    b + 9,
                    b + 10
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut q = sqlx::query(sql(format!(
            "INSERT INTO seats (tenant_id, number, uuid, product_id, trial, expires_at, transaction_id, \
               pool_company_id, created_at, overflow, lapsed) VALUES {rows}"
        )))
        .bind(env.tenant())
        .bind(product)
        .bind(trial as i64)
        .bind(expires_at)
        .bind(transaction_id.clone())
        .bind(pool_company)
        .bind(env.now)
        .bind(lapsed as i64);
        for number in start..=end {
            let uuid = Uuid::new_v4();
            q = q.bind(number).bind(uuid.to_string());
            seats.push(Seat {
                id: uuid,
                number,
                product,
                trial,
                expires_at: expires_at.map(rules::from_micros),
                transaction_id: transaction_id.clone(),
                pool_company,
                overflow: false,
                holder: None,
                session: None,
                activation: None,
            });
        }
        q.execute(&mut *c).await?;
        start = end + 1;
    }
    Ok(seats)
}

pub(super) async fn edit_product(
    c: &mut Conn,
    env: &Env<'_>,
    product: &ProductRef,
    patch: &ProductPatch,
) -> OpResult<Outcome> {
    let before = find_product(c, env.tenant(), product).await?.product;
    let id = before.id;
    // Unrestricting or extending a product may let waiting members have it.
    env.note_seats_changed(id);
    let mut after = before.clone();
    if let Some(v) = &patch.description {
        rules::validate_text("description", v)?;
        after.description = v.clone();
    }
    if let Some(v) = &patch.tooltip {
        rules::validate_text("tooltip", v)?;
        after.tooltip = v.clone();
    }
    if let Some(v) = patch.unrestricted {
        after.unrestricted = v;
    }
    if let Some(v) = patch.hidden {
        after.hidden = v;
    }
    if let Some(v) = patch.sort_order {
        after.sort_order = v;
    }
    if let Some(v) = patch.extra_flags {
        after.extra_flags = v;
    }
    if let Some(v) = patch.trial {
        after.trial = v;
    }
    if let Some(v) = patch.expires_at {
        after.expires_at = v;
    }
    if let Some(price) = &patch.seat_price_per_30_days {
        if let Some(price) = price {
            rules::validate_seat_price(price)?;
        }
        after.seat_price_per_30_days = price.clone();
    }
    if let Some(prerequisite) = &patch.prerequisite {
        after.prerequisite = match prerequisite {
            Some(p) => {
                let p = find_product(c, env.tenant(), p).await?.id();
                check_prerequisite_chain(c, env, Some(id), p).await?;
                Some(p)
            }
            None => None,
        };
    }
    let members_patch = match &patch.plan_members {
        Some(members) => Some(resolve_plan(c, env, after.extra_flags, members).await?),
        None if !after.is_user_plan() && !before.plan_members.is_empty() => Some(Vec::new()),
        None => None,
    };
    if let Some(members) = &members_patch {
        after.plan_members = members.clone();
    }
    if after == before {
        return Ok(changed(0));
    }
    sqlx::query(
        "UPDATE products SET description = $3, tooltip = $4, unrestricted = $5, hidden = $6, \
           sort_order = $7, extra_flags = $8, prerequisite_id = $9, expires_at = $10, trial = $11, \
           seat_price_e4 = $12, seat_price_currency = $13 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(id)
    .bind(after.description.clone())
    .bind(after.tooltip.clone())
    .bind(after.unrestricted as i64)
    .bind(after.hidden as i64)
    .bind(after.sort_order)
    .bind(after.extra_flags)
    .bind(after.prerequisite)
    .bind(after.expires_at.map(rules::to_micros))
    .bind(after.trial as i64)
    .bind(price_e4(&after.seat_price_per_30_days))
    .bind(
        after
            .seat_price_per_30_days
            .as_ref()
            .map(|p| p.currency.clone()),
    )
    .execute(&mut *c)
    .await?;
    if before.unrestricted && !after.unrestricted {
        // Counted after the product row is updated (and so locked): an overflow seat inserted
        // concurrently either committed before (and is counted) or waits and then sees the
        // product restricted.
        let overflow: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM seats WHERE tenant_id = $1 AND product_id = $2 AND overflow = 1",
        )
        .bind(env.tenant())
        .bind(id)
        .fetch_one(&mut *c)
        .await?;
        if overflow > 0 {
            let total: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM seats WHERE tenant_id = $1 AND product_id = $2 AND overflow = 0",
            )
            .bind(env.tenant())
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
            return Err(LedgerError::OverAllocated {
                held: total + overflow,
                total,
            }
            .into());
        }
    }
    if let Some(members) = &members_patch {
        write_plan(c, env, id, members).await?;
    }
    if before.expires_at != after.expires_at {
        usage::relapse_product(c, env, id).await?;
    }
    audit(
        env,
        "product.edit",
        Subjects {
            product: Some(id),
            ..Default::default()
        },
        json!({ "before": before, "after": after }),
    )
    .await?;
    Ok(Outcome::Product(after))
}

pub(super) async fn add_seats(c: &mut Conn, env: &Env<'_>, new: &NewSeats) -> OpResult<Outcome> {
    rules::validate_seat_count(new.count, false)?;
    if let Some(t) = &new.transaction_id {
        rules::validate_text("transaction_id", t)?;
    }
    // Site products may carry a bought count too (their seats are never assigned).
    let product = find_product(c, env.tenant(), &new.product).await?;
    let pool_company = match &new.pool_company {
        Some(company) => Some(find_company(c, env.tenant(), company).await?.id),
        None => None,
    };
    let seats = insert_seats(
        c,
        env,
        product.id(),
        new.count,
        new.trial,
        new.expires_at.map(rules::to_micros),
        new.transaction_id.clone(),
        pool_company,
    )
    .await?;
    audit(
        env,
        "seats.add",
        Subjects {
            product: Some(product.id()),
            company: pool_company,
            ..Default::default()
        },
        json!({
            "count": new.count,
            "first_number": seats.first().map(|s| s.number),
            "last_number": seats.last().map(|s| s.number),
            "trial": new.trial,
            "expires_at": new.expires_at.map(rules::to_micros),
            "transaction_id": new.transaction_id,
        }),
    )
    .await?;
    Ok(Outcome::Seats { seats })
}

/// Removes free seats of a product, expired ones first, then the newest. One statement picks
/// and deletes them, re-checking `holder_id IS NULL` on each row it deletes (PostgreSQL locks
/// the picked rows and skips rows a concurrent claim holds), so a held seat is never removed;
/// fewer free seats than asked refuses the whole command, removing nothing.
pub(super) async fn remove_seats(
    c: &mut Conn,
    env: &Env<'_>,
    product: &ProductRef,
    count: i64,
    pool_company: Option<&CompanyRef>,
) -> OpResult<Outcome> {
    rules::validate_seat_count(count, false)?;
    let product = find_product(c, env.tenant(), product).await?;
    let pool_company = match pool_company {
        Some(company) => Some(find_company(c, env.tenant(), company).await?.id),
        None => None,
    };
    let pool_clause = match pool_company {
        Some(_) => "pool_company_id = $5",
        None => "pool_company_id IS NULL",
    };
    let query = sqlx::query_scalar::<_, String>(sql(format!(
        "DELETE FROM seats WHERE tenant_id = $1 AND holder_id IS NULL AND number IN ( \
             SELECT number FROM seats WHERE tenant_id = $1 AND product_id = $2 \
               AND holder_id IS NULL AND overflow = 0 AND {pool_clause} \
             ORDER BY (expires_at IS NOT NULL AND expires_at <= $3) DESC, number DESC \
             LIMIT $4{}) \
         RETURNING uuid",
        env.skip_locked()
    )))
    .bind(env.tenant())
    .bind(product.id())
    .bind(env.now)
    .bind(count);
    let query = match pool_company {
        Some(company) => query.bind(company),
        None => query,
    };
    let removed = query.fetch_all(&mut *c).await?;
    let removed_count = removed.len() as i64;
    if removed_count < count {
        // The command's savepoint (or transaction) rolls back: nothing is removed.
        return Err(LedgerError::NotEnoughFreeSeats {
            product: product.id(),
            name: product.product.full_name(),
            free: removed_count,
            requested: count,
        }
        .into());
    }
    audit(
        env,
        "seats.remove",
        Subjects {
            product: Some(product.id()),
            company: pool_company,
            ..Default::default()
        },
        json!({ "count": count, "seats": removed }),
    )
    .await?;
    Ok(changed(removed_count as u64))
}

/// Removes an owner and everything of theirs. Holders lose the products first, through the
/// same cascade as an unassign (plan members and dependents go too), so no user is left with a
/// grant or seat that refers to nothing; floating seats end with their sessions.
pub(super) async fn remove_owner(c: &mut Conn, env: &Env<'_>, owner: &str) -> OpResult<Outcome> {
    let tenant = env.tenant();
    let owner_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM owners WHERE tenant_id = $1 AND name_key = $2")
            .bind(tenant)
            .bind(rules::name_key(owner))
            .fetch_optional(&mut *c)
            .await?;
    let Some(owner_id) = owner_id else {
        return Err(LedgerError::UnknownProduct(format!("{owner}/*")).into());
    };
    let products: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM products WHERE tenant_id = $1 AND owner_id = $2 ORDER BY id",
    )
    .bind(tenant)
    .bind(owner_id)
    .fetch_all(&mut *c)
    .await?;
    let mut holders: Vec<i64> = Vec::new();
    for product in &products {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT holder_id FROM seats WHERE tenant_id = $1 AND product_id = $2 \
               AND holder_id IS NOT NULL AND session_uuid IS NULL \
             UNION SELECT user_id FROM grants WHERE tenant_id = $1 AND (product_id = $2 OR via_id = $2)",
        )
        .bind(tenant)
        .bind(*product)
        .fetch_all(&mut *c)
        .await?;
        for user in rows {
            if !holders.contains(&user) {
                holders.push(user);
            }
        }
    }
    holders.sort_unstable();
    // Groups give these products no more (before the holders lose them, so no group keeps a
    // seat back).
    forget_products(c, env, &products).await?;
    let mut seats_freed = 0;
    for user in &holders {
        find_user_locked(c, env, &UserRef::Id(*user)).await?;
        seats_freed += drop_products(c, env, *user, products.clone()).await?;
    }
    let mut sessions_ended = 0;
    let mut seats_removed = 0;
    for product in &products {
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT uuid FROM sessions WHERE tenant_id = $1 AND product_id = $2 AND ended_at IS NULL",
        )
        .bind(tenant)
        .bind(*product)
        .fetch_all(&mut *c)
        .await?;
        for session in live {
            if end_session(c, env, parse_uuid(&session)?, EndReason::Admin).await? {
                sessions_ended += 1;
            }
        }
        // Ended sessions keep their history; they just no longer point at the product.
        for statement in [
            "UPDATE sessions SET product_id = NULL WHERE tenant_id = $1 AND product_id = $2",
            "UPDATE products SET prerequisite_id = NULL WHERE tenant_id = $1 AND prerequisite_id = $2",
            "DELETE FROM plan_members WHERE tenant_id = $1 AND (plan_id = $2 OR member_id = $2)",
            "DELETE FROM grants WHERE tenant_id = $1 AND (product_id = $2 OR via_id = $2)",
            "DELETE FROM company_quotas WHERE tenant_id = $1 AND product_id = $2",
            "DELETE FROM harvest_policies WHERE tenant_id = $1 AND product_id = $2",
        ] {
            sqlx::query(statement)
                .bind(tenant)
                .bind(*product)
                .execute(&mut *c)
                .await?;
        }
        seats_removed += sqlx::query("DELETE FROM seats WHERE tenant_id = $1 AND product_id = $2")
            .bind(tenant)
            .bind(*product)
            .execute(&mut *c)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM products WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(*product)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query("DELETE FROM owners WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(owner_id)
        .execute(&mut *c)
        .await?;
    audit(
        env,
        "owner.remove",
        Subjects::default(),
        json!({ "owner": owner, "products": products, "holders": holders,
                "seats_freed": seats_freed, "sessions_ended": sessions_ended,
                "seats_removed": seats_removed }),
    )
    .await?;
    Ok(changed(1 + seats_removed))
}

/// A validated seat price's amount as stored (validation bounds it well inside `i64`).
fn price_e4(price: &Option<SeatPrice>) -> Option<i64> {
    price
        .as_ref()
        .map(|p| i64::try_from(p.amount.e4).unwrap_or(i64::MAX))
}
