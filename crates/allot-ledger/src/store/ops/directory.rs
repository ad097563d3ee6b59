//! Tenants, companies and users.

use super::*;

/// Creates a tenant and runs `setup` in it (its admin login, ...), all in the caller's
/// transaction: a refusal of any part is the whole call's refusal. `by` gives the actor and
/// request id; its tenant is the new one's.
pub(crate) async fn create_tenant(
    tx: &mut Tx<'_>,
    name: &str,
    by: &Context,
    now: i64,
    backend: Backend,
    setup: &[Command],
    vault: &crate::keys::KeyVault,
) -> OpResult<(i64, Vec<Outcome>)> {
    let c: &mut Conn = tx;
    let name = rules::validate_name("tenant", name)?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name.clone())
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(id) = id else {
        return Err(LedgerError::AlreadyExists {
            what: "tenant",
            name,
        }
        .into());
    };
    let ctx = Context {
        tenant: id,
        ..by.clone()
    };
    let env = Env::new(&ctx, now, backend);
    audit(
        &env,
        "tenant.create",
        Subjects::default(),
        json!({ "after": { "name": name } }),
    )
    .await?;
    finish_command(c, &env).await?;
    // The tenant's first license-signing key is made with it.
    first_signing_key(tx, id, &by.actor, now, backend, vault).await?;
    let mut outcomes = Vec::with_capacity(setup.len());
    for command in setup {
        outcomes.push(execute(tx, &env, command).await?);
        finish_command(tx, &env).await?;
    }
    Ok((id, outcomes))
}

pub(super) async fn create_company(
    c: &mut Conn,
    env: &Env<'_>,
    name: &str,
    pool_mode: PoolMode,
) -> OpResult<Outcome> {
    let name = rules::validate_name("name", name)?;
    if find_company(c, env.tenant(), &CompanyRef::Name(name.clone()))
        .await
        .is_ok()
    {
        return Err(LedgerError::AlreadyExists {
            what: "company",
            name,
        }
        .into());
    }
    let id = bump_counter(c, env.tenant(), "last_company_id", 1).await?;
    let company = Company {
        id,
        uuid: Uuid::new_v4(),
        name,
        pool_mode,
    };
    sqlx::query(
        "INSERT INTO companies (tenant_id, id, uuid, name, name_key, pool_mode, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(env.tenant())
    .bind(id)
    .bind(company.uuid.to_string())
    .bind(company.name.clone())
    .bind(rules::name_key(&company.name))
    .bind(pool_mode.as_str())
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "company", &company.name))?;
    audit(
        env,
        "company.create",
        Subjects {
            company: Some(id),
            ..Default::default()
        },
        json!({ "after": company }),
    )
    .await?;
    Ok(Outcome::Company(company))
}

/// Maps a unique violation (a concurrent insert of the same name) to `AlreadyExists`.
pub(super) fn unique_to(e: sqlx::Error, what: &'static str, name: &str) -> OpError {
    if is_unique_violation(&e) {
        LedgerError::AlreadyExists {
            what,
            name: name.to_owned(),
        }
        .into()
    } else {
        e.into()
    }
}

/// For a command that makes `what` when it finds none: another transaction made it between the
/// look and the insert (PostgreSQL, READ COMMITTED; SQLite's one writer cannot interleave). The
/// whole transaction is run again, and its look then finds the row.
pub(super) fn created_meanwhile(e: OpError, what: &'static str) -> OpError {
    match e {
        OpError::Rule(LedgerError::AlreadyExists { what: made, .. }) if made == what => {
            OpError::Store(crate::error::StoreError::Contended)
        }
        other => other,
    }
}

pub(super) async fn edit_company(
    c: &mut Conn,
    env: &Env<'_>,
    company: &CompanyRef,
    name: Option<&str>,
    pool_mode: Option<PoolMode>,
) -> OpResult<Outcome> {
    let before = find_company(c, env.tenant(), company).await?;
    let mut after = before.clone();
    if let Some(name) = name {
        after.name = rules::validate_name("name", name)?;
    }
    if let Some(mode) = pool_mode {
        after.pool_mode = mode;
    }
    if after == before {
        return Ok(changed(0));
    }
    sqlx::query("UPDATE companies SET name = $3, name_key = $4, pool_mode = $5 WHERE tenant_id = $1 AND id = $2")
        .bind(env.tenant())
        .bind(before.id)
        .bind(after.name.clone())
        .bind(rules::name_key(&after.name))
        .bind(after.pool_mode.as_str())
        .execute(&mut *c)
        .await
        .map_err(|e| unique_to(e, "company", &after.name))?;
    if after.pool_mode != before.pool_mode {
        pool_changed(c, env, None, Some(before.id)).await?;
    }
    audit(
        env,
        "company.edit",
        Subjects {
            company: Some(before.id),
            ..Default::default()
        },
        json!({ "before": before, "after": after }),
    )
    .await?;
    Ok(Outcome::Company(after))
}

pub(super) async fn delete_company(
    c: &mut Conn,
    env: &Env<'_>,
    company: &CompanyRef,
) -> OpResult<Outcome> {
    let company = find_company(c, env.tenant(), company).await?;
    // Seats bought for the company have nowhere to go: the caller must remove them first.
    let pool_seats: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats WHERE tenant_id = $1 AND pool_company_id = $2",
    )
    .bind(env.tenant())
    .bind(company.id)
    .fetch_one(&mut *c)
    .await?;
    if pool_seats > 0 {
        return Err(LedgerError::Invalid {
            field: "company",
            reason: format!(
                "the company's own pool still has {pool_seats} seat(s); remove them before deleting it"
            ),
        }
        .into());
    }
    // Seats stay with their holders; only the charge against the company's quota goes.
    let charges_cleared = sqlx::query(
        "UPDATE seats SET charged_company_id = NULL WHERE tenant_id = $1 AND charged_company_id = $2",
    )
    .bind(env.tenant())
    .bind(company.id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM company_quotas WHERE tenant_id = $1 AND company_id = $2")
        .bind(env.tenant())
        .bind(company.id)
        .execute(&mut *c)
        .await?;
    let members_detached =
        sqlx::query("UPDATE users SET company_id = NULL WHERE tenant_id = $1 AND company_id = $2")
            .bind(env.tenant())
            .bind(company.id)
            .execute(&mut *c)
            .await?
            .rows_affected();
    sqlx::query("DELETE FROM companies WHERE tenant_id = $1 AND id = $2")
        .bind(env.tenant())
        .bind(company.id)
        .execute(&mut *c)
        .await?;
    audit(
        env,
        "company.delete",
        Subjects {
            company: Some(company.id),
            ..Default::default()
        },
        json!({ "before": company, "members_detached": members_detached, "charges_cleared": charges_cleared }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn set_company_quota(
    c: &mut Conn,
    env: &Env<'_>,
    company: &CompanyRef,
    product: &ProductRef,
    quota: Option<i64>,
) -> OpResult<Outcome> {
    let company = find_company(c, env.tenant(), company).await?;
    let product = find_product(c, env.tenant(), product).await?;
    #[derive(sqlx::FromRow)]
    struct QuotaRow {
        quota: i64,
        used: i64,
    }
    let current: Option<QuotaRow> = sqlx::query_as(
        "SELECT quota, used FROM company_quotas WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3",
    )
    .bind(env.tenant())
    .bind(company.id)
    .bind(product.id())
    .fetch_optional(&mut *c)
    .await?;
    let (old_quota, used) = match &current {
        Some(row) => (Some(row.quota), row.used),
        None => (None, 0),
    };
    if old_quota == quota {
        return Ok(changed(0));
    }
    match quota {
        Some(q) => {
            rules::validate_seat_count(q, true).map_err(|_| LedgerError::Invalid {
                field: "quota",
                reason: format!("must be between 0 and {}", rules::MAX_SEATS_PER_CALL),
            })?;
            // The CHECK (used <= quota) refuses a quota below what is in use, even if a seat
            // was charged since `used` was read.
            let result = if current.is_some() {
                sqlx::query(
                    "UPDATE company_quotas SET quota = $4 WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3",
                )
            } else {
                sqlx::query(
                    "INSERT INTO company_quotas (tenant_id, company_id, product_id, quota) VALUES ($1, $2, $3, $4)",
                )
            }
            .bind(env.tenant())
            .bind(company.id)
            .bind(product.id())
            .bind(q)
            .execute(&mut *c)
            .await;
            if let Err(e) = result {
                if q < used {
                    return Err(LedgerError::OverAllocated {
                        held: used,
                        total: q,
                    }
                    .into());
                }
                return Err(e.into());
            }
        }
        None => {
            let removed = sqlx::query(
                "DELETE FROM company_quotas WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3 AND used = 0",
            )
            .bind(env.tenant())
            .bind(company.id)
            .bind(product.id())
            .execute(&mut *c)
            .await?
            .rows_affected();
            if removed == 0 {
                return Err(LedgerError::OverAllocated {
                    held: used,
                    total: 0,
                }
                .into());
            }
        }
    }
    // A larger quota may let waiting members of the company have seats.
    env.note_seats_changed(product.id());
    audit(
        env,
        "company.quota",
        Subjects {
            company: Some(company.id),
            product: Some(product.id()),
            ..Default::default()
        },
        json!({ "before": { "quota": old_quota }, "after": { "quota": quota }, "used": used }),
    )
    .await?;
    Ok(changed(1))
}

/// See [`Command::UpsertUser`]. Each part is the existing command's own statements (and audit
/// record), so an import is audited as the same creations, edits and assignments; the count
/// of changes is what they changed (0 when the user already was as stated).
pub(super) async fn upsert_user(
    c: &mut Conn,
    env: &Env<'_>,
    upsert: &UserUpsert,
) -> OpResult<Outcome> {
    let login = rules::validate_name("login", &upsert.login)?;
    let mut changes = 0;
    let company = match upsert.company.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => {
            match find_company(c, env.tenant(), &CompanyRef::Name(name.to_owned())).await {
                Ok(company) => Some(company.id),
                Err(OpError::Rule(LedgerError::UnknownCompany(_))) => {
                    match create_company(c, env, name, PoolMode::Global)
                        .await
                        .map_err(|e| created_meanwhile(e, "company"))?
                    {
                        Outcome::Company(company) => {
                            changes += 1;
                            Some(company.id)
                        }
                        other => {
                            return Err(OpError::Store(crate::error::StoreError::Corrupt(
                                format!("create_company answered {other:?}"),
                            )));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    let by_login = UserRef::Login(login.clone());
    match find_user(c, env.tenant(), &by_login).await {
        Ok(_) => {
            let patch = UserPatch {
                first_name: upsert.first_name.clone(),
                last_name: upsert.last_name.clone(),
                email: upsert.email.clone(),
                company: company.map(|id| Some(CompanyRef::Id(id))),
                ..Default::default()
            };
            changes += edit_user(c, env, &by_login, &patch).await?.changed();
        }
        Err(OpError::Rule(LedgerError::UnknownUser(_))) => {
            let new = NewUser {
                first_name: upsert.first_name.clone().unwrap_or_default(),
                last_name: upsert.last_name.clone().unwrap_or_default(),
                email: upsert.email.clone().unwrap_or_default(),
                company: company.map(CompanyRef::Id),
                ..NewUser::named(&login)
            };
            changes += create_user(c, env, &new)
                .await
                .map_err(|e| created_meanwhile(e, "user"))?
                .changed();
        }
        Err(e) => return Err(e),
    }
    for product in &upsert.licenses {
        // Assigning what is held already changes nothing (changed 0).
        if assign(c, env, &by_login, product).await?.changed() > 0 {
            changes += 1;
        }
    }
    for name in &upsert.groups {
        // The group is made when missing; joining a group one is in changes nothing.
        let name = rules::validate_name("groups", name)?;
        let group = match find_group(c, env.tenant(), &GroupRef::Name(name.clone())).await {
            Ok(group) => group,
            Err(OpError::Rule(LedgerError::UnknownGroup(_))) => {
                match create_group(c, env, &name, None, None)
                    .await
                    .map_err(|e| created_meanwhile(e, "group"))?
                {
                    Outcome::Group(group) => {
                        changes += 1;
                        group
                    }
                    other => {
                        return Err(OpError::Store(crate::error::StoreError::Corrupt(format!(
                            "create_group answered {other:?}"
                        ))));
                    }
                }
            }
            Err(e) => return Err(e),
        };
        changes += add_group_member(c, env, &GroupRef::Id(group.id), &by_login)
            .await?
            .changed();
    }
    Ok(changed(changes))
}

pub(super) async fn create_user(c: &mut Conn, env: &Env<'_>, new: &NewUser) -> OpResult<Outcome> {
    let login = rules::validate_name("login", &new.login)?;
    for (field, value) in [
        ("first_name", &new.first_name),
        ("last_name", &new.last_name),
        ("email", &new.email),
        ("user_type", &new.user_type),
    ] {
        rules::validate_text(field, value)?;
    }
    for (field, value) in [
        ("external_id", &new.external_id),
        ("display_name", &new.display_name),
    ] {
        if let Some(value) = value {
            rules::validate_text(field, value)?;
        }
    }
    if find_user(c, env.tenant(), &UserRef::Login(login.clone()))
        .await
        .is_ok()
    {
        return Err(LedgerError::AlreadyExists {
            what: "user",
            name: login,
        }
        .into());
    }
    let company = match &new.company {
        Some(company) => Some(find_company(c, env.tenant(), company).await?),
        None => None,
    };
    let id = match new.id {
        Some(id) if id <= 0 => {
            return Err(LedgerError::Invalid {
                field: "id",
                reason: "must be a positive integer".into(),
            }
            .into());
        }
        Some(id) => {
            if find_user(c, env.tenant(), &UserRef::Id(id)).await.is_ok() {
                return Err(LedgerError::AlreadyExists {
                    what: "user id",
                    name: id.to_string(),
                }
                .into());
            }
            // Keep the allocator ahead of explicitly chosen ids.
            sqlx::query(
                "UPDATE tenants SET last_user_id = CASE WHEN last_user_id < $2 THEN $2 ELSE last_user_id END WHERE id = $1",
            )
            .bind(env.tenant())
            .bind(id)
            .execute(&mut *c)
            .await?;
            id
        }
        None => bump_counter(c, env.tenant(), "last_user_id", 1).await?,
    };
    let user = User {
        id,
        uuid: Uuid::new_v4(),
        login,
        first_name: new.first_name.clone(),
        last_name: new.last_name.clone(),
        email: new.email.clone(),
        company: company.as_ref().map(|c| c.id),
        license_mode: new.license_mode,
        retired: false,
        disabled: false,
        user_type: new.user_type.clone(),
        external_id: new.external_id.clone(),
        display_name: new.display_name.clone(),
        created_at: rules::from_micros(env.now),
        modified_at: rules::from_micros(env.now),
    };
    sqlx::query(
        "INSERT INTO users (tenant_id, id, uuid, login, login_key, first_name, last_name, email, \
           company_id, license_mode, retired, user_type, created_at, external_id, display_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $14)",
    )
    .bind(env.tenant())
    .bind(id)
    .bind(user.uuid.to_string())
    .bind(user.login.clone())
    .bind(rules::name_key(&user.login))
    .bind(user.first_name.clone())
    .bind(user.last_name.clone())
    .bind(user.email.clone())
    .bind(user.company)
    .bind(user.license_mode.as_str())
    .bind(user.user_type.clone())
    .bind(env.now)
    .bind(user.external_id.clone())
    .bind(user.display_name.clone())
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "user", &user.login))?;
    audit(
        env,
        "user.create",
        Subjects {
            user: Some(id),
            company: user.company,
            ..Default::default()
        },
        json!({ "after": user }),
    )
    .await?;
    Ok(Outcome::User(user))
}

pub(super) async fn edit_user(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    patch: &UserPatch,
) -> OpResult<Outcome> {
    let before = find_user(c, env.tenant(), user).await?.user;
    let mut after = before.clone();
    if let Some(login) = &patch.login {
        after.login = rules::validate_name("login", login)?;
    }
    for (field, target, value) in [
        ("first_name", &mut after.first_name, &patch.first_name),
        ("last_name", &mut after.last_name, &patch.last_name),
        ("email", &mut after.email, &patch.email),
        ("user_type", &mut after.user_type, &patch.user_type),
    ] {
        if let Some(value) = value {
            rules::validate_text(field, value)?;
            *target = value.clone();
        }
    }
    if let Some(company) = &patch.company {
        after.company = match company {
            Some(company) => Some(find_company(c, env.tenant(), company).await?.id),
            None => None,
        };
    }
    if let Some(mode) = patch.license_mode {
        after.license_mode = mode;
    }
    for (field, target, value) in [
        ("external_id", &mut after.external_id, &patch.external_id),
        ("display_name", &mut after.display_name, &patch.display_name),
    ] {
        if let Some(value) = value {
            if let Some(text) = value {
                rules::validate_text(field, text)?;
            }
            *target = value.clone();
        }
    }
    if after == before {
        return Ok(changed(0));
    }
    after.modified_at = rules::from_micros(env.now);
    sqlx::query(
        "UPDATE users SET login = $3, login_key = $4, first_name = $5, last_name = $6, email = $7, \
           company_id = $8, license_mode = $9, user_type = $10, external_id = $11, display_name = $12, \
           modified_at = $13 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(before.id)
    .bind(after.login.clone())
    .bind(rules::name_key(&after.login))
    .bind(after.first_name.clone())
    .bind(after.last_name.clone())
    .bind(after.email.clone())
    .bind(after.company)
    .bind(after.license_mode.as_str())
    .bind(after.user_type.clone())
    .bind(after.external_id.clone())
    .bind(after.display_name.clone())
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "user", &after.login))?;
    if (after.company, after.license_mode) != (before.company, before.license_mode) {
        // Another pool: seats there may be free for what the user waits for.
        pool_changed(c, env, Some(before.id), None).await?;
    }
    audit(
        env,
        "user.edit",
        Subjects {
            user: Some(before.id),
            company: after.company,
            ..Default::default()
        },
        json!({ "before": before, "after": after }),
    )
    .await?;
    Ok(Outcome::User(after))
}
