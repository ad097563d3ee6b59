//! Taking and freeing seats: the heart of the invariants.

use super::*;

/// A seat a command just took: what its audit record names, from the claiming statement itself
/// (no second read of the seat).
pub(super) struct TakenSeat {
    pub number: i64,
    pub uuid: Uuid,
}

/// Takes a free, unexpired seat of `product` for `user` from the user's pool. The seat is picked
/// and claimed in one conditional UPDATE (`holder_id IS NULL` is re-checked on the row itself),
/// so two transactions can never both take the same seat. Unrestricted products that have no
/// seat left get an overflow seat, inserted only if the product row says it is unrestricted.
pub(super) async fn take_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    session: Option<Uuid>,
) -> OpResult<TakenSeat> {
    if product.expired(env.now) {
        return Err(LedgerError::ProductExpired {
            product: product.id(),
            name: product.product.full_name(),
        }
        .into());
    }
    let session = session.map(|s| s.to_string());
    let pool = user.pool();
    if let Some(taken) = claim_free_seat(c, env, user, product, pool, None, session.clone()).await?
    {
        return Ok(taken);
    }
    if let Pool::Company(company) = pool {
        // Past the company's own seats: tenant-wide seats, within the company's quota.
        if charge_quota(c, env, company, product.id()).await? {
            if let Some(taken) = claim_free_seat(
                c,
                env,
                user,
                product,
                Pool::Global,
                Some(company),
                session.clone(),
            )
            .await?
            {
                return Ok(taken);
            }
            // No seat to charge after all: the quota update is undone with the command (the
            // error below rolls back its savepoint or transaction).
        } else if !product.product.unrestricted && has_quota(c, env, company, product.id()).await? {
            return Err(LedgerError::QuotaExhausted {
                product: product.id(),
                name: product.product.full_name(),
            }
            .into());
        }
    }
    if product.product.unrestricted {
        return insert_overflow_seat(c, env, user, product, session).await;
    }
    Err(no_seat_free(c, env, product).await?.into())
}

pub(super) async fn has_quota(
    c: &mut Conn,
    env: &Env<'_>,
    company: CompanyId,
    product: ProductId,
) -> OpResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM company_quotas WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3",
    )
    .bind(env.tenant())
    .bind(company)
    .bind(product)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

pub(super) async fn claim_free_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    pool: Pool,
    charge: Option<CompanyId>,
    session: Option<String>,
) -> OpResult<Option<TakenSeat>> {
    // The pool is a bound value too; only the shape of the clause differs.
    let pool_clause = match pool {
        Pool::Global => "pool_company_id IS NULL",
        Pool::Company(_) => "pool_company_id = $7",
    };
    let query = sqlx::query(sql(format!(
        "UPDATE seats SET holder_id = $3, held_since = $4, charged_company_id = $5, session_uuid = $6 \
         WHERE tenant_id = $1 AND holder_id IS NULL AND number = ( \
             SELECT number FROM seats WHERE tenant_id = $1 AND product_id = $2 AND holder_id IS NULL \
               AND overflow = 0 AND (expires_at IS NULL OR expires_at > $4) AND {pool_clause} \
             ORDER BY trial, number LIMIT 1{}) \
         RETURNING number, uuid",
        env.skip_locked()
    )))
    .bind(env.tenant())
    .bind(product.id())
    .bind(user.user.id)
    .bind(env.now)
    .bind(charge)
    .bind(session);
    let query = match pool {
        Pool::Global => query,
        Pool::Company(company) => query.bind(company),
    };
    match query.fetch_optional(&mut *c).await? {
        Some(row) => Ok(Some(TakenSeat {
            number: row.try_get("number")?,
            uuid: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
        })),
        None => Ok(None),
    }
}

pub(super) async fn insert_overflow_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    session: Option<String>,
) -> OpResult<TakenSeat> {
    let number = bump_counter(c, env.tenant(), "last_seat_number", 1).await?;
    let uuid = Uuid::new_v4();
    // Conditional on the product row (share-locked on PostgreSQL, so an edit making the product
    // restricted either waits for this insert or is seen by it).
    let inserted = sqlx::query(sql(format!(
        "INSERT INTO seats (tenant_id, number, uuid, product_id, trial, overflow, holder_id, \
           held_since, session_uuid, created_at) \
         SELECT $1, $2, $3, p.id, 0, 1, $4, $5, $6, $5 FROM products p \
         WHERE p.tenant_id = $1 AND p.id = $7 AND p.unrestricted = 1{}",
        env.share_lock()
    )))
    .bind(env.tenant())
    .bind(number)
    .bind(uuid.to_string())
    .bind(user.user.id)
    .bind(env.now)
    .bind(session)
    .bind(product.id())
    .execute(&mut *c)
    .await?
    .rows_affected();
    if inserted == 1 {
        Ok(TakenSeat { number, uuid })
    } else {
        Err(no_seat_free(c, env, product).await?.into())
    }
}

/// Frees a held seat: holder, session, activation and quota charge go; an overflow seat is
/// deleted. Returns false when the seat was already free (another transaction got there first).
///
/// Every seat freed passes here, so this is where the product is noted for its waiting list
/// (served before the command completes, see `groups::settle`).
pub(super) async fn free_seat(c: &mut Conn, env: &Env<'_>, number: i64) -> OpResult<bool> {
    let deleted: Option<ProductId> = sqlx::query_scalar(
        "DELETE FROM seats WHERE tenant_id = $1 AND number = $2 AND overflow = 1 RETURNING product_id",
    )
    .bind(env.tenant())
    .bind(number)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(product) = deleted {
        env.note_seats_changed(product);
        return Ok(true);
    }
    let freed: Option<ProductId> = sqlx::query_scalar(
        "UPDATE seats SET holder_id = NULL, held_since = NULL, charged_company_id = NULL, \
           session_uuid = NULL, activation_hid = NULL, activation_name = NULL, activation_os = NULL, \
           last_used_at = NULL \
         WHERE tenant_id = $1 AND number = $2 AND holder_id IS NOT NULL \
         RETURNING product_id",
    )
    .bind(env.tenant())
    .bind(number)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(product) = freed {
        env.note_seats_changed(product);
    }
    Ok(freed.is_some())
}

/// Releases one seat of a user's and, when it was the user's last seat of that product, drops
/// the product's grants and cascades to everything that depended on it.
pub(super) async fn release_held_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat: &SeatRow,
) -> OpResult<u64> {
    release_held_seat_because(c, env, seat, None).await
}

/// [`release_held_seat`], its audit record carrying `why`'s fields too (the harvest's
/// `"reason": "idle"` and the figures behind it).
pub(super) async fn release_held_seat_because(
    c: &mut Conn,
    env: &Env<'_>,
    seat: &SeatRow,
    why: Option<serde_json::Value>,
) -> OpResult<u64> {
    let Some(holder) = seat.seat.holder else {
        return Ok(0);
    };
    if let Some(session) = seat.seat.session {
        // A floating seat belongs to its session: the session ends with it.
        end_session(c, env, session, EndReason::Admin).await?;
        return Ok(1);
    }
    uncharge(c, env, seat).await?;
    if !free_seat(c, env, seat.seat.number).await? {
        return Ok(0);
    }
    audit(env,
        "seat.release",
        Subjects {
            user: Some(holder),
            product: Some(seat.seat.product),
            seat: Some(seat.seat.id),
            ..Default::default()
        },
        {
            let mut detail = json!({ "before": { "holder": holder, "activation": seat.seat.activation }, "after": { "holder": null } });
            if let (Some(serde_json::Value::Object(why)), Some(detail)) =
                (why, detail.as_object_mut())
            {
                detail.extend(why);
            }
            detail
        },
    )
    .await?;
    let mut count = 1;
    if held_seats(c, env.tenant(), holder, seat.seat.product)
        .await?
        .is_empty()
    {
        // A group that explained the seat still wants the holder to have one: back in line.
        requeue_after_release(c, env, holder, seat.seat.product).await?;
        count += drop_products(c, env, holder, vec![seat.seat.product]).await?;
    }
    Ok(count)
}

/// Charges one seat of `product` to `company`'s quota, if the quota has room (conditional
/// update: concurrent charges cannot exceed it). False when full or when there is no quota.
pub(super) async fn charge_quota(
    c: &mut Conn,
    env: &Env<'_>,
    company: CompanyId,
    product: ProductId,
) -> OpResult<bool> {
    let charged = sqlx::query(
        "UPDATE company_quotas SET used = used + 1 \
         WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3 AND used < quota",
    )
    .bind(env.tenant())
    .bind(company)
    .bind(product)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(charged == 1)
}

/// Returns a seat's quota charge to its company.
pub(super) async fn uncharge(c: &mut Conn, env: &Env<'_>, seat: &SeatRow) -> OpResult<()> {
    if let Some(company) = seat.charged_company {
        sqlx::query(
            "UPDATE company_quotas SET used = used - 1 \
             WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3 AND used > 0",
        )
        .bind(env.tenant())
        .bind(company)
        .bind(seat.seat.product)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Takes products away from a user entirely: all grants, all seats, then (transitively) the
/// members of plans that nothing else grants and the products whose prerequisite went.
/// A product an active group assignment explains loses its grants (the direct and plan
/// reasons) but keeps its seat, unless its prerequisite went: then the group assignment turns
/// to `error` and the seat goes too. Returns the number of seats freed.
pub(super) async fn drop_products(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    start: Vec<ProductId>,
) -> OpResult<u64> {
    let tenant = env.tenant();
    // (product, whether it goes because its prerequisite went)
    let mut work: Vec<(ProductId, bool)> = start.into_iter().map(|p| (p, false)).collect();
    let mut done: Vec<ProductId> = Vec::new();
    let mut freed = 0;
    while let Some((product, prerequisite_gone)) = work.pop() {
        if done.contains(&product) {
            continue;
        }
        done.push(product);
        if group_active(c, env, user, product).await? {
            if prerequisite_gone {
                prerequisite_lost(c, env, user, product).await?;
            } else {
                sqlx::query(
                    "DELETE FROM grants WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3",
                )
                .bind(tenant)
                .bind(user)
                .bind(product)
                .execute(&mut *c)
                .await?;
                // Not done: if its prerequisite goes later in this cascade, it goes too.
                done.retain(|p| *p != product);
                continue;
            }
        }
        sqlx::query("DELETE FROM grants WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3")
            .bind(tenant)
            .bind(user)
            .bind(product)
            .execute(&mut *c)
            .await?;
        for number in held_seats(c, tenant, user, product).await? {
            let seat = seat_by_number(c, tenant, number).await?;
            if seat.seat.session.is_some() {
                continue; // floating seats stay with their sessions
            }
            uncharge(c, env, &seat).await?;
            if free_seat(c, env, number).await? {
                freed += 1;
                audit(env,
                    "seat.release",
                    Subjects {
                        user: Some(user),
                        product: Some(product),
                        seat: Some(seat.seat.id),
                        ..Default::default()
                    },
                    json!({ "before": { "holder": user, "activation": seat.seat.activation }, "after": { "holder": null } }),
                )
                .await?;
            }
        }
        // Plan members this product brought along lose that reason; those left with none go.
        let orphaned: Vec<ProductId> = sqlx::query_scalar(
            "DELETE FROM grants WHERE tenant_id = $1 AND user_id = $2 AND via_id = $3 RETURNING product_id",
        )
        .bind(tenant)
        .bind(user)
        .bind(product)
        .fetch_all(&mut *c)
        .await?;
        for member in orphaned {
            let remaining: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM grants WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3",
            )
            .bind(tenant)
            .bind(user)
            .bind(member)
            .fetch_one(&mut *c)
            .await?;
            if remaining == 0 {
                work.push((member, false));
            }
        }
        // Dependents the user holds lose their prerequisite, unless it is still held otherwise
        // (a site product never goes; this product may still be held through another seat).
        if !holds(c, env, user, product).await? {
            let dependents: Vec<ProductId> = sqlx::query_scalar(
                "SELECT DISTINCT p.id FROM products p JOIN seats s \
                   ON s.tenant_id = p.tenant_id AND s.product_id = p.id AND s.holder_id = $3 \
                 WHERE p.tenant_id = $1 AND p.prerequisite_id = $2 AND s.session_uuid IS NULL",
            )
            .bind(tenant)
            .bind(product)
            .bind(user)
            .fetch_all(&mut *c)
            .await?;
            work.extend(dependents.into_iter().map(|d| (d, true)));
        }
    }
    Ok(freed)
}

/// The refusal for a product with no seat left, with the counts that explain it (the pool's
/// trigger-kept counters, as `pool_status` reads them).
pub(super) async fn no_seat_free(
    c: &mut Conn,
    env: &Env<'_>,
    product: &ProductRow,
) -> OpResult<LedgerError> {
    #[derive(sqlx::FromRow)]
    struct Counts {
        total: i64,
        in_use: i64,
    }
    let counts: Counts = sqlx::query_as(
        "SELECT COALESCE(u.total, 0) - (SELECT count(*) FROM seats s WHERE s.tenant_id = $1 \
                  AND s.product_id = $2 AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 \
                  AND s.overflow = 0) AS total, \
                COALESCE(u.in_use, 0) - (SELECT count(*) FROM seats s WHERE s.tenant_id = $1 \
                  AND s.product_id = $2 AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 \
                  AND s.holder_id IS NOT NULL) AS in_use \
         FROM (SELECT 1 AS one) x LEFT JOIN pool_usage u ON u.tenant_id = $1 AND u.product_id = $2",
    )
    .bind(env.tenant())
    .bind(product.id())
    .bind(env.now)
    .fetch_one(&mut *c)
    .await?;
    Ok(LedgerError::NoSeatFree {
        product: product.id(),
        name: product.product.full_name(),
        in_use: counts.in_use,
        total: counts.total,
    })
}
