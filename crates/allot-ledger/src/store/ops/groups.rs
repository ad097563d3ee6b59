//! Groups, licenses given to groups, each member's assignment state, and the waiting list.
//!
//! A member's assignment of a group's product is a row of `group_assignments`: `active` (it
//! holds a seat, and the group is one reason why), `waiting` (no seat it may take is free) or
//! `error` (a rule refuses it). Rows never take seats themselves: a command that creates or
//! re-queues one, frees a seat, or adds seats notes the product in its [`Env`], and
//! [`settle`] (run by `ops::execute` after every command, in its transaction) hands the free
//! seats to the product's waiting members, first come first served. Nothing has to remember to
//! call it: the notes come from the only statements that free or add seats (`free_seat`,
//! `insert_seats`) and from the commands that queue members.

use super::*;
use sqlx::Executor;

pub(crate) const GROUP_COLUMNS: &str = "g.id, g.uuid, g.name, g.external_id, g.created_at, \
     COALESCE(g.modified_at, g.created_at) AS modified_at";

pub(crate) fn group_from_row(row: &AnyRow) -> OpResult<Group> {
    Ok(Group {
        id: row.try_get("id")?,
        uuid: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
        name: row.try_get("name")?,
        external_id: row.try_get("external_id")?,
        created_at: rules::from_micros(row.try_get("created_at")?),
        modified_at: rules::from_micros(row.try_get("modified_at")?),
    })
}

/// The group changed (its name, external id or members): SCIM's `meta.lastModified`.
async fn touch_group(c: &mut Conn, env: &Env<'_>, group: GroupId) -> OpResult<()> {
    sqlx::query("UPDATE user_groups SET modified_at = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(env.tenant())
        .bind(group)
        .bind(env.now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn find_group(c: &mut Conn, tenant: i64, group: &GroupRef) -> OpResult<Group> {
    let (clause, key) = match group {
        GroupRef::Id(id) => ("g.id = $2", Key::Int(*id)),
        GroupRef::Uuid(uuid) => ("g.uuid = $2", Key::Text(uuid.to_string())),
        GroupRef::Name(name) => ("g.name_key = $2", Key::Text(rules::name_key(name))),
    };
    let q = sqlx::query(sql(format!(
        "SELECT {GROUP_COLUMNS} FROM user_groups g WHERE g.tenant_id = $1 AND {clause}"
    )))
    .bind(tenant);
    match bind_key(q, key).fetch_optional(&mut *c).await? {
        Some(row) => group_from_row(&row),
        None => Err(LedgerError::UnknownGroup(group.to_string()).into()),
    }
}

/// Waiting and error reasons stored with a row.
pub(crate) const NO_FREE_SEAT: &str = "no_free_seat";
const QUOTA_EXHAUSTED: &str = "quota_exhausted";
const PREREQUISITE_MISSING: &str = "prerequisite_missing";
const USER_DISABLED: &str = "user_disabled";
const USER_RETIRED: &str = "user_retired";
const PRODUCT_EXPIRED: &str = "product_expired";

/// Locks a group-licensed product's row (PostgreSQL) for the rest of the transaction: the
/// waiting list of one product changes, and is served, one transaction at a time. Taken before
/// any tenant counter (queue numbers, seat numbers), as every fill takes it before the audit
/// counter, so two transactions never wait on each other in opposite orders. No-op for a
/// product no group has.
pub(super) async fn lock_waiting_list(
    c: &mut Conn,
    env: &Env<'_>,
    product: ProductId,
) -> OpResult<bool> {
    if !group_licensed(c, env, product).await? {
        if env.backend == Backend::Sqlite {
            return Ok(false);
        }
        // A group license being added right now is not visible yet, and its command reads
        // the free seats before this one's commit: each would leave the other's work undone
        // (a seat free, a member waiting). Its command holds this row FOR UPDATE, so a key
        // share waits for it, and the second look sees what it committed; a later one waits
        // for this command instead, and then sees the seats freed here.
        sqlx::query("SELECT id FROM products WHERE tenant_id = $1 AND id = $2 FOR KEY SHARE")
            .bind(env.tenant())
            .bind(product)
            .fetch_optional(&mut *c)
            .await?;
        if !group_licensed(c, env, product).await? {
            return Ok(false);
        }
    }
    if env.backend == Backend::Postgres {
        sqlx::query("SELECT id FROM products WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(env.tenant())
            .bind(product)
            .fetch_optional(&mut *c)
            .await?;
    }
    Ok(true)
}

async fn group_licensed(c: &mut Conn, env: &Env<'_>, product: ProductId) -> OpResult<bool> {
    let licensed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM group_licenses WHERE tenant_id = $1 AND product_id = $2 LIMIT 1) x",
    )
    .bind(env.tenant())
    .bind(product)
    .fetch_one(&mut *c)
    .await?;
    Ok(licensed > 0)
}

/// Takes `n` consecutive places at the end of the tenant's waiting list; returns the first.
async fn take_queue_numbers(c: &mut Conn, env: &Env<'_>, n: i64) -> OpResult<i64> {
    let last = bump_counter(c, env.tenant(), "last_queue_number", n).await?;
    Ok(last - n + 1)
}

pub(super) async fn create_group(
    c: &mut Conn,
    env: &Env<'_>,
    name: &str,
    uuid: Option<Uuid>,
    external_id: Option<&str>,
) -> OpResult<Outcome> {
    let name = rules::validate_name("name", name)?;
    if let Some(external) = external_id {
        rules::validate_text("external_id", external)?;
    }
    let id = bump_counter(c, env.tenant(), "last_group_id", 1).await?;
    let group = Group {
        id,
        uuid: uuid.unwrap_or_else(Uuid::new_v4),
        name: name.clone(),
        external_id: external_id.map(str::to_owned),
        created_at: rules::from_micros(env.now),
        modified_at: rules::from_micros(env.now),
    };
    sqlx::query(
        "INSERT INTO user_groups (tenant_id, id, uuid, name, name_key, created_at, external_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(env.tenant())
    .bind(id)
    .bind(group.uuid.to_string())
    .bind(name.clone())
    .bind(rules::name_key(&name))
    .bind(env.now)
    .bind(group.external_id.clone())
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "group", &name))?;
    audit(
        env,
        "group.create",
        Subjects::default(),
        json!({ "after": group }),
    )
    .await?;
    Ok(Outcome::Group(group))
}

pub(super) async fn rename_group(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    name: &str,
) -> OpResult<Outcome> {
    edit_group(c, env, group, Some(name), None).await
}

/// Renames a group and/or sets its external id (`Some(None)` clears it).
pub(super) async fn edit_group(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    name: Option<&str>,
    external_id: Option<Option<&str>>,
) -> OpResult<Outcome> {
    let before = find_group(c, env.tenant(), group).await?;
    let mut after = before.clone();
    if let Some(name) = name {
        after.name = rules::validate_name("name", name)?;
    }
    if let Some(external) = external_id {
        if let Some(text) = external {
            rules::validate_text("external_id", text)?;
        }
        after.external_id = external.map(str::to_owned);
    }
    if after.name == before.name && after.external_id == before.external_id {
        return Ok(Outcome::Group(before));
    }
    after.modified_at = rules::from_micros(env.now);
    sqlx::query(
        "UPDATE user_groups SET name = $3, name_key = $4, external_id = $5, modified_at = $6 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(before.id)
    .bind(after.name.clone())
    .bind(rules::name_key(&after.name))
    .bind(after.external_id.clone())
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "group", &after.name))?;
    let (action, detail) = if external_id.is_none() {
        (
            "group.rename",
            json!({ "group": before.id, "before": { "name": before.name }, "after": { "name": after.name } }),
        )
    } else {
        (
            "group.edit",
            json!({ "group": before.id,
                    "before": { "name": before.name, "external_id": before.external_id },
                    "after": { "name": after.name, "external_id": after.external_id } }),
        )
    };
    audit(env, action, Subjects::default(), detail).await?;
    Ok(Outcome::Group(after))
}

/// Makes the group's members exactly `users` (SCIM's replace of `members`), decided inside the
/// transaction: members not listed leave (losing the seats the group alone explained), those
/// listed join (taking seats or waiting). Each join and leave is audited as one.
pub(super) async fn set_group_members(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    users: &[UserRef],
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let mut wanted: Vec<UserId> = Vec::with_capacity(users.len());
    for user in users {
        let id = find_user(c, env.tenant(), user).await?.user.id;
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    let current: Vec<UserId> = sqlx::query_scalar(
        "SELECT user_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id",
    )
    .bind(env.tenant())
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?;
    // Every user involved is locked first, in id order, as `remove_rows` does: then the group
    // row each join and leave touches (members before their group, as everywhere).
    let mut involved: Vec<UserId> = current.iter().chain(&wanted).copied().collect();
    involved.sort_unstable();
    involved.dedup();
    for user in &involved {
        find_user_locked(c, env, &UserRef::Id(*user)).await?;
    }
    let by_id = GroupRef::Id(group.id);
    let mut n = 0;
    for user in current.iter().filter(|u| !wanted.contains(u)) {
        n += remove_group_member(c, env, &by_id, &UserRef::Id(*user))
            .await?
            .changed();
    }
    for user in wanted.iter().filter(|u| !current.contains(u)) {
        n += add_group_member(c, env, &by_id, &UserRef::Id(*user))
            .await?
            .changed();
    }
    Ok(changed(n))
}

/// Does an active group assignment explain the user's seat of `product`?
pub(super) async fn group_active(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM group_assignments WHERE tenant_id = $1 AND user_id = $2 \
           AND product_id = $3 AND state = 'active'",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

/// Sets the state of the user's assignments (of one product, or all) that are in `from`
/// states; returns the products whose rows changed.
async fn set_state(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: Option<ProductId>,
    only_reason: Option<&str>,
    state: AssignmentState,
    reason: Option<&str>,
) -> OpResult<Vec<ProductId>> {
    let mut changed: Vec<ProductId> = sqlx::query_scalar(
        "UPDATE group_assignments SET state = $4, reason = $5, since = $6 \
         WHERE tenant_id = $1 AND user_id = $2 AND ($3 IS NULL OR product_id = $3) \
           AND ($7 IS NULL OR reason = $7) AND (state <> $4 OR reason <> $5) \
         RETURNING product_id",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(state.as_str())
    .bind(reason.map(str::to_owned))
    .bind(env.now)
    .bind(only_reason.map(str::to_owned))
    .fetch_all(&mut *c)
    .await?;
    changed.sort_unstable();
    changed.dedup();
    Ok(changed)
}

/// The user now holds a seat of `product` (assigned, granted, or given from the waiting list):
/// its group assignments of it are active, and products that needed it as prerequisite may
/// now go to it.
pub(super) async fn seat_now_held(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<()> {
    sqlx::query(
        "UPDATE group_assignments SET state = 'active', reason = NULL, since = $4 \
         WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3 AND state <> 'active'",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    let dependents: Vec<ProductId> =
        sqlx::query_scalar("SELECT id FROM products WHERE tenant_id = $1 AND prerequisite_id = $2")
            .bind(env.tenant())
            .bind(product)
            .fetch_all(&mut *c)
            .await?;
    for dependent in dependents {
        env.note_seats_changed(dependent);
    }
    Ok(())
}

/// A seat of the user's that a group explains is going (released by an admin, revoked): its
/// group assignments go back to the end of the waiting list.
pub(super) async fn requeue_after_release(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<()> {
    if !group_active(c, env, user, product).await? {
        return Ok(());
    }
    lock_waiting_list(c, env, product).await?;
    let first = take_queue_numbers(c, env, 1).await?;
    sqlx::query(
        "UPDATE group_assignments SET state = 'waiting', reason = $4, since = $5, queue_number = $6 \
         WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3 AND state = 'active'",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(product)
    .bind(NO_FREE_SEAT)
    .bind(env.now)
    .bind(first)
    .execute(&mut *c)
    .await?;
    env.note_seats_changed(product);
    Ok(())
}

/// The user lost the prerequisite of a product its groups give it: those assignments wait for
/// it in `error` (the seat goes with the cascade that called this).
pub(super) async fn prerequisite_lost(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<()> {
    set_state(
        c,
        env,
        user,
        Some(product),
        None,
        AssignmentState::Error,
        Some(PREREQUISITE_MISSING),
    )
    .await?;
    Ok(())
}

/// A user's (or a company's members') pool changed: what they wait for is served again, since
/// the new pool may have seats free.
pub(super) async fn pool_changed(
    c: &mut Conn,
    env: &Env<'_>,
    user: Option<UserId>,
    company: Option<CompanyId>,
) -> OpResult<()> {
    let products: Vec<ProductId> = sqlx::query_scalar(
        "SELECT DISTINCT a.product_id FROM group_assignments a \
         JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id \
         WHERE a.tenant_id = $1 AND a.state = 'waiting' \
           AND ($2 IS NULL OR a.user_id = $2) AND ($3 IS NULL OR u.company_id = $3)",
    )
    .bind(env.tenant())
    .bind(user)
    .bind(company)
    .fetch_all(&mut *c)
    .await?;
    for product in products {
        env.note_seats_changed(product);
    }
    Ok(())
}

/// The user is disabled or retired: none of its group assignments holds or waits any more.
pub(super) async fn block_user(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    reason: &str,
) -> OpResult<()> {
    set_state(
        c,
        env,
        user,
        None,
        None,
        AssignmentState::Error,
        Some(reason),
    )
    .await?;
    Ok(())
}

/// The user is enabled or unretired: assignments blocked for `reason` queue again, at the end
/// of the waiting list.
async fn unblock_user(c: &mut Conn, env: &Env<'_>, user: UserId, reason: &str) -> OpResult<()> {
    let products = set_state(
        c,
        env,
        user,
        None,
        Some(reason),
        AssignmentState::Waiting,
        Some(NO_FREE_SEAT),
    )
    .await?;
    if products.is_empty() {
        return Ok(());
    }
    for product in &products {
        lock_waiting_list(c, env, *product).await?;
    }
    let first = take_queue_numbers(c, env, products.len() as i64).await?;
    for (i, product) in products.iter().enumerate() {
        sqlx::query(
            "UPDATE group_assignments SET queue_number = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3 AND state = 'waiting'",
        )
        .bind(env.tenant())
        .bind(user)
        .bind(*product)
        .bind(first + i as i64)
        .execute(&mut *c)
        .await?;
        env.note_seats_changed(*product);
    }
    Ok(())
}

pub(super) async fn unretired(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<()> {
    unblock_user(c, env, user, USER_RETIRED).await
}

pub(super) async fn retiring(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<()> {
    block_user(c, env, user, USER_RETIRED).await
}

/// A deleted user leaves every group.
pub(super) async fn leave_all_groups(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<()> {
    for statement in [
        "DELETE FROM group_assignments WHERE tenant_id = $1 AND user_id = $2",
        "DELETE FROM group_members WHERE tenant_id = $1 AND user_id = $2",
    ] {
        sqlx::query(statement)
            .bind(env.tenant())
            .bind(user)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// The products of an owner being removed are no group's license any more.
pub(super) async fn forget_products(
    c: &mut Conn,
    env: &Env<'_>,
    products: &[ProductId],
) -> OpResult<()> {
    for product in products {
        for statement in [
            "DELETE FROM group_assignments WHERE tenant_id = $1 AND product_id = $2",
            "DELETE FROM group_licenses WHERE tenant_id = $1 AND product_id = $2",
        ] {
            sqlx::query(statement)
                .bind(env.tenant())
                .bind(*product)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(())
}

/// After a reason went: when nothing explains the user's seat of `product` any more (no grant,
/// no active group assignment), the product goes, through the unassign cascade. Returns the
/// seats freed.
async fn release_if_unexplained(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: ProductId,
) -> OpResult<u64> {
    if group_active(c, env, user, product).await? || has_grant(c, env, user, product, None).await? {
        return Ok(0);
    }
    drop_products(c, env, user, vec![product]).await
}

/// How a new assignment row starts: active when the user already holds a seat of it, blocked
/// when the user is, otherwise waiting (and the product is noted, so [`settle`] serves it).
async fn initial_state(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    retired: bool,
    disabled: bool,
    product: ProductId,
) -> OpResult<(AssignmentState, Option<&'static str>)> {
    Ok(if retired {
        (AssignmentState::Error, Some(USER_RETIRED))
    } else if disabled {
        (AssignmentState::Error, Some(USER_DISABLED))
    } else if has_unexpired_seat(c, env, user, product).await? {
        (AssignmentState::Active, None)
    } else {
        env.note_seats_changed(product);
        (AssignmentState::Waiting, Some(NO_FREE_SEAT))
    })
}

#[allow(clippy::too_many_arguments)]
async fn insert_assignment(
    c: &mut Conn,
    env: &Env<'_>,
    group: GroupId,
    user: UserId,
    product: ProductId,
    state: AssignmentState,
    reason: Option<&str>,
    queue_number: i64,
) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO group_assignments (tenant_id, group_id, user_id, product_id, state, reason, \
           queue_number, since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(env.tenant())
    .bind(group)
    .bind(user)
    .bind(product)
    .bind(state.as_str())
    .bind(reason.map(str::to_owned))
    .bind(queue_number)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn add_group_member(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    user: &UserRef,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let user = find_user_locked(c, env, user).await?;
    let uid = user.user.id;
    let member: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(uid)
    .fetch_one(&mut *c)
    .await?;
    if member > 0 {
        return Ok(changed(0));
    }
    // The group row next, before any waiting list or tenant counter: every command locks a
    // member, then its group, then the rest (no deadlock cycle with renames and deletions).
    touch_group(c, env, group.id).await?;
    let licenses: Vec<ProductId> = sqlx::query_scalar(
        "SELECT product_id FROM group_licenses WHERE tenant_id = $1 AND group_id = $2 ORDER BY product_id",
    )
    .bind(env.tenant())
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?;
    // The waiting lists first, then the counter (the lock order every fill keeps).
    for product in &licenses {
        lock_waiting_list(c, env, *product).await?;
    }
    // One number for the membership (its joining order), one per license (places in line).
    let position = take_queue_numbers(c, env, 1 + licenses.len() as i64).await?;
    // The user row is locked, so no concurrent join of the same user got in between.
    sqlx::query(
        "INSERT INTO group_members (tenant_id, group_id, user_id, added_at, position) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(uid)
    .bind(env.now)
    .bind(position)
    .execute(&mut *c)
    .await?;
    let mut states = Vec::new();
    if !licenses.is_empty() {
        let first = position + 1;
        for (i, product) in licenses.iter().enumerate() {
            let (state, reason) =
                initial_state(c, env, uid, user.user.retired, user.user.disabled, *product).await?;
            insert_assignment(
                c,
                env,
                group.id,
                uid,
                *product,
                state,
                reason,
                first + i as i64,
            )
            .await?;
            states.push(json!({ "product": product, "state": state, "reason": reason }));
        }
    }
    audit(
        env,
        "group.member.add",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "group": group.id, "group_name": group.name, "assignments": states }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn remove_group_member(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    user: &UserRef,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let user = find_user_locked(c, env, user).await?;
    let uid = user.user.id;
    #[derive(sqlx::FromRow)]
    struct Gone {
        product_id: ProductId,
        state: String,
    }
    let gone: Vec<Gone> = sqlx::query_as(
        "DELETE FROM group_assignments WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3 \
         RETURNING product_id, state",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(uid)
    .fetch_all(&mut *c)
    .await?;
    let removed = sqlx::query(
        "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(uid)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if removed == 0 {
        return Ok(changed(0));
    }
    touch_group(c, env, group.id).await?;
    let mut freed = 0;
    for row in &gone {
        if row.state == AssignmentState::Active.as_str() {
            freed += release_if_unexplained(c, env, uid, row.product_id).await?;
        }
    }
    audit(
        env,
        "group.member.remove",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "group": group.id, "group_name": group.name,
                "products": gone.iter().map(|g| g.product_id).collect::<Vec<_>>(), "seats_freed": freed }),
    )
    .await?;
    Ok(changed(1 + freed))
}

pub(super) async fn add_group_license(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    product: &ProductRef,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let product = find_product(c, env.tenant(), product).await?;
    if product.product.kind != ProductKind::User {
        return Err(LedgerError::WrongKind {
            kind: product.product.kind,
            action: "given to a group (only user products are)",
        }
        .into());
    }
    if product.product.is_user_plan() {
        return Err(LedgerError::Invalid {
            field: "product",
            reason: format!(
                "{} is a user plan; give a group its products instead",
                product.product.full_name()
            ),
        }
        .into());
    }
    let inserted = sqlx::query(
        "INSERT INTO group_licenses (tenant_id, group_id, product_id, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(product.id())
    .bind(env.now)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(changed(0));
    }
    lock_waiting_list(c, env, product.id()).await?;
    #[derive(sqlx::FromRow)]
    struct Member {
        user_id: UserId,
        retired: i64,
        disabled: i64,
    }
    // Members queue in the order they joined.
    let members: Vec<Member> = sqlx::query_as(
        "SELECT m.user_id, u.retired, u.disabled FROM group_members m \
         JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.group_id = $2 ORDER BY m.position",
    )
    .bind(env.tenant())
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?;
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    if !members.is_empty() {
        let first = take_queue_numbers(c, env, members.len() as i64).await?;
        for (i, m) in members.iter().enumerate() {
            let (state, reason) = initial_state(
                c,
                env,
                m.user_id,
                m.retired != 0,
                m.disabled != 0,
                product.id(),
            )
            .await?;
            insert_assignment(
                c,
                env,
                group.id,
                m.user_id,
                product.id(),
                state,
                reason,
                first + i as i64,
            )
            .await?;
            *counts.entry(state.as_str()).or_default() += 1;
        }
    }
    audit(
        env,
        "group.license.add",
        Subjects {
            product: Some(product.id()),
            ..Default::default()
        },
        json!({ "group": group.id, "group_name": group.name, "members": members.len(), "states": counts }),
    )
    .await?;
    Ok(changed(1))
}

/// Takes group rows away (a license, or the whole group) and the seats they alone explained.
/// The members are locked in id order first, as every command changing one user's holdings does.
async fn remove_rows(
    c: &mut Conn,
    env: &Env<'_>,
    group: GroupId,
    product: Option<ProductId>,
) -> OpResult<u64> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: UserId,
        product_id: ProductId,
        state: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT user_id, product_id, state FROM group_assignments \
         WHERE tenant_id = $1 AND group_id = $2 AND ($3 IS NULL OR product_id = $3) \
         ORDER BY user_id, product_id",
    )
    .bind(env.tenant())
    .bind(group)
    .bind(product)
    .fetch_all(&mut *c)
    .await?;
    let mut users: Vec<UserId> = rows.iter().map(|r| r.user_id).collect();
    users.dedup();
    for user in &users {
        find_user_locked(c, env, &UserRef::Id(*user)).await?;
    }
    sqlx::query(
        "DELETE FROM group_assignments WHERE tenant_id = $1 AND group_id = $2 AND ($3 IS NULL OR product_id = $3)",
    )
    .bind(env.tenant())
    .bind(group)
    .bind(product)
    .execute(&mut *c)
    .await?;
    let mut freed = 0;
    for row in &rows {
        if row.state == AssignmentState::Active.as_str() {
            freed += release_if_unexplained(c, env, row.user_id, row.product_id).await?;
        }
    }
    Ok(freed)
}

pub(super) async fn remove_group_license(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
    product: &ProductRef,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let product = find_product(c, env.tenant(), product).await?;
    let freed = remove_rows(c, env, group.id, Some(product.id())).await?;
    let removed = sqlx::query(
        "DELETE FROM group_licenses WHERE tenant_id = $1 AND group_id = $2 AND product_id = $3",
    )
    .bind(env.tenant())
    .bind(group.id)
    .bind(product.id())
    .execute(&mut *c)
    .await?
    .rows_affected();
    if removed == 0 {
        return Ok(changed(0));
    }
    audit(
        env,
        "group.license.remove",
        Subjects {
            product: Some(product.id()),
            ..Default::default()
        },
        json!({ "group": group.id, "group_name": group.name, "seats_freed": freed }),
    )
    .await?;
    Ok(changed(1 + freed))
}

pub(super) async fn delete_group(
    c: &mut Conn,
    env: &Env<'_>,
    group: &GroupRef,
) -> OpResult<Outcome> {
    let group = find_group(c, env.tenant(), group).await?;
    let freed = remove_rows(c, env, group.id, None).await?;
    for statement in [
        "DELETE FROM harvest_exempt_groups WHERE tenant_id = $1 AND group_id = $2",
        "DELETE FROM group_licenses WHERE tenant_id = $1 AND group_id = $2",
        "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2",
        "DELETE FROM user_groups WHERE tenant_id = $1 AND id = $2",
    ] {
        sqlx::query(statement)
            .bind(env.tenant())
            .bind(group.id)
            .execute(&mut *c)
            .await?;
    }
    audit(
        env,
        "group.delete",
        Subjects::default(),
        json!({ "before": group, "seats_freed": freed }),
    )
    .await?;
    Ok(changed(1 + freed))
}

// ---------------------------------------------------------------------------------------------
// Disabled users

pub(super) async fn disable_user(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    require_not_retired(&user)?;
    let uid = user.user.id;
    let flagged = sqlx::query(
        "UPDATE users SET disabled = 1 WHERE tenant_id = $1 AND id = $2 AND disabled = 0",
    )
    .bind(env.tenant())
    .bind(uid)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if flagged == 0 {
        return Ok(changed(0));
    }
    let keep: i64 = sqlx::query_scalar("SELECT disabled_keep_seats FROM tenants WHERE id = $1")
        .bind(env.tenant())
        .fetch_one(&mut *c)
        .await?;
    let sessions = end_live_sessions(c, env, Some(uid), None, EndReason::Admin).await?;
    let freed = if keep != 0 {
        // Seats stay; what was only waiting waits no more.
        sqlx::query(
            "UPDATE group_assignments SET state = 'error', reason = $3, since = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND state <> 'active'",
        )
        .bind(env.tenant())
        .bind(uid)
        .bind(USER_DISABLED)
        .bind(env.now)
        .execute(&mut *c)
        .await?;
        0
    } else {
        block_user(c, env, uid, USER_DISABLED).await?;
        strip_licenses(c, env, uid).await?
    };
    // As with retirement: every credential acting as the user ends now and none comes back.
    let tokens = revoke_user_tokens(c, env, uid).await?;
    audit(
        env,
        "user.disable",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "before": { "disabled": false }, "after": { "disabled": true }, "seats_kept": keep != 0,
                "seats_freed": freed, "sessions_ended": sessions, "tokens_revoked": tokens }),
    )
    .await?;
    Ok(changed(1 + freed + sessions + tokens))
}

pub(super) async fn enable_user(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let uid = user.user.id;
    let flagged = sqlx::query(
        "UPDATE users SET disabled = 0 WHERE tenant_id = $1 AND id = $2 AND disabled = 1",
    )
    .bind(env.tenant())
    .bind(uid)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if flagged == 0 {
        return Ok(changed(0));
    }
    unblock_user(c, env, uid, USER_DISABLED).await?;
    audit(
        env,
        "user.enable",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "before": { "disabled": true }, "after": { "disabled": false } }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn set_disabled_keep_seats(
    c: &mut Conn,
    env: &Env<'_>,
    keep: bool,
) -> OpResult<Outcome> {
    let n = sqlx::query(
        "UPDATE tenants SET disabled_keep_seats = $2 WHERE id = $1 AND disabled_keep_seats <> $2",
    )
    .bind(env.tenant())
    .bind(keep as i64)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(changed(0));
    }
    audit(
        env,
        "tenant.settings",
        Subjects::default(),
        json!({ "before": { "disabled_keep_seats": !keep }, "after": { "disabled_keep_seats": keep } }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) fn require_enabled(user: &UserRow) -> OpResult<()> {
    if user.user.disabled {
        return Err(LedgerError::Disabled(user.user.id).into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The waiting list

/// Serves the waiting lists of every product the command noted (seats freed or added, members
/// queued), until no note is left: giving a seat may make a dependent product's prerequisite
/// held, which notes that product in turn. Runs at the end of every command (`ops::execute`).
pub(crate) async fn settle(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    // Each round serves products noted by the previous one; prerequisite chains are finite
    // (no cycles), so this ends.
    loop {
        let noted = env.take_noted();
        if noted.is_empty() {
            return Ok(());
        }
        for product in noted {
            fill(c, env, product).await?;
        }
    }
}

/// Gives free seats of `product` to its waiting members, first come first served: in queue
/// order, each takes a seat from its own pool by the same conditional claim as an assignment;
/// a member whose pool has nothing left keeps waiting, and so does everyone behind it in that
/// pool. Members refused by a rule (prerequisite, expiry) are marked `error` and skipped.
async fn fill(c: &mut Conn, env: &Env<'_>, product: ProductId) -> OpResult<()> {
    let tenant = env.tenant();
    // Fills of one product run one at a time, and a member queued by a concurrent command is
    // either seen here (it committed first) or sees the seats this transaction freed (its fill
    // waits for this lock, then reads them committed): no seat stays free while a member
    // waits for it.
    if !lock_waiting_list(c, env, product).await? {
        return Ok(());
    }
    let Ok(product) = find_product(c, tenant, &ProductRef::Id(product)).await else {
        return Ok(());
    };
    #[derive(sqlx::FromRow)]
    struct Waiter {
        user_id: UserId,
        queue_number: i64,
    }
    const PAGE: i64 = 256;
    let mut after = i64::MIN;
    let mut exhausted: Vec<Pool> = Vec::new();
    let mut served: Vec<UserId> = Vec::new();
    loop {
        let page: Vec<Waiter> = sqlx::query_as(
            "SELECT user_id, queue_number FROM group_assignments \
             WHERE tenant_id = $1 AND product_id = $2 AND state <> 'active' AND queue_number > $3 \
               AND (state = 'waiting' OR reason = $4) \
             ORDER BY queue_number LIMIT $5",
        )
        .bind(tenant)
        .bind(product.id())
        .bind(after)
        .bind(PREREQUISITE_MISSING)
        .bind(PAGE)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.queue_number;
        let full = page.len() as i64 == PAGE;
        for waiter in page {
            if served.contains(&waiter.user_id) {
                continue;
            }
            served.push(waiter.user_id);
            // The pool decides whether it is worth locking the user at all.
            let peek = find_user(c, tenant, &UserRef::Id(waiter.user_id)).await?;
            if exhausted.contains(&peek.pool()) {
                continue;
            }
            let user = find_user_locked(c, env, &UserRef::Id(waiter.user_id)).await?;
            serve(c, env, &user, &product, &mut exhausted).await?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// One member's turn: re-read under its lock, then take a seat or say why not.
async fn serve(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    exhausted: &mut Vec<Pool>,
) -> OpResult<()> {
    let uid = user.user.id;
    let pid = product.id();
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM group_assignments WHERE tenant_id = $1 AND user_id = $2 \
           AND product_id = $3 AND (state = 'waiting' OR (state = 'error' AND reason = $4))",
    )
    .bind(env.tenant())
    .bind(uid)
    .bind(pid)
    .bind(PREREQUISITE_MISSING)
    .fetch_one(&mut *c)
    .await?;
    if pending == 0 {
        return Ok(()); // served by a concurrent transaction, or no longer a member
    }
    let refuse = |reason: &'static str| (AssignmentState::Error, reason);
    let verdict = if user.user.retired {
        Some(refuse(USER_RETIRED))
    } else if user.user.disabled {
        Some(refuse(USER_DISABLED))
    } else if product.expired(env.now) {
        Some(refuse(PRODUCT_EXPIRED))
    } else {
        None
    };
    if let Some((state, reason)) = verdict {
        set_state(c, env, uid, Some(pid), None, state, Some(reason)).await?;
        return Ok(());
    }
    if has_unexpired_seat(c, env, uid, pid).await? {
        return seat_now_held(c, env, uid, pid).await;
    }
    if let Some(required) = product.product.prerequisite
        && !holds(c, env, uid, required).await?
    {
        set_state(
            c,
            env,
            uid,
            Some(pid),
            None,
            AssignmentState::Error,
            Some(PREREQUISITE_MISSING),
        )
        .await?;
        return Ok(());
    }
    let pool = user.pool();
    // A refused claim may have charged a quota before failing: its own savepoint undoes it.
    c.execute("SAVEPOINT allot_fill").await?;
    match take_seat(c, env, user, product, None).await {
        Ok(seat) => {
            c.execute("RELEASE SAVEPOINT allot_fill").await?;
            let groups: Vec<GroupId> = sqlx::query_scalar(
                "SELECT group_id FROM group_assignments WHERE tenant_id = $1 AND user_id = $2 \
                   AND product_id = $3 AND state <> 'active' ORDER BY group_id",
            )
            .bind(env.tenant())
            .bind(uid)
            .bind(pid)
            .fetch_all(&mut *c)
            .await?;
            seat_now_held(c, env, uid, pid).await?;
            audit(
                env,
                "group.seat.give",
                Subjects {
                    user: Some(uid),
                    product: Some(pid),
                    seat: Some(seat.uuid),
                    ..Default::default()
                },
                json!({ "groups": groups, "before": { "holder": null }, "after": { "holder": uid }, "number": seat.number }),
            )
            .await?;
            Ok(())
        }
        Err(OpError::Rule(rule)) => {
            c.execute("ROLLBACK TO SAVEPOINT allot_fill").await?;
            c.execute("RELEASE SAVEPOINT allot_fill").await?;
            let (state, reason) = match rule {
                LedgerError::NoSeatFree { .. } => {
                    exhausted.push(pool);
                    (AssignmentState::Waiting, NO_FREE_SEAT)
                }
                LedgerError::QuotaExhausted { .. } => {
                    exhausted.push(pool);
                    (AssignmentState::Waiting, QUOTA_EXHAUSTED)
                }
                LedgerError::ProductExpired { .. } => (AssignmentState::Error, PRODUCT_EXPIRED),
                other => (AssignmentState::Error, other.code()),
            };
            set_state(c, env, uid, Some(pid), None, state, Some(reason)).await?;
            Ok(())
        }
        Err(store) => Err(store),
    }
}
