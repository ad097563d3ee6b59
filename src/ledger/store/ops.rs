//! Every command, as statements inside the caller's transaction. Rules that depend on state are
//! enforced here by conditional updates (`... WHERE holder_id IS NULL`), constraints and row
//! locks, never by trusting an earlier read; each change appends its audit record before the
//! transaction commits.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Conn, Env, OpError, OpResult, Tx, is_unique_violation};
use crate::ledger::command::*;
use crate::ledger::error::LedgerError;
use crate::ledger::model::*;
use crate::ledger::rules::{self, Pool};

pub(crate) async fn execute(
    tx: &mut Tx<'_>,
    env: &Env<'_>,
    command: &Command,
) -> OpResult<Outcome> {
    let c: &mut Conn = tx;
    match command {
        Command::CreateCompany { name, pool_mode } => {
            create_company(c, env, name, *pool_mode).await
        }
        Command::EditCompany {
            company,
            name,
            pool_mode,
        } => edit_company(c, env, company, name.as_deref(), *pool_mode).await,
        Command::SetCompanyQuota {
            company,
            product,
            quota,
        } => set_company_quota(c, env, company, product, *quota).await,
        Command::CreateUser(new) => create_user(c, env, new).await,
        Command::EditUser { user, patch } => edit_user(c, env, user, patch).await,
        Command::CreateProduct(new) => create_product(c, env, new).await,
        Command::EditProduct { product, patch } => edit_product(c, env, product, patch).await,
        Command::AddSeats(new) => add_seats(c, env, new).await,
        Command::Assign { user, product } => assign(c, env, user, product).await,
        Command::Unassign { user, product } => unassign(c, env, user, product).await,
        Command::RemoveAllLicenses { user } => remove_all_licenses(c, env, user).await,
        Command::Retire { user } => retire(c, env, user).await,
        Command::Unretire { user } => unretire(c, env, user).await,
        Command::GrantSeat { seat, user } => grant_seat(c, env, *seat, user).await,
        Command::ReleaseSeat { seat, user } => release_seat(c, env, *seat, user.as_ref()).await,
        Command::RevokeSeat { seat, user } => revoke_seat(c, env, *seat, user.as_ref()).await,
        Command::ActivateSeat { seat, activation } => {
            activate_seat(c, env, *seat, activation).await
        }
        Command::RegisterComputer {
            hardware_id,
            name,
            operating_system,
            user,
        } => register_computer(c, env, hardware_id, name, operating_system, user.as_ref()).await,
        Command::LogOn {
            user,
            client,
            device,
            product,
            lease_seconds,
        } => {
            log_on(
                c,
                env,
                user,
                *client,
                device,
                product.as_ref(),
                *lease_seconds,
            )
            .await
        }
        Command::Heartbeat {
            session,
            lease_token,
            lease_seconds,
        } => heartbeat(c, env, *session, lease_token, *lease_seconds).await,
        Command::LogOff {
            users,
            client,
            reason,
        } => log_off(c, env, users, *client, *reason).await,
        Command::EndSession {
            session,
            lease_token,
            reason,
        } => end_session_command(c, env, *session, lease_token.as_deref(), *reason).await,
        Command::ExpireSessions => expire_sessions(c, env, None).await.map(changed),
        Command::CreateLogin {
            login,
            password_hash,
            role,
            user,
        } => create_login(c, env, login, password_hash, *role, user.as_ref()).await,
        Command::SetPassword {
            login,
            password_hash,
        } => set_password(c, env, login, password_hash).await,
        Command::IssueToken {
            token_hash,
            role,
            login,
            user,
            label,
            expires_at,
        } => issue_token(c, env, token_hash, *role, login, *user, label, *expires_at).await,
        Command::RevokeToken { id } => revoke_token(c, env, *id).await,
    }
}

fn changed(n: u64) -> Outcome {
    Outcome::Changed { changed: n }
}

// ---------------------------------------------------------------------------------------------
// Rows

pub(crate) struct UserRow {
    pub user: User,
    pub company_mode: Option<PoolMode>,
}

impl UserRow {
    fn pool(&self) -> Pool {
        rules::effective_pool(
            self.user.license_mode,
            self.user.company.zip(self.company_mode),
        )
    }
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.uuid, u.login, u.first_name, u.last_name, u.email, \
     u.company_id, u.license_mode, u.retired, u.user_type, c.pool_mode AS company_mode";

pub(crate) fn user_from_row(row: &AnyRow) -> OpResult<UserRow> {
    Ok(UserRow {
        user: User {
            id: row.try_get("id")?,
            uuid: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
            login: row.try_get("login")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            email: row.try_get("email")?,
            company: row.try_get("company_id")?,
            license_mode: parse_enum(&row.try_get::<String, _>("license_mode")?)?,
            retired: row.try_get::<i64, _>("retired")? != 0,
            user_type: row.try_get("user_type")?,
        },
        company_mode: match row.try_get::<Option<String>, _>("company_mode")? {
            Some(mode) => Some(parse_enum(&mode)?),
            None => None,
        },
    })
}

pub(crate) struct ProductRow {
    pub product: Product,
    /// Stored expiry, microseconds.
    pub expires_at: Option<i64>,
}

impl ProductRow {
    fn id(&self) -> ProductId {
        self.product.id
    }
    fn expired(&self, now: i64) -> bool {
        rules::is_expired(self.expires_at, now)
    }
}

pub(crate) const PRODUCT_COLUMNS: &str = "p.id, o.name AS owner_name, p.name, p.description, \
     p.tooltip, p.kind, p.unrestricted, p.hidden, p.sort_order, p.extra_flags, p.prerequisite_id, \
     p.expires_at, p.trial";

pub(crate) fn product_from_row(row: &AnyRow) -> OpResult<ProductRow> {
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    Ok(ProductRow {
        product: Product {
            id: row.try_get("id")?,
            owner: row.try_get("owner_name")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            tooltip: row.try_get("tooltip")?,
            kind: parse_enum(&row.try_get::<String, _>("kind")?)?,
            unrestricted: row.try_get::<i64, _>("unrestricted")? != 0,
            hidden: row.try_get::<i64, _>("hidden")? != 0,
            sort_order: row.try_get("sort_order")?,
            extra_flags: row.try_get("extra_flags")?,
            plan_members: Vec::new(),
            prerequisite: row.try_get("prerequisite_id")?,
            expires_at: expires_at.map(rules::from_micros),
            trial: row.try_get::<i64, _>("trial")? != 0,
        },
        expires_at,
    })
}

pub(crate) struct SeatRow {
    pub seat: Seat,
    pub expires_at: Option<i64>,
    pub charged_company: Option<CompanyId>,
}

impl SeatRow {
    fn expired(&self, now: i64) -> bool {
        rules::is_expired(self.expires_at, now)
    }
}

pub(crate) const SEAT_COLUMNS: &str = "s.number, s.uuid, s.product_id, s.trial, s.expires_at, \
     s.transaction_id, s.pool_company_id, s.overflow, s.holder_id, s.charged_company_id, \
     s.session_uuid, s.activation_hid, s.activation_name, s.activation_os";

pub(crate) fn seat_from_row(row: &AnyRow) -> OpResult<SeatRow> {
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    let hid: Option<String> = row.try_get("activation_hid")?;
    let session: Option<String> = row.try_get("session_uuid")?;
    Ok(SeatRow {
        seat: Seat {
            id: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
            number: row.try_get("number")?,
            product: row.try_get("product_id")?,
            trial: row.try_get::<i64, _>("trial")? != 0,
            expires_at: expires_at.map(rules::from_micros),
            transaction_id: row.try_get("transaction_id")?,
            pool_company: row.try_get("pool_company_id")?,
            overflow: row.try_get::<i64, _>("overflow")? != 0,
            holder: row.try_get("holder_id")?,
            session: session.as_deref().map(parse_uuid).transpose()?,
            activation: match hid {
                Some(hardware_id) => Some(Activation {
                    hardware_id,
                    computer_name: row
                        .try_get::<Option<String>, _>("activation_name")?
                        .unwrap_or_default(),
                    operating_system: row
                        .try_get::<Option<String>, _>("activation_os")?
                        .unwrap_or_default(),
                }),
                None => None,
            },
        },
        expires_at,
        charged_company: row.try_get("charged_company_id")?,
    })
}

pub(crate) fn parse_uuid(text: &str) -> OpResult<Uuid> {
    Uuid::parse_str(text)
        .map_err(|_| OpError::Store(crate::ledger::StoreError::Corrupt(format!("uuid {text:?}"))))
}

pub(crate) fn parse_enum<T: std::str::FromStr>(text: &str) -> OpResult<T> {
    text.parse().map_err(|_| {
        OpError::Store(crate::ledger::StoreError::Corrupt(format!(
            "value {text:?}"
        )))
    })
}

// ---------------------------------------------------------------------------------------------
// Small statement helpers

/// SQL assembled from this module's own constant fragments (never from input).
pub(crate) fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// A bind value for lookups that take either an integer or a text key.
pub(crate) enum Key {
    Int(i64),
    Text(String),
}

pub(crate) fn bind_key<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    key: Key,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match key {
        Key::Int(i) => q.bind(i),
        Key::Text(s) => q.bind(s),
    }
}

/// Bumps one of the tenant's counters by `by` and returns its new value. Locks the tenant row
/// until commit (on PostgreSQL), which is what keeps per-tenant numbering dense.
async fn bump_counter(c: &mut Conn, tenant: i64, column: &'static str, by: i64) -> OpResult<i64> {
    let row = sqlx::query(sql(format!(
        "UPDATE tenants SET {column} = {column} + $2 WHERE id = $1 RETURNING {column}"
    )))
    .bind(tenant)
    .bind(by)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(LedgerError::UnknownTenant(format!("#{tenant}")).into()),
    }
}

/// What an audit record is about.
#[derive(Default)]
struct Subjects {
    user: Option<UserId>,
    product: Option<ProductId>,
    seat: Option<Uuid>,
    company: Option<CompanyId>,
    session: Option<Uuid>,
}

/// A change's audit record, numbered and written when its command completes.
pub(crate) struct PendingAudit {
    action: String,
    subjects: Subjects,
    detail: serde_json::Value,
}

/// Records the audit record of a change. It is written by [`flush_audit`] at the end of the
/// command, in the command's own transaction: if the change rolls back, so does its record.
/// Deferring the write keeps the tenant's audit counter (a row lock on PostgreSQL) locked only
/// from the end of the command to the commit.
async fn audit(
    env: &Env<'_>,
    action: &str,
    subjects: Subjects,
    detail: serde_json::Value,
) -> OpResult<()> {
    env.pending_audit().push(PendingAudit {
        action: action.to_owned(),
        subjects,
        detail,
    });
    Ok(())
}

/// Numbers the command's pending audit records densely from the tenant's counter and writes them.
pub(crate) async fn flush_audit(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    let pending = std::mem::take(&mut *env.pending_audit());
    if pending.is_empty() {
        return Ok(());
    }
    let last = bump_counter(c, env.tenant(), "last_audit_seq", pending.len() as i64).await?;
    let first = last - pending.len() as i64 + 1;
    for (i, record) in pending.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO audit_events (tenant_id, seq, at, actor, action, user_id, product_id, \
             seat_uuid, company_id, session_uuid, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(env.tenant())
        .bind(first + i as i64)
        .bind(env.now)
        .bind(env.ctx.actor.clone())
        .bind(record.action)
        .bind(record.subjects.user)
        .bind(record.subjects.product)
        .bind(record.subjects.seat.map(|u| u.to_string()))
        .bind(record.subjects.company)
        .bind(record.subjects.session.map(|u| u.to_string()))
        .bind(record.detail.to_string())
        .bind(env.ctx.request_id.clone())
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Lookups (inside the transaction)

pub(crate) async fn find_user(c: &mut Conn, tenant: i64, user: &UserRef) -> OpResult<UserRow> {
    let (clause, key) = match user {
        UserRef::Id(id) => ("u.id = $2", Key::Int(*id)),
        UserRef::Uuid(uuid) => ("u.uuid = $2", Key::Text(uuid.to_string())),
        UserRef::Login(login) => ("u.login_key = $2", Key::Text(rules::name_key(login))),
    };
    let q = sqlx::query(sql(format!(
        "SELECT {USER_COLUMNS} FROM users u LEFT JOIN companies c \
         ON c.tenant_id = u.tenant_id AND c.id = u.company_id WHERE u.tenant_id = $1 AND {clause}"
    )))
    .bind(tenant);
    match bind_key(q, key).fetch_optional(&mut *c).await? {
        Some(row) => user_from_row(&row),
        None => Err(LedgerError::UnknownUser(user.to_string()).into()),
    }
}

pub(crate) async fn find_product(
    c: &mut Conn,
    tenant: i64,
    product: &ProductRef,
) -> OpResult<ProductRow> {
    let base = format!(
        "SELECT {PRODUCT_COLUMNS} FROM products p JOIN owners o \
         ON o.tenant_id = p.tenant_id AND o.id = p.owner_id WHERE p.tenant_id = $1 AND "
    );
    let row = match product {
        ProductRef::Id(id) => {
            sqlx::query(sql(format!("{base}p.id = $2")))
                .bind(tenant)
                .bind(*id)
                .fetch_optional(&mut *c)
                .await?
        }
        ProductRef::Name { owner, name } => {
            sqlx::query(sql(format!("{base}o.name_key = $2 AND p.name_key = $3")))
                .bind(tenant)
                .bind(rules::name_key(owner))
                .bind(rules::name_key(name))
                .fetch_optional(&mut *c)
                .await?
        }
    };
    match row {
        Some(row) => {
            let mut found = product_from_row(&row)?;
            found.product.plan_members = plan_members(c, tenant, found.id()).await?;
            Ok(found)
        }
        None => Err(LedgerError::UnknownProduct(product.to_string()).into()),
    }
}

async fn plan_members(c: &mut Conn, tenant: i64, plan: ProductId) -> OpResult<Vec<ProductId>> {
    let rows = sqlx::query(
        "SELECT member_id FROM plan_members WHERE tenant_id = $1 AND plan_id = $2 ORDER BY member_id",
    )
    .bind(tenant)
    .bind(plan)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(OpError::from))
        .collect()
}

pub(crate) async fn find_company(
    c: &mut Conn,
    tenant: i64,
    company: &CompanyRef,
) -> OpResult<Company> {
    let (clause, key) = match company {
        CompanyRef::Id(id) => ("id = $2", Key::Int(*id)),
        CompanyRef::Uuid(uuid) => ("uuid = $2", Key::Text(uuid.to_string())),
        CompanyRef::Name(name) => ("name_key = $2", Key::Text(rules::name_key(name))),
    };
    let q = sqlx::query(sql(format!(
        "SELECT id, uuid, name, pool_mode FROM companies WHERE tenant_id = $1 AND {clause}"
    )))
    .bind(tenant);
    match bind_key(q, key).fetch_optional(&mut *c).await? {
        Some(row) => company_from_row(&row),
        None => Err(LedgerError::UnknownCompany(company.to_string()).into()),
    }
}

pub(crate) fn company_from_row(row: &AnyRow) -> OpResult<Company> {
    Ok(Company {
        id: row.try_get("id")?,
        uuid: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
        name: row.try_get("name")?,
        pool_mode: parse_enum(&row.try_get::<String, _>("pool_mode")?)?,
    })
}

async fn find_seat(c: &mut Conn, tenant: i64, seat: Uuid) -> OpResult<SeatRow> {
    let row = sqlx::query(sql(format!(
        "SELECT {SEAT_COLUMNS} FROM seats s WHERE s.tenant_id = $1 AND s.uuid = $2"
    )))
    .bind(tenant)
    .bind(seat.to_string())
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => seat_from_row(&row),
        None => Err(LedgerError::UnknownSeat(seat).into()),
    }
}

async fn seat_by_number(c: &mut Conn, tenant: i64, number: i64) -> OpResult<SeatRow> {
    let row = sqlx::query(sql(format!(
        "SELECT {SEAT_COLUMNS} FROM seats s WHERE s.tenant_id = $1 AND s.number = $2"
    )))
    .bind(tenant)
    .bind(number)
    .fetch_one(&mut *c)
    .await?;
    seat_from_row(&row)
}

/// Does the user hold the product right now: a site product (unexpired), or an unexpired seat?
async fn holds(c: &mut Conn, env: &Env<'_>, user: UserId, product: ProductId) -> OpResult<bool> {
    let row = sqlx::query(
        "SELECT p.kind, p.expires_at, \
           (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
             AND s.holder_id = $3 AND (s.expires_at IS NULL OR s.expires_at > $4)) AS held \
         FROM products p WHERE p.tenant_id = $1 AND p.id = $2",
    )
    .bind(env.tenant())
    .bind(product)
    .bind(user)
    .bind(env.now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(false) };
    if rules::is_expired(row.try_get("expires_at")?, env.now) {
        return Ok(false);
    }
    let kind: ProductKind = parse_enum(&row.try_get::<String, _>("kind")?)?;
    Ok(kind == ProductKind::Site || row.try_get::<i64, _>("held")? > 0)
}

async fn require_prerequisite(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    product: &Product,
) -> OpResult<()> {
    if let Some(prerequisite) = product.prerequisite
        && !holds(c, env, user, prerequisite).await?
    {
        return Err(LedgerError::PrerequisiteMissing {
            product: product.id,
            prerequisite,
        }
        .into());
    }
    Ok(())
}

/// Numbers of the seats of `product` the user holds (expired ones included).
async fn held_seats(
    c: &mut Conn,
    tenant: i64,
    user: UserId,
    product: ProductId,
) -> OpResult<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT number FROM seats WHERE tenant_id = $1 AND holder_id = $2 AND product_id = $3 \
         ORDER BY number",
    )
    .bind(tenant)
    .bind(user)
    .bind(product)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(OpError::from))
        .collect()
}

/// Looks a user up and locks its row for the rest of the transaction (PostgreSQL), so changes
/// to one user's holdings run one at a time and a retirement cannot slip between a check and a
/// grant. SQLite's single writer gives the same guarantee without a lock.
pub(crate) async fn find_user_locked(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
) -> OpResult<UserRow> {
    let mut found = find_user(c, env.tenant(), user).await?;
    if env.backend == super::Backend::Postgres {
        let retired: i64 = sqlx::query_scalar(
            "SELECT retired FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(env.tenant())
        .bind(found.user.id)
        .fetch_one(&mut *c)
        .await?;
        found.user.retired = retired != 0;
    }
    Ok(found)
}

fn require_not_retired(user: &UserRow) -> OpResult<()> {
    if user.user.retired {
        return Err(LedgerError::Retired(user.user.id).into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Taking and freeing seats: the heart of the invariants.

/// Takes a free, unexpired seat of `product` for `user` from the user's pool. The seat is picked
/// and claimed in one conditional UPDATE (`holder_id IS NULL` is re-checked on the row itself),
/// so two transactions can never both take the same seat. Unrestricted products that have no
/// seat left get an overflow seat, inserted only if the product row says it is unrestricted.
async fn take_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    session: Option<Uuid>,
) -> OpResult<i64> {
    if product.expired(env.now) {
        return Err(LedgerError::ProductExpired(product.id()).into());
    }
    let session = session.map(|s| s.to_string());
    let pool = user.pool();
    let own_pool = match pool {
        Pool::Global => "pool_company_id IS NULL".to_owned(),
        Pool::Company(id) => format!("pool_company_id = {id}"),
    };
    if let Some(number) =
        claim_free_seat(c, env, user, product, &own_pool, None, session.clone()).await?
    {
        return Ok(number);
    }
    if let Pool::Company(company) = pool {
        // Past the company's own seats: tenant-wide seats, within the company's quota.
        let charged = sqlx::query(
            "UPDATE company_quotas SET used = used + 1 \
             WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3 AND used < quota",
        )
        .bind(env.tenant())
        .bind(company)
        .bind(product.id())
        .execute(&mut *c)
        .await?
        .rows_affected();
        if charged == 1 {
            if let Some(number) = claim_free_seat(
                c,
                env,
                user,
                product,
                "pool_company_id IS NULL",
                Some(company),
                session.clone(),
            )
            .await?
            {
                return Ok(number);
            }
            // No seat to charge after all: the quota update is undone with the command (the
            // error below rolls back its savepoint or transaction).
        } else if !product.product.unrestricted && has_quota(c, env, company, product.id()).await? {
            return Err(LedgerError::QuotaExhausted {
                product: product.id(),
            }
            .into());
        }
    }
    if product.product.unrestricted {
        return insert_overflow_seat(c, env, user, product, session).await;
    }
    Err(LedgerError::NoSeatFree {
        product: product.id(),
    }
    .into())
}

async fn has_quota(
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

async fn claim_free_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    pool_clause: &str,
    charge: Option<CompanyId>,
    session: Option<String>,
) -> OpResult<Option<i64>> {
    let row = sqlx::query(sql(format!(
        "UPDATE seats SET holder_id = $3, held_since = $4, charged_company_id = $5, session_uuid = $6 \
         WHERE tenant_id = $1 AND holder_id IS NULL AND number = ( \
             SELECT number FROM seats WHERE tenant_id = $1 AND product_id = $2 AND holder_id IS NULL \
               AND overflow = 0 AND (expires_at IS NULL OR expires_at > $4) AND {pool_clause} \
             ORDER BY trial, number LIMIT 1{}) \
         RETURNING number",
        env.skip_locked()
    )))
    .bind(env.tenant())
    .bind(product.id())
    .bind(user.user.id)
    .bind(env.now)
    .bind(charge)
    .bind(session)
    .fetch_optional(&mut *c)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

async fn insert_overflow_seat(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    session: Option<String>,
) -> OpResult<i64> {
    let number = bump_counter(c, env.tenant(), "last_seat_number", 1).await?;
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
    .bind(Uuid::new_v4().to_string())
    .bind(user.user.id)
    .bind(env.now)
    .bind(session)
    .bind(product.id())
    .execute(&mut *c)
    .await?
    .rows_affected();
    if inserted == 1 {
        Ok(number)
    } else {
        Err(LedgerError::NoSeatFree {
            product: product.id(),
        }
        .into())
    }
}

/// Frees a held seat: holder, session, activation and quota charge go; an overflow seat is
/// deleted. Returns false when the seat was already free (another transaction got there first).
async fn free_seat(c: &mut Conn, env: &Env<'_>, number: i64) -> OpResult<bool> {
    let deleted = sqlx::query(
        "DELETE FROM seats WHERE tenant_id = $1 AND number = $2 AND overflow = 1 RETURNING number",
    )
    .bind(env.tenant())
    .bind(number)
    .fetch_optional(&mut *c)
    .await?;
    if deleted.is_some() {
        return Ok(true);
    }
    let freed = sqlx::query(
        "UPDATE seats SET holder_id = NULL, held_since = NULL, charged_company_id = NULL, \
           session_uuid = NULL, activation_hid = NULL, activation_name = NULL, activation_os = NULL \
         WHERE tenant_id = $1 AND number = $2 AND holder_id IS NOT NULL \
         RETURNING number",
    )
    .bind(env.tenant())
    .bind(number)
    .fetch_optional(&mut *c)
    .await?;
    Ok(freed.is_some())
}

/// Releases one seat of a user's and, when it was the user's last seat of that product, drops
/// the product's grants and cascades to everything that depended on it.
async fn release_held_seat(c: &mut Conn, env: &Env<'_>, seat: &SeatRow) -> OpResult<u64> {
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
        json!({ "before": { "holder": holder, "activation": seat.seat.activation }, "after": { "holder": null } }),
    )
    .await?;
    let mut count = 1;
    if held_seats(c, env.tenant(), holder, seat.seat.product)
        .await?
        .is_empty()
    {
        count += drop_products(c, env, holder, vec![seat.seat.product]).await?;
    }
    Ok(count)
}

/// Returns a seat's quota charge to its company.
async fn uncharge(c: &mut Conn, env: &Env<'_>, seat: &SeatRow) -> OpResult<()> {
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
/// Returns the number of seats freed.
async fn drop_products(
    c: &mut Conn,
    env: &Env<'_>,
    user: UserId,
    start: Vec<ProductId>,
) -> OpResult<u64> {
    let tenant = env.tenant();
    let mut work = start;
    let mut done: Vec<ProductId> = Vec::new();
    let mut freed = 0;
    while let Some(product) = work.pop() {
        if done.contains(&product) {
            continue;
        }
        done.push(product);
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
        let orphaned = sqlx::query(
            "DELETE FROM grants WHERE tenant_id = $1 AND user_id = $2 AND via_id = $3 RETURNING product_id",
        )
        .bind(tenant)
        .bind(user)
        .bind(product)
        .fetch_all(&mut *c)
        .await?;
        for row in orphaned {
            let member: i64 = row.try_get(0)?;
            let remaining: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM grants WHERE tenant_id = $1 AND user_id = $2 AND product_id = $3",
            )
            .bind(tenant)
            .bind(user)
            .bind(member)
            .fetch_one(&mut *c)
            .await?;
            if remaining == 0 {
                work.push(member);
            }
        }
        // Dependents the user holds lose their prerequisite, unless it is still held otherwise
        // (a site product never goes; this product may still be held through another seat).
        if !holds(c, env, user, product).await? {
            let dependents = sqlx::query(
                "SELECT DISTINCT p.id FROM products p JOIN seats s \
                   ON s.tenant_id = p.tenant_id AND s.product_id = p.id AND s.holder_id = $3 \
                 WHERE p.tenant_id = $1 AND p.prerequisite_id = $2 AND s.session_uuid IS NULL",
            )
            .bind(tenant)
            .bind(product)
            .bind(user)
            .fetch_all(&mut *c)
            .await?;
            for row in dependents {
                work.push(row.try_get(0)?);
            }
        }
    }
    Ok(freed)
}

// ---------------------------------------------------------------------------------------------
// Tenants, companies, users

pub(crate) async fn create_tenant(
    tx: &mut Tx<'_>,
    name: &str,
    actor: &str,
    now: i64,
    backend: super::Backend,
) -> OpResult<i64> {
    let c: &mut Conn = tx;
    let name = rules::validate_name("tenant", name)?;
    let row = sqlx::query(
        "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name.clone())
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        return Err(LedgerError::AlreadyExists {
            what: "tenant",
            name,
        }
        .into());
    };
    let id: i64 = row.try_get(0)?;
    let ctx = Context::new(id, actor);
    let env = Env::new(&ctx, now, backend);
    audit(
        &env,
        "tenant.create",
        Subjects::default(),
        json!({ "after": { "name": name } }),
    )
    .await?;
    flush_audit(c, &env).await?;
    Ok(id)
}

async fn create_company(
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
fn unique_to(e: sqlx::Error, what: &'static str, name: &str) -> OpError {
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

async fn edit_company(
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

async fn set_company_quota(
    c: &mut Conn,
    env: &Env<'_>,
    company: &CompanyRef,
    product: &ProductRef,
    quota: Option<i64>,
) -> OpResult<Outcome> {
    let company = find_company(c, env.tenant(), company).await?;
    let product = find_product(c, env.tenant(), product).await?;
    let current = sqlx::query(
        "SELECT quota, used FROM company_quotas WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3",
    )
    .bind(env.tenant())
    .bind(company.id)
    .bind(product.id())
    .fetch_optional(&mut *c)
    .await?;
    let (old_quota, used) = match &current {
        Some(row) => (Some(row.try_get::<i64, _>(0)?), row.try_get::<i64, _>(1)?),
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

async fn create_user(c: &mut Conn, env: &Env<'_>, new: &NewUser) -> OpResult<Outcome> {
    let login = rules::validate_name("login", &new.login)?;
    for (field, value) in [
        ("first_name", &new.first_name),
        ("last_name", &new.last_name),
        ("email", &new.email),
        ("user_type", &new.user_type),
    ] {
        rules::validate_text(field, value)?;
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
        user_type: new.user_type.clone(),
    };
    sqlx::query(
        "INSERT INTO users (tenant_id, id, uuid, login, login_key, first_name, last_name, email, \
           company_id, license_mode, retired, user_type, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12)",
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

async fn edit_user(
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
    if after == before {
        return Ok(changed(0));
    }
    sqlx::query(
        "UPDATE users SET login = $3, login_key = $4, first_name = $5, last_name = $6, email = $7, \
           company_id = $8, license_mode = $9, user_type = $10 WHERE tenant_id = $1 AND id = $2",
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
    .execute(&mut *c)
    .await
    .map_err(|e| unique_to(e, "user", &after.login))?;
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

// ---------------------------------------------------------------------------------------------
// Products and seats

async fn find_or_create_owner(c: &mut Conn, env: &Env<'_>, name: &str) -> OpResult<OwnerId> {
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
        .map_err(|e| unique_to(e, "owner", &name))?;
    Ok(id)
}

/// Resolves plan members; only a user plan may have them.
async fn resolve_plan(
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

async fn write_plan(
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
async fn check_prerequisite_chain(
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

async fn create_product(c: &mut Conn, env: &Env<'_>, new: &NewProduct) -> OpResult<Outcome> {
    let name = rules::validate_name("name", &new.name)?;
    rules::validate_text("description", &new.description)?;
    rules::validate_text("tooltip", &new.tooltip)?;
    rules::validate_seat_count(new.seats, true)?;
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
           unrestricted, hidden, sort_order, extra_flags, prerequisite_id, expires_at, trial, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
async fn insert_seats(
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
    let last = bump_counter(c, env.tenant(), "last_seat_number", count).await?;
    let first = last - count + 1;
    let mut seats = Vec::with_capacity(count as usize);
    let mut start = first;
    while start <= last {
        let end = (start + CHUNK - 1).min(last);
        let rows = (start..=end)
            .map(|i| {
                let b = (i - start) as usize * 2;
                format!("($1, ${}, ${}, $2, $3, $4, $5, $6, $7, 0)", b + 8, b + 9)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut q = sqlx::query(sql(format!(
            "INSERT INTO seats (tenant_id, number, uuid, product_id, trial, expires_at, transaction_id, \
               pool_company_id, created_at, overflow) VALUES {rows}"
        )))
        .bind(env.tenant())
        .bind(product)
        .bind(trial as i64)
        .bind(expires_at)
        .bind(transaction_id.clone())
        .bind(pool_company)
        .bind(env.now);
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

async fn edit_product(
    c: &mut Conn,
    env: &Env<'_>,
    product: &ProductRef,
    patch: &ProductPatch,
) -> OpResult<Outcome> {
    let before = find_product(c, env.tenant(), product).await?.product;
    let id = before.id;
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
           sort_order = $7, extra_flags = $8, prerequisite_id = $9, expires_at = $10, trial = $11 \
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

async fn add_seats(c: &mut Conn, env: &Env<'_>, new: &NewSeats) -> OpResult<Outcome> {
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

// ---------------------------------------------------------------------------------------------
// Assignments

async fn add_grant(
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

async fn has_grant(
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
/// Returns the seat taken, if any.
async fn grant_product(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRow,
    product: &ProductRow,
    via: ProductId,
) -> OpResult<Option<i64>> {
    require_prerequisite(c, env, user.user.id, &product.product).await?;
    let held = has_unexpired_seat(c, env, user.user.id, product.id()).await?;
    add_grant(c, env, user.user.id, product.id(), via).await?;
    if held {
        return Ok(None);
    }
    let number = take_seat(c, env, user, product, None).await?;
    Ok(Some(number))
}

async fn has_unexpired_seat(
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

async fn assign(
    c: &mut Conn,
    env: &Env<'_>,
    user: &UserRef,
    product: &ProductRef,
) -> OpResult<Outcome> {
    let user = find_user_locked(c, env, user).await?;
    let product = find_product(c, env.tenant(), product).await?;
    match product.product.kind {
        // Granted to everyone already: the outcome holds.
        ProductKind::Site => return Ok(changed(0)),
        ProductKind::Floating => {
            return Err(LedgerError::WrongKind {
                kind: ProductKind::Floating,
                action: "assigned (its seats go to sessions)",
            }
            .into());
        }
        ProductKind::User => {}
    }
    require_not_retired(&user)?;
    if product.expired(env.now) {
        return Err(LedgerError::ProductExpired(product.id()).into());
    }
    let uid = user.user.id;
    if has_grant(c, env, uid, product.id(), Some(product.id())).await?
        && has_unexpired_seat(c, env, uid, product.id()).await?
    {
        return Ok(changed(0));
    }
    let mut taken = Vec::new();
    taken.extend(grant_product(c, env, &user, &product, product.id()).await?);
    let mut members = Vec::new();
    if product.product.is_user_plan() && !product.product.plan_members.is_empty() {
        let mut rows = Vec::new();
        for member in &product.product.plan_members {
            rows.push(find_product(c, env.tenant(), &ProductRef::Id(*member)).await?);
        }
        let order = rules::prerequisites_first(&product.product.plan_members, |m| {
            rows.iter()
                .find(|r| r.id() == m)
                .and_then(|r| r.product.prerequisite)
        });
        for member in order {
            let row = rows
                .iter()
                .find(|r| r.id() == member)
                .expect("member was loaded");
            if row.product.kind != ProductKind::User || row.expired(env.now) {
                continue;
            }
            taken.extend(grant_product(c, env, &user, row, product.id()).await?);
            members.push(member);
        }
    }
    let mut seats = Vec::new();
    for number in &taken {
        seats.push(seat_by_number(c, env.tenant(), *number).await?.seat);
    }
    audit(env,
        "license.assign",
        Subjects {
            user: Some(uid),
            product: Some(product.id()),
            seat: seats.first().map(|s| s.id),
            ..Default::default()
        },
        json!({
            "before": { "assigned": false },
            "after": { "assigned": true },
            "seats": seats.iter().map(|s| json!({ "seat": s.id, "number": s.number, "product": s.product })).collect::<Vec<_>>(),
            "plan_members": members,
        }),
    )
    .await?;
    Ok(changed(1 + taken.len() as u64))
}

async fn unassign(
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
async fn strip_licenses(c: &mut Conn, env: &Env<'_>, user: UserId) -> OpResult<u64> {
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

async fn remove_all_licenses(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
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

async fn retire(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
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
    let freed = strip_licenses(c, env, uid).await?;
    audit(env,
        "user.retire",
        Subjects {
            user: Some(uid),
            ..Default::default()
        },
        json!({ "before": { "retired": false }, "after": { "retired": true }, "seats_freed": freed, "sessions_ended": sessions }),
    )
    .await?;
    Ok(changed(1 + freed + sessions))
}

async fn unretire(c: &mut Conn, env: &Env<'_>, user: &UserRef) -> OpResult<Outcome> {
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

// ---------------------------------------------------------------------------------------------
// Individual seats (MSP360 Grant / Release / Revoke, activation)

/// Loads a seat and locks its holder (if any) the way `find_user_locked` does, then re-reads
/// the seat so that what the caller sees cannot change under it.
async fn find_seat_locked(
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
        return Err(OpError::Store(crate::ledger::StoreError::Contended));
    }
    Ok((seat_row, Some(user)))
}

/// When the caller named a user, the seat must be that user's.
fn require_holder(seat: &SeatRow, named: Option<&UserRow>) -> OpResult<()> {
    if let (Some(named), Some(holder)) = (named, seat.seat.holder)
        && named.user.id != holder
    {
        return Err(LedgerError::WrongHolder { seat: seat.seat.id }.into());
    }
    Ok(())
}

async fn grant_seat(
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
    require_not_retired(&user)?;
    if seat.expired(env.now) {
        return Err(LedgerError::SeatExpired(seat_id).into());
    }
    if product.expired(env.now) {
        return Err(LedgerError::ProductExpired(product.id()).into());
    }
    require_prerequisite(c, env, user.user.id, &product.product).await?;
    // The seat must be in a pool the user may take from.
    let charge = match (user.pool(), seat.seat.pool_company) {
        (Pool::Global, None) => None,
        (Pool::Company(company), Some(pool)) if company == pool => None,
        (Pool::Company(company), None) => {
            let charged = sqlx::query(
                "UPDATE company_quotas SET used = used + 1 \
                 WHERE tenant_id = $1 AND company_id = $2 AND product_id = $3 AND used < quota",
            )
            .bind(env.tenant())
            .bind(company)
            .bind(product.id())
            .execute(&mut *c)
            .await?
            .rows_affected();
            if charged == 0 {
                return Err(if has_quota(c, env, company, product.id()).await? {
                    LedgerError::QuotaExhausted {
                        product: product.id(),
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

async fn release_seat(
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

async fn revoke_seat(
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

async fn activate_seat(
    c: &mut Conn,
    env: &Env<'_>,
    seat_id: Uuid,
    activation: &Activation,
) -> OpResult<Outcome> {
    let hid = rules::validate_name("hardware_id", &activation.hardware_id)?;
    rules::validate_text("computer_name", &activation.computer_name)?;
    rules::validate_text("operating_system", &activation.operating_system)?;
    let (seat, holder) = find_seat_locked(c, env, seat_id).await?;
    let Some(holder) = holder else {
        return Err(LedgerError::NotHeld(seat_id).into());
    };
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
        "UPDATE seats SET activation_hid = $3, activation_name = $4, activation_os = $5 \
         WHERE tenant_id = $1 AND number = $2 AND activation_hid IS NULL AND holder_id IS NOT NULL",
    )
    .bind(env.tenant())
    .bind(seat.seat.number)
    .bind(hid.clone())
    .bind(activation.computer_name.clone())
    .bind(activation.operating_system.clone())
    .execute(&mut *c)
    .await;
    match result {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => return Err(LedgerError::AlreadyActivated { seat: seat_id }.into()),
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

async fn register_computer(
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

// ---------------------------------------------------------------------------------------------
// Sessions and floating seats

pub(crate) const SESSION_COLUMNS: &str = "uuid, user_id, client, device, product_id, started_at, \
     last_heartbeat_at, lease_expires_at, lease_token_hash, ended_at, end_reason";

pub(crate) fn session_from_row(row: &AnyRow) -> OpResult<(Session, String)> {
    let ended_at: Option<i64> = row.try_get("ended_at")?;
    let end_reason: Option<String> = row.try_get("end_reason")?;
    Ok((
        Session {
            id: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
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

async fn find_session(c: &mut Conn, env: &Env<'_>, session: Uuid) -> OpResult<(Session, String)> {
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
async fn log_on(
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
    require_not_retired(&user)?;
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
    let token = rules::new_lease_token();
    let expires = env.now + lease_seconds * 1_000_000;
    sqlx::query(
        "INSERT INTO sessions (tenant_id, uuid, user_id, client, device, product_id, started_at, \
           last_heartbeat_at, lease_expires_at, lease_token_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)",
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
    .execute(&mut *c)
    .await?;
    let mut seat = None;
    if let Some(product) = &product {
        // Seats of sessions whose lease lapsed are up for grabs: end those sessions first.
        expire_sessions(c, env, Some(product.id())).await?;
        let number = take_seat(c, env, &user, product, Some(id)).await?;
        seat = Some(seat_by_number(c, env.tenant(), number).await?.seat.id);
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
async fn heartbeat(
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
async fn end_session(
    c: &mut Conn,
    env: &Env<'_>,
    session: Uuid,
    reason: EndReason,
) -> OpResult<bool> {
    let ended = sqlx::query(
        "UPDATE sessions SET ended_at = $3, end_reason = $4 \
         WHERE tenant_id = $1 AND uuid = $2 AND ended_at IS NULL RETURNING user_id, product_id",
    )
    .bind(env.tenant())
    .bind(session.to_string())
    .bind(env.now)
    .bind(reason.as_str())
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = ended else { return Ok(false) };
    let user: i64 = row.try_get(0)?;
    let product: Option<i64> = row.try_get(1)?;
    let seat: Option<(i64, String)> =
        sqlx::query_as("SELECT number, uuid FROM seats WHERE tenant_id = $1 AND session_uuid = $2")
            .bind(env.tenant())
            .bind(session.to_string())
            .fetch_optional(&mut *c)
            .await?;
    if let Some((number, _)) = &seat {
        free_seat(c, env, *number).await?;
    }
    audit(
        env,
        "session.end",
        Subjects {
            user: Some(user),
            product,
            seat: seat.as_ref().map(|(_, u)| parse_uuid(u)).transpose()?,
            session: Some(session),
            ..Default::default()
        },
        json!({ "after": { "ended": true, "reason": reason } }),
    )
    .await?;
    Ok(true)
}

/// Ends every live session of a user (or all users), of one client kind (or all).
async fn end_live_sessions(
    c: &mut Conn,
    env: &Env<'_>,
    user: Option<UserId>,
    client: Option<ClientKind>,
    reason: EndReason,
) -> OpResult<u64> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT uuid FROM sessions WHERE tenant_id = $1 AND ended_at IS NULL \
           AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR client = $3) ORDER BY started_at, uuid",
    )
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

async fn log_off(
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

async fn end_session_command(
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
async fn expire_sessions(c: &mut Conn, env: &Env<'_>, product: Option<ProductId>) -> OpResult<u64> {
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

// ---------------------------------------------------------------------------------------------
// Credentials

async fn create_login(
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

async fn set_password(
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
async fn issue_token(
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

async fn revoke_token(c: &mut Conn, env: &Env<'_>, id: Uuid) -> OpResult<Outcome> {
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
