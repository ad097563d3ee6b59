//! Read side: listings, counts and the invariant checker. Reads run on the reader pool and see
//! only committed state.

use sqlx::Row;
use uuid::Uuid;

use super::ops::{
    self, GROUP_COLUMNS, PRODUCT_COLUMNS, SEAT_COLUMNS, SESSION_COLUMNS, TOKEN_COLUMNS,
    USER_COLUMNS, company_from_row, group_from_row, parse_enum, parse_uuid, product_from_row,
    seat_from_row, session_from_row, sql, token_from_row, user_from_row,
};
use super::{Conn, OpError, Store};
use crate::command::{CompanyRef, GroupRef, ProductRef, UserRef};
use crate::error::{LedgerError, StoreError};
use crate::model::*;
use crate::rules;

/// Filters for listing seats; every field narrows the list. Pages go by seat number.
#[derive(Debug, Clone, Default)]
pub struct SeatFilter {
    pub product: Option<ProductId>,
    pub holder: Option<UserId>,
    /// `Some(true)`: free and unexpired; `Some(false)`: held or expired.
    pub available: Option<bool>,
    pub held: Option<bool>,
    pub activated: Option<bool>,
    /// Only seats numbered above this (cursor).
    pub after_number: Option<i64>,
    pub limit: Option<i64>,
}

/// Filters for reading the audit trail. Pages go by sequence number.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub after_seq: Option<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub actor: Option<String>,
    pub user: Option<UserId>,
    pub product: Option<ProductId>,
    pub seat: Option<Uuid>,
    pub limit: Option<i64>,
}

fn page(limit: Option<i64>) -> i64 {
    rules::page_limit(limit)
}

/// Query results: rule errors (unknown ids) stay separate from store failures.
pub(crate) type QueryResult<T> = Result<T, QueryError>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OpError> for QueryError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Rule(r) => QueryError::Ledger(r),
            OpError::Store(s) => QueryError::Store(s),
        }
    }
}

impl From<sqlx::Error> for QueryError {
    fn from(e: sqlx::Error) -> Self {
        QueryError::Store(StoreError::Database(e))
    }
}

/// Group assignments with the names that explain them.
const ASSIGNMENT_SELECT: &str = "SELECT a.group_id, g.name AS group_name, a.user_id, u.login, \
       a.product_id, o.name AS owner_name, p.name AS product_name, a.state, a.reason, \
       a.queue_number, a.since \
     FROM group_assignments a \
     JOIN user_groups g ON g.tenant_id = a.tenant_id AND g.id = a.group_id \
     JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id \
     JOIN products p ON p.tenant_id = a.tenant_id AND p.id = a.product_id \
     JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id";

fn assignment_from_row(row: &sqlx::any::AnyRow) -> QueryResult<GroupAssignment> {
    let state: AssignmentState = parse_enum(&row.try_get::<String, _>("state")?)?;
    Ok(GroupAssignment {
        group: row.try_get("group_id")?,
        group_name: row.try_get("group_name")?,
        user: row.try_get("user_id")?,
        login: row.try_get("login")?,
        product: row.try_get("product_id")?,
        product_name: format!(
            "{}/{}",
            row.try_get::<String, _>("owner_name")?,
            row.try_get::<String, _>("product_name")?
        ),
        state,
        reason: row.try_get("reason")?,
        queue_number: row.try_get("queue_number")?,
        since: rules::from_micros(row.try_get("since")?),
    })
}

/// The columns [`audit_from_row`] reads.
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, user_id, product_id, seat_uuid, \
     company_id, session_uuid, detail, request_id";

pub(crate) fn audit_from_row(r: &sqlx::any::AnyRow) -> QueryResult<AuditEvent> {
    let seat: Option<String> = r.try_get("seat_uuid")?;
    let session: Option<String> = r.try_get("session_uuid")?;
    let detail: String = r.try_get("detail")?;
    Ok(AuditEvent {
        seq: r.try_get("seq")?,
        at: rules::from_micros(r.try_get("at")?),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        user: r.try_get("user_id")?,
        product: r.try_get("product_id")?,
        seat: seat.as_deref().map(parse_uuid).transpose()?,
        company: r.try_get("company_id")?,
        session: session.as_deref().map(parse_uuid).transpose()?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
        request_id: r.try_get("request_id")?,
    })
}

impl Store {
    pub async fn group(&self, tenant: TenantId, group: &GroupRef) -> QueryResult<Group> {
        let mut conn = self.read_conn().await?;
        Ok(ops::find_group(&mut conn, tenant, group).await?)
    }

    /// Groups by id, a page at a time.
    pub async fn groups(
        &self,
        tenant: TenantId,
        after_id: Option<GroupId>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<Group>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {GROUP_COLUMNS} FROM user_groups g WHERE g.tenant_id = $1 AND g.id > $2 \
             ORDER BY g.id LIMIT $3"
        )))
        .bind(tenant)
        .bind(after_id.unwrap_or(0))
        .bind(page(limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(group_from_row(r)?)).collect()
    }

    /// A group with its members, its licenses and every member's assignment state.
    pub async fn group_view(&self, tenant: TenantId, group: &GroupRef) -> QueryResult<GroupView> {
        let mut conn = self.read_conn().await?;
        group_view_on(&mut conn, tenant, group).await
    }

    /// The groups a user is a member of.
    pub async fn user_groups(&self, tenant: TenantId, user: UserId) -> QueryResult<Vec<Group>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {GROUP_COLUMNS} FROM group_members m \
             JOIN user_groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id \
             WHERE m.tenant_id = $1 AND m.user_id = $2 ORDER BY g.id"
        )))
        .bind(tenant)
        .bind(user)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(group_from_row(r)?)).collect()
    }

    /// Whether disabling a user keeps its seats.
    pub async fn disabled_keep_seats(&self, tenant: TenantId) -> QueryResult<bool> {
        let keep: i64 = sqlx::query_scalar("SELECT disabled_keep_seats FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_one(&mut self.read_conn().await?)
            .await?;
        Ok(keep != 0)
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name.trim().to_owned())
            .fetch_optional(&mut self.read_conn().await?)
            .await?;
        Ok(match row {
            Some(row) => Some(Tenant {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                created_at: rules::from_micros(row.try_get("created_at")?),
            }),
            None => None,
        })
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(&mut self.read_conn().await?)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Tenant {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: rules::from_micros(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    pub async fn user(&self, tenant: TenantId, user: &UserRef) -> QueryResult<User> {
        let mut conn = self.read_conn().await?;
        Ok(ops::find_user(&mut conn, tenant, user).await?.user)
    }

    pub async fn users(
        &self,
        tenant: TenantId,
        after_id: Option<UserId>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<User>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {USER_COLUMNS} FROM users u LEFT JOIN companies c \
             ON c.tenant_id = u.tenant_id AND c.id = u.company_id \
             WHERE u.tenant_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3"
        )))
        .bind(tenant)
        .bind(after_id.unwrap_or(0))
        .bind(page(limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    /// Users whose external id is exactly `external_id` (SCIM `externalId eq`), by id; indexed.
    pub async fn users_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> QueryResult<Vec<User>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {USER_COLUMNS} FROM users u LEFT JOIN companies c \
             ON c.tenant_id = u.tenant_id AND c.id = u.company_id \
             WHERE u.tenant_id = $1 AND u.external_id = $2 ORDER BY u.id LIMIT 1000"
        )))
        .bind(tenant)
        .bind(external_id.to_owned())
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    /// Groups whose external id is exactly `external_id`, by id; indexed.
    pub async fn groups_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> QueryResult<Vec<Group>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {GROUP_COLUMNS} FROM user_groups g \
             WHERE g.tenant_id = $1 AND g.external_id = $2 ORDER BY g.id LIMIT 1000"
        )))
        .bind(tenant)
        .bind(external_id.to_owned())
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(group_from_row(r)?)).collect()
    }

    /// The members (their user UUIDs) of the groups with ids from `first` to `last`, by group
    /// id then user id: one query for a page of groups.
    pub async fn group_member_uuids(
        &self,
        tenant: TenantId,
        first: GroupId,
        last: GroupId,
    ) -> QueryResult<Vec<(GroupId, Uuid)>> {
        let rows = sqlx::query(
            "SELECT m.group_id, u.uuid FROM group_members m \
             JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.group_id >= $2 AND m.group_id <= $3 \
             ORDER BY m.group_id, m.user_id",
        )
        .bind(tenant)
        .bind(first)
        .bind(last)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("group_id")?,
                    parse_uuid(&r.try_get::<String, _>("uuid")?)?,
                ))
            })
            .collect()
    }

    pub async fn company(&self, tenant: TenantId, company: &CompanyRef) -> QueryResult<Company> {
        let mut conn = self.read_conn().await?;
        Ok(ops::find_company(&mut conn, tenant, company).await?)
    }

    pub async fn companies(&self, tenant: TenantId) -> QueryResult<Vec<Company>> {
        let rows = sqlx::query(
            "SELECT id, uuid, name, pool_mode FROM companies WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(company_from_row(r)?)).collect()
    }

    pub async fn product(&self, tenant: TenantId, product: &ProductRef) -> QueryResult<Product> {
        let mut conn = self.read_conn().await?;
        Ok(ops::find_product(&mut conn, tenant, product).await?.product)
    }

    pub async fn products(&self, tenant: TenantId) -> QueryResult<Vec<Product>> {
        let mut conn = self.read_conn().await?;
        products_on(&mut conn, tenant).await
    }

    /// Total / InUse / Free for every product of the tenant (or one). The counts are the
    /// trigger-kept `pool_usage` counters, less the seats whose own expiry has passed (a range
    /// of `seats_expiring`), so they cost the same whatever the pool's size.
    pub async fn pool_status(
        &self,
        tenant: TenantId,
        product: Option<ProductId>,
        now: i64,
    ) -> QueryResult<Vec<PoolStatus>> {
        let mut conn = self.read_conn().await?;
        pool_status_on(&mut conn, tenant, product, now).await
    }

    /// Every product as one user sees it: Assigned and CanAssign beside the pool counts.
    /// Every product as `user` sees it, or only the products `only` (whose answer then costs
    /// the reads of those products' pools, not of every pool in the tenant).
    pub async fn user_view(
        &self,
        tenant: TenantId,
        user: &UserRef,
        now: i64,
        only: Option<&[ProductId]>,
    ) -> QueryResult<Vec<UserProductView>> {
        let mut conn = self.read_conn().await?;
        user_view_on(&mut conn, tenant, user, now, only).await
    }

    pub async fn seat(&self, tenant: TenantId, seat: Uuid) -> QueryResult<Seat> {
        let mut conn = self.read_conn().await?;
        seat_on(&mut conn, tenant, seat).await
    }

    pub async fn seats(
        &self,
        tenant: TenantId,
        filter: &SeatFilter,
        now: i64,
    ) -> QueryResult<Vec<Seat>> {
        // Only the filters given become conditions: a generic `($2 IS NULL OR s.product_id =
        // $2)` cannot use an index, and a product's pages then walked the tenant's seats in
        // number order from the cursor (1,000 pages of a 1M-seat tenant read 500M rows).
        // One holder's seats are few: found by `seats_by_holder` and sorted. Without the `+`
        // (which keeps an index from serving the number), SQLite walks the tenant's seats in
        // number order from the cursor to skip the sort.
        let number = if filter.holder.is_some() && filter.product.is_none() {
            "+s.number"
        } else {
            "s.number"
        };
        let mut conditions = format!("s.tenant_id = $1 AND {number} > $2");
        let mut binds = vec![tenant, filter.after_number.unwrap_or(0)];
        let mut condition = |text: &str, value: Option<i64>| {
            conditions.push_str(" AND ");
            match value {
                Some(value) => {
                    binds.push(value);
                    conditions.push_str(&text.replace('?', &format!("${}", binds.len())));
                }
                None => conditions.push_str(text),
            }
        };
        if let Some(product) = filter.product {
            condition("s.product_id = ?", Some(product));
        }
        if let Some(holder) = filter.holder {
            condition("s.holder_id = ?", Some(holder));
        }
        match filter.available {
            Some(true) => condition(
                "s.holder_id IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?)",
                Some(now),
            ),
            Some(false) => condition(
                "NOT (s.holder_id IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?))",
                Some(now),
            ),
            None => {}
        }
        match filter.held {
            Some(true) => condition("s.holder_id IS NOT NULL", None),
            Some(false) => condition("s.holder_id IS NULL", None),
            None => {}
        }
        match filter.activated {
            Some(true) => condition("s.activation_hid IS NOT NULL", None),
            Some(false) => condition("s.activation_hid IS NULL", None),
            None => {}
        }
        binds.push(page(filter.limit));
        let statement = format!(
            "SELECT {SEAT_COLUMNS} FROM seats s WHERE {conditions} ORDER BY {number} LIMIT ${}",
            binds.len()
        );
        let mut query = sqlx::query(sql(statement));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&mut self.read_conn().await?).await?;
        rows.iter().map(|r| Ok(seat_from_row(r)?.seat)).collect()
    }

    /// Held seats idle past their product's harvest policy, oldest seat number first; those of
    /// exempt holders (the user, or a group it is in) say why they are.
    pub async fn idle_seats(&self, tenant: TenantId, now: i64) -> QueryResult<Vec<IdleSeat>> {
        let last_use = ops::last_use_sql(self.backend);
        let exemption = ops::exemption_sql();
        let rows = sqlx::query(sql(format!(
            "SELECT s.uuid, s.product_id, o.name AS owner_name, p.name AS product_name, \
               s.holder_id, u.login, hp.idle_days, hp.action, {last_use} AS last_use, \
               {exemption} AS exempt \
             FROM harvest_policies hp \
             JOIN seats s ON s.tenant_id = hp.tenant_id AND s.product_id = hp.product_id \
               AND s.holder_id IS NOT NULL AND s.session_uuid IS NULL \
             JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
             JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id \
             JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.holder_id \
             WHERE hp.tenant_id = $1 \
               AND {last_use} <= $2 - hp.idle_days * $3 \
             ORDER BY s.number"
        )))
        .bind(tenant)
        .bind(now)
        .bind(rules::MICROS_PER_DAY)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                let last_use: i64 = row.try_get("last_use")?;
                let owner: String = row.try_get("owner_name")?;
                let name: String = row.try_get("product_name")?;
                Ok(IdleSeat {
                    seat: parse_uuid(&row.try_get::<String, _>("uuid")?)?,
                    product: row.try_get("product_id")?,
                    product_name: format!("{owner}/{name}"),
                    user: row.try_get("holder_id")?,
                    login: row.try_get("login")?,
                    last_used_at: rules::from_micros(last_use),
                    idle_days: (now - last_use) / rules::MICROS_PER_DAY,
                    policy_idle_days: row.try_get("idle_days")?,
                    action: ops::parse_enum(&row.try_get::<String, _>("action")?)?,
                    exempt: row.try_get("exempt")?,
                    released: false,
                })
            })
            .collect()
    }

    pub async fn harvest_policies(
        &self,
        tenant: TenantId,
    ) -> QueryResult<Vec<ProductHarvestPolicy>> {
        let rows = sqlx::query(
            "SELECT hp.product_id, o.name AS owner_name, p.name AS product_name, hp.idle_days, \
               hp.action FROM harvest_policies hp \
             JOIN products p ON p.tenant_id = hp.tenant_id AND p.id = hp.product_id \
             JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id \
             WHERE hp.tenant_id = $1 ORDER BY hp.product_id",
        )
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProductHarvestPolicy {
                    product: row.try_get("product_id")?,
                    owner: row.try_get("owner_name")?,
                    name: row.try_get("product_name")?,
                    idle_days: row.try_get("idle_days")?,
                    action: ops::parse_enum(&row.try_get::<String, _>("action")?)?,
                })
            })
            .collect()
    }

    /// Groups whose members' seats the harvest leaves alone.
    pub async fn harvest_exempt_groups(&self, tenant: TenantId) -> QueryResult<Vec<Group>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {GROUP_COLUMNS} FROM harvest_exempt_groups e \
             JOIN user_groups g ON g.tenant_id = e.tenant_id AND g.id = e.group_id \
             WHERE e.tenant_id = $1 ORDER BY g.id"
        )))
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(group_from_row(r)?)).collect()
    }

    /// Users whose seats the harvest leaves alone.
    pub async fn harvest_exempt_users(&self, tenant: TenantId) -> QueryResult<Vec<User>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {USER_COLUMNS} FROM harvest_exempt_users e \
             JOIN users u ON u.tenant_id = e.tenant_id AND u.id = e.user_id \
             LEFT JOIN companies c ON c.tenant_id = u.tenant_id AND c.id = u.company_id \
             WHERE e.tenant_id = $1 ORDER BY u.id"
        )))
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    pub async fn session(&self, tenant: TenantId, session: Uuid) -> QueryResult<Session> {
        let row = sqlx::query(sql(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND uuid = $2"
        )))
        .bind(tenant)
        .bind(session.to_string())
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        match row {
            Some(row) => Ok(session_from_row(&row)?.0),
            None => Err(LedgerError::UnknownSession(session).into()),
        }
    }

    /// Live sessions (not ended; a lapsed lease still counts until it is expired or taken over).
    pub async fn live_sessions(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        client: Option<ClientKind>,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<Session>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND ended_at IS NULL \
               AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR client = $3) AND number > $4 \
             ORDER BY number LIMIT $5"
        )))
        .bind(tenant)
        .bind(user)
        .bind(client.map(|c| c.as_str()))
        .bind(after.unwrap_or(0))
        .bind(page(limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(session_from_row(r)?.0)).collect()
    }

    pub async fn computers(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> QueryResult<Vec<Computer>> {
        let rows = sqlx::query(
            "SELECT hid, name, os, user_id FROM computers WHERE tenant_id = $1 AND ($2 IS NULL OR user_id = $2) ORDER BY hid",
        )
        .bind(tenant)
        .bind(user)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Computer {
                    hardware_id: r.try_get("hid")?,
                    name: r.try_get("name")?,
                    operating_system: r.try_get("os")?,
                    user: r.try_get("user_id")?,
                })
            })
            .collect()
    }

    pub async fn audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> QueryResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, user_id, product_id, seat_uuid, company_id, session_uuid, \
               detail, request_id FROM audit_events WHERE tenant_id = $1 AND seq > $2 \
               AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) AND ($5 IS NULL OR actor = $5) \
               AND ($6 IS NULL OR user_id = $6) AND ($7 IS NULL OR product_id = $7) \
               AND ($8 IS NULL OR seat_uuid = $8) ORDER BY seq LIMIT $9",
        )
        .bind(tenant)
        .bind(filter.after_seq.unwrap_or(0))
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.actor.clone())
        .bind(filter.user)
        .bind(filter.product)
        .bind(filter.seat.map(|s| s.to_string()))
        .bind(page(filter.limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// The tenant's password logins (never their hashes), by name.
    pub async fn logins(&self, tenant: TenantId) -> Result<Vec<LoginInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT login, role, user_id FROM logins WHERE tenant_id = $1 ORDER BY login_key",
        )
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LoginInfo {
                    login: row.try_get("login")?,
                    role: row
                        .try_get::<String, _>("role")?
                        .parse()
                        .map_err(|_| StoreError::Corrupt("login role".into()))?,
                    user: row.try_get("user_id")?,
                })
            })
            .collect()
    }

    /// A password login, for verification (the caller compares the hash).
    pub async fn login(
        &self,
        tenant: TenantId,
        login: &str,
    ) -> Result<Option<LoginRecord>, StoreError> {
        let row = sqlx::query(
            // A login acting as a retired or disabled user is refused as if it did not exist.
            "SELECT login, role, user_id, password_hash FROM logins WHERE tenant_id = $1 AND login_key = $2 \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = logins.tenant_id AND u.id = logins.user_id \
               AND (u.retired = 1 OR u.disabled = 1))",
        )
        .bind(tenant)
        .bind(rules::name_key(login))
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LoginRecord {
            tenant,
            info: LoginInfo {
                login: row.try_get("login")?,
                role: row
                    .try_get::<String, _>("role")?
                    .parse()
                    .map_err(|_| StoreError::Corrupt("login role".into()))?,
                user: row.try_get("user_id")?,
            },
            password_hash: row.try_get("password_hash")?,
        }))
    }

    /// The token with this SHA-256, live or not (the caller tells expired and revoked apart).
    /// A retired user has no live token: retiring revokes them, and none is issued to it.
    pub async fn token_by_hash(&self, token_hash: &str) -> QueryResult<Option<TokenInfo>> {
        let row = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash.to_owned())
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        Ok(match row {
            Some(row) => Some(token_from_row(&row)?),
            None => None,
        })
    }

    pub async fn tokens(&self, tenant: TenantId) -> QueryResult<Vec<TokenInfo>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(token_from_row(r)?)).collect()
    }

    /// Checks every ledger invariant of a tenant against committed state and describes each
    /// violation found (an empty list means all hold). Used by tests, benchmarks and `allot check`.
    pub async fn check_invariants(&self, tenant: TenantId, now: i64) -> QueryResult<Vec<String>> {
        let mut violations = Vec::new();
        let checks: &[(&str, &str)] = &[
            (
                "restricted product has overflow seats (holders exceed seats bought)",
                "SELECT count(*) FROM seats s JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
                 WHERE s.tenant_id = $1 AND s.overflow = 1 AND p.unrestricted = 0",
            ),
            (
                "retired user holds a seat",
                "SELECT count(*) FROM seats s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.holder_id \
                 WHERE s.tenant_id = $1 AND u.retired = 1",
            ),
            (
                "retired user has a live session",
                "SELECT count(*) FROM sessions x JOIN users u ON u.tenant_id = x.tenant_id AND u.id = x.user_id \
                 WHERE x.tenant_id = $1 AND x.ended_at IS NULL AND u.retired = 1",
            ),
            (
                "user holds a user-kind seat that nothing explains (no grant, no active group assignment)",
                "SELECT count(*) FROM seats s WHERE s.tenant_id = $1 AND s.holder_id IS NOT NULL \
                   AND s.session_uuid IS NULL AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.tenant_id = s.tenant_id \
                   AND g.user_id = s.holder_id AND g.product_id = s.product_id) \
                   AND NOT EXISTS (SELECT 1 FROM group_assignments a WHERE a.tenant_id = s.tenant_id \
                   AND a.user_id = s.holder_id AND a.product_id = s.product_id AND a.state = 'active')",
            ),
            (
                "active group assignment without a held seat",
                "SELECT count(*) FROM group_assignments a WHERE a.tenant_id = $1 AND a.state = 'active' \
                   AND NOT EXISTS (SELECT 1 FROM seats s WHERE s.tenant_id = a.tenant_id \
                   AND s.holder_id = a.user_id AND s.product_id = a.product_id AND s.session_uuid IS NULL)",
            ),
            (
                "disabled user has a live session",
                "SELECT count(*) FROM sessions x JOIN users u ON u.tenant_id = x.tenant_id AND u.id = x.user_id \
                 WHERE x.tenant_id = $1 AND x.ended_at IS NULL AND u.disabled = 1",
            ),
            (
                "grant without a held seat",
                "SELECT count(*) FROM grants g WHERE g.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM seats s \
                   WHERE s.tenant_id = g.tenant_id AND s.holder_id = g.user_id AND s.product_id = g.product_id \
                   AND s.session_uuid IS NULL)",
            ),
            (
                "seat held by an ended session",
                "SELECT count(*) FROM seats s JOIN sessions x ON x.tenant_id = s.tenant_id AND x.uuid = s.session_uuid \
                 WHERE s.tenant_id = $1 AND x.ended_at IS NOT NULL",
            ),
            (
                "floating seat held outside a session",
                "SELECT count(*) FROM seats s JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
                 WHERE s.tenant_id = $1 AND p.kind = 'floating' AND s.holder_id IS NOT NULL AND s.session_uuid IS NULL",
            ),
            (
                "user-kind seat held by a session",
                "SELECT count(*) FROM seats s JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
                 WHERE s.tenant_id = $1 AND p.kind <> 'floating' AND s.session_uuid IS NOT NULL",
            ),
            (
                "held product whose prerequisite the holder does not hold",
                "SELECT count(*) FROM seats s JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
                 JOIN products q ON q.tenant_id = p.tenant_id AND q.id = p.prerequisite_id \
                 WHERE s.tenant_id = $1 AND s.holder_id IS NOT NULL AND q.kind <> 'site' AND NOT EXISTS ( \
                   SELECT 1 FROM seats s2 WHERE s2.tenant_id = s.tenant_id AND s2.product_id = q.id \
                   AND s2.holder_id = s.holder_id)",
            ),
            (
                "company quota count differs from the seats charged to it",
                "SELECT count(*) FROM company_quotas q WHERE q.tenant_id = $1 AND q.used <> (SELECT count(*) \
                 FROM seats s WHERE s.tenant_id = q.tenant_id AND s.charged_company_id = q.company_id \
                 AND s.product_id = q.product_id)",
            ),
            (
                "seat charged to a quota that does not exist",
                "SELECT count(*) FROM seats s WHERE s.tenant_id = $1 AND s.charged_company_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM company_quotas q WHERE q.tenant_id = s.tenant_id \
                 AND q.company_id = s.charged_company_id AND q.product_id = s.product_id)",
            ),
            (
                "usage history's pool counts differ from the seats (or were left unrecorded)",
                "SELECT count(*) FROM products p LEFT JOIN pool_usage u \
                   ON u.tenant_id = p.tenant_id AND u.product_id = p.id WHERE p.tenant_id = $1 AND ( \
                   COALESCE(u.total, 0) <> (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id \
                     AND s.product_id = p.id AND s.overflow = 0 AND s.lapsed = 0) \
                   OR COALESCE(u.in_use, 0) <> (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id \
                     AND s.product_id = p.id AND s.holder_id IS NOT NULL AND s.lapsed = 0) \
                   OR u.dirty = 1 OR u.recorded_total <> u.total OR u.recorded_in_use <> u.in_use)",
            ),
            (
                "a pool's free-seat counter differs from its free seats",
                "SELECT count(*) FROM pool_free f WHERE f.tenant_id = $1 AND f.free <> (SELECT count(*) \
                 FROM seats s WHERE s.tenant_id = f.tenant_id AND s.product_id = f.product_id \
                 AND COALESCE(s.pool_company_id, 0) = f.company_id AND s.holder_id IS NULL \
                 AND s.lapsed = 0)",
            ),
            (
                "a free seat's pool has no free-seat counter",
                "SELECT count(*) FROM seats s WHERE s.tenant_id = $1 AND s.holder_id IS NULL \
                 AND s.lapsed = 0 AND NOT EXISTS (SELECT 1 FROM pool_free f WHERE f.tenant_id = s.tenant_id \
                 AND f.product_id = s.product_id AND f.company_id = COALESCE(s.pool_company_id, 0))",
            ),
            (
                "usage history's latest bucket differs from the pool's counts",
                "SELECT count(*) FROM pool_usage u JOIN usage_buckets b ON b.tenant_id = u.tenant_id \
                   AND b.product_id = u.product_id AND b.start = (SELECT max(start) FROM usage_buckets l \
                   WHERE l.tenant_id = u.tenant_id AND l.product_id = u.product_id AND l.step = b.step) \
                 WHERE u.tenant_id = $1 AND (b.total <> u.total OR b.in_use <> u.in_use)",
            ),
        ];
        for (what, query) in checks {
            let n: i64 = sqlx::query_scalar(*query)
                .bind(tenant)
                .fetch_one(&mut self.read_conn().await?)
                .await?;
            if n > 0 {
                violations.push(format!("{what}: {n}"));
            }
        }
        // No seat stays free while a member who could take it waits (the waiting list is served
        // in the transaction that frees or adds seats). Company-mode users are left out: their
        // pool and quota decide, which this count does not model.
        let starved: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM group_assignments a \
             JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id \
             WHERE a.tenant_id = $1 AND a.state = 'waiting' AND u.license_mode <> 'company' \
               AND EXISTS (SELECT 1 FROM seats s WHERE s.tenant_id = a.tenant_id AND s.product_id = a.product_id \
               AND s.holder_id IS NULL AND s.overflow = 0 AND s.pool_company_id IS NULL \
               AND (s.expires_at IS NULL OR s.expires_at > $2))",
        )
        .bind(tenant)
        .bind(now)
        .fetch_one(&mut self.read_conn().await?)
        .await?;
        if starved > 0 {
            violations.push(format!(
                "member waits while a tenant-wide seat it may take is free: {starved}"
            ));
        }
        // The audit trail is dense: 1..=last_audit_seq, each number once.
        #[derive(sqlx::FromRow)]
        struct Sequence {
            last: i64,
            count: i64,
            min: i64,
            max: i64,
        }
        let Sequence {
            last,
            count,
            min,
            max,
        } = sqlx::query_as(
            "SELECT t.last_audit_seq AS last, \
               (SELECT count(*) FROM audit_events a WHERE a.tenant_id = t.id) AS count, \
               (SELECT COALESCE(MIN(seq), 0) FROM audit_events a WHERE a.tenant_id = t.id) AS min, \
               (SELECT COALESCE(MAX(seq), 0) FROM audit_events a WHERE a.tenant_id = t.id) AS max \
             FROM tenants t WHERE t.id = $1",
        )
        .bind(tenant)
        .fetch_one(&mut self.read_conn().await?)
        .await?;
        if count != last || max != last || (count > 0 && min != 1) {
            violations.push(format!(
                "audit sequence has gaps: counter {last}, {count} events numbered {min}..={max}"
            ));
        }
        Ok(violations)
    }
}

impl From<QueryError> for LedgerError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Ledger(e) => e,
            QueryError::Store(e) => e.into(),
        }
    }
}

pub(crate) async fn group_view_on(
    c: &mut Conn,
    tenant: TenantId,
    group: &GroupRef,
) -> QueryResult<GroupView> {
    let group = ops::find_group(c, tenant, group).await?;
    let members = sqlx::query(
        "SELECT m.user_id, u.login, u.disabled, m.added_at FROM group_members m \
         JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.group_id = $2 ORDER BY u.login_key",
    )
    .bind(tenant)
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(GroupMember {
            user: r.try_get("user_id")?,
            login: r.try_get("login")?,
            disabled: r.try_get::<i64, _>("disabled")? != 0,
            added_at: rules::from_micros(r.try_get("added_at")?),
        })
    })
    .collect::<QueryResult<Vec<_>>>()?;
    let licenses = sqlx::query(
        "SELECT l.product_id, o.name AS owner_name, p.name, l.added_at FROM group_licenses l \
         JOIN products p ON p.tenant_id = l.tenant_id AND p.id = l.product_id \
         JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id \
         WHERE l.tenant_id = $1 AND l.group_id = $2 ORDER BY l.product_id",
    )
    .bind(tenant)
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(GroupLicense {
            product: r.try_get("product_id")?,
            product_name: format!(
                "{}/{}",
                r.try_get::<String, _>("owner_name")?,
                r.try_get::<String, _>("name")?
            ),
            added_at: rules::from_micros(r.try_get("added_at")?),
        })
    })
    .collect::<QueryResult<Vec<_>>>()?;
    let assignments = sqlx::query(sql(format!(
        "{ASSIGNMENT_SELECT} WHERE a.tenant_id = $1 AND a.group_id = $2 \
         ORDER BY u.login_key, a.product_id"
    )))
    .bind(tenant)
    .bind(group.id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(assignment_from_row)
    .collect::<QueryResult<Vec<_>>>()?;
    Ok(GroupView {
        id: group.id,
        uuid: group.uuid,
        name: group.name,
        members,
        licenses,
        assignments,
    })
}

pub(crate) async fn products_on(c: &mut Conn, tenant: TenantId) -> QueryResult<Vec<Product>> {
    let rows = sqlx::query(sql(format!(
        "SELECT {PRODUCT_COLUMNS} FROM products p JOIN owners o \
         ON o.tenant_id = p.tenant_id AND o.id = p.owner_id WHERE p.tenant_id = $1 \
         ORDER BY p.sort_order, p.id"
    )))
    .bind(tenant)
    .fetch_all(&mut *c)
    .await?;
    #[derive(sqlx::FromRow)]
    struct Member {
        plan_id: ProductId,
        member_id: ProductId,
    }
    let members: Vec<Member> = sqlx::query_as(
        "SELECT plan_id, member_id FROM plan_members WHERE tenant_id = $1 ORDER BY member_id",
    )
    .bind(tenant)
    .fetch_all(&mut *c)
    .await?;
    let mut products = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut p = product_from_row(row)?.product;
        p.plan_members.extend(
            members
                .iter()
                .filter(|m| m.plan_id == p.id)
                .map(|m| m.member_id),
        );
        products.push(p);
    }
    Ok(products)
}

/// The counts are the trigger-kept `pool_usage` counters (which leave out lapsed seats), less
/// the seats whose expiry passed since the last lapse sweep (a range of
/// `seats_unlapsed_expiring`, empty inside a command, which sweeps first), so they cost the
/// same whatever the pool's size.
/// The products `ids` and, transitively, their prerequisites and plan members (what
/// [`rules::assignment`] looks at), in catalogue order: a user's view of a few products reads
/// those, whatever the size of the tenant's catalogue. Ids of no product are left out.
async fn products_around(
    c: &mut Conn,
    tenant: TenantId,
    ids: impl IntoIterator<Item = ProductId>,
) -> QueryResult<Vec<Product>> {
    let mut wanted: Vec<ProductId> = ids.into_iter().collect();
    let mut found: Vec<Product> = Vec::new();
    while let Some(id) = wanted.pop() {
        if found.iter().any(|p| p.id == id) {
            continue;
        }
        match ops::find_product(c, tenant, &ProductRef::Id(id)).await {
            Ok(row) => {
                let product = row.product;
                wanted.extend(product.prerequisite);
                wanted.extend(product.plan_members.iter().copied());
                found.push(product);
            }
            Err(OpError::Rule(LedgerError::UnknownProduct(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    found.sort_by_key(|p| (p.sort_order, p.id));
    Ok(found)
}

pub(crate) async fn pool_status_on(
    c: &mut Conn,
    tenant: TenantId,
    product: Option<ProductId>,
    now: i64,
) -> QueryResult<Vec<PoolStatus>> {
    // One product is looked up by its key; `($2 IS NULL OR p.id = $2)` would walk them all.
    let product_clause = if product.is_some() {
        "p.id = $2"
    } else {
        "$2 IS NULL"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT p.id, o.name AS owner_name, p.name, p.kind, p.unrestricted, p.expires_at, \
           COALESCE(u.total, 0) - (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id \
              AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 \
              AND s.product_id = p.id AND s.overflow = 0) AS total, \
           COALESCE(u.in_use, 0) - (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id \
              AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 \
              AND s.product_id = p.id AND s.holder_id IS NOT NULL) AS in_use \
         FROM products p JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id \
         LEFT JOIN pool_usage u ON u.tenant_id = p.tenant_id AND u.product_id = p.id \
         WHERE p.tenant_id = $1 AND {product_clause} ORDER BY p.sort_order, p.id"
    )))
    .bind(tenant)
    .bind(product)
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    if let Some(id) = product
        && rows.is_empty()
    {
        return Err(LedgerError::UnknownProduct(format!("#{id}")).into());
    }
    rows.iter()
        .map(|row| {
            // An expired product's seats grant nothing, so they count for nothing.
            let expired = rules::is_expired(row.try_get("expires_at")?, now);
            let (total, in_use) = if expired {
                (0, 0)
            } else {
                (
                    row.try_get::<i64, _>("total")?,
                    row.try_get::<i64, _>("in_use")?,
                )
            };
            Ok(PoolStatus {
                product: row.try_get("id")?,
                owner: row.try_get("owner_name")?,
                name: row.try_get("name")?,
                kind: ops::parse_enum(&row.try_get::<String, _>("kind")?)?,
                unrestricted: row.try_get::<i64, _>("unrestricted")? != 0,
                total,
                in_use,
                free: rules::free_seats(total, in_use),
            })
        })
        .collect()
}

pub(crate) async fn user_view_on(
    c: &mut Conn,
    tenant: TenantId,
    user: &UserRef,
    now: i64,
    only: Option<&[ProductId]>,
) -> QueryResult<Vec<UserProductView>> {
    let user = ops::find_user(c, tenant, user).await?;
    let pool = rules::effective_pool(
        user.user.license_mode,
        user.user.company.zip(user.company_mode),
    );
    // Why each held product is held: grants (direct, or the plan that brought it) and
    // group assignments (all states, shown with the product).
    let grants: Vec<(ProductId, ProductId)> = sqlx::query_as(
        "SELECT product_id, via_id FROM grants WHERE tenant_id = $1 AND user_id = $2 \
         ORDER BY product_id, via_id",
    )
    .bind(tenant)
    .bind(user.user.id)
    .fetch_all(&mut *c)
    .await?;
    let products = match only {
        None => products_on(c, tenant).await?,
        // The products shown and what their rules and reasons name, not the whole catalogue.
        Some(ids) => {
            let vias = grants
                .iter()
                .filter(|(product, _)| ids.contains(product))
                .map(|(_, via)| *via);
            products_around(c, tenant, ids.iter().copied().chain(vias)).await?
        }
    };
    let statuses = match only {
        None => pool_status_on(c, tenant, None, now).await?,
        Some(ids) => {
            let mut statuses = Vec::with_capacity(ids.len());
            for id in ids {
                statuses.extend(pool_status_on(c, tenant, Some(*id), now).await?);
            }
            statuses
        }
    };
    // The products whose free seats matter: the ones shown, and the members their plans
    // bring along.
    let relevant: Option<Vec<ProductId>> = only.map(|ids| {
        let mut relevant = ids.to_vec();
        for p in products.iter().filter(|p| ids.contains(&p.id)) {
            relevant.extend(p.plan_members.iter().copied());
        }
        relevant.sort_unstable();
        relevant.dedup();
        relevant
    });
    let held: Vec<ProductId> = sqlx::query_scalar(
        "SELECT DISTINCT product_id FROM seats WHERE tenant_id = $1 AND holder_id = $2 \
           AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(tenant)
    .bind(user.user.id)
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    // Free seats in the user's own pool (company seats, or tenant-wide ones), plus quota room.
    let company = match pool {
        rules::Pool::Global => None,
        rules::Pool::Company(id) => Some(id),
    };
    #[derive(sqlx::FromRow)]
    struct Free {
        product_id: ProductId,
        free: i64,
    }
    // The pool's trigger-kept counter (`pool_free`, company 0 the tenant-wide pool) less its
    // free seats whose expiry passed since the last lapse sweep: one key and one range of
    // `seats_unlapsed_expiring`, not a walk of the pool's free seats.
    let count_free = |product: Option<ProductId>| {
        let product_clause = if product.is_some() {
            "f.product_id = $4"
        } else {
            "$4 IS NULL"
        };
        sqlx::query_as::<_, Free>(sqlx::AssertSqlSafe(format!(
            "SELECT f.product_id, f.free - (SELECT count(*) FROM seats s \
               WHERE s.tenant_id = f.tenant_id AND s.lapsed = 0 AND s.expires_at IS NOT NULL \
                 AND s.expires_at <= $2 AND s.product_id = f.product_id AND s.holder_id IS NULL \
                 AND COALESCE(s.pool_company_id, 0) = f.company_id) AS free \
             FROM pool_free f WHERE f.tenant_id = $1 AND {product_clause} AND f.company_id = $3"
        )))
        .bind(tenant)
        .bind(now)
        .bind(company.unwrap_or(0))
        .bind(product)
    };
    let free_rows: Vec<Free> = match &relevant {
        None => count_free(None).fetch_all(&mut *c).await?,
        Some(ids) => {
            let mut rows = Vec::new();
            for id in ids {
                rows.extend(count_free(Some(*id)).fetch_all(&mut *c).await?);
            }
            rows
        }
    };
    let mut free_in_pool = std::collections::HashMap::new();
    for r in &free_rows {
        free_in_pool.insert(r.product_id, r.free);
    }
    if let Some(company) = company {
        #[derive(sqlx::FromRow)]
        struct Room {
            product_id: ProductId,
            room: i64,
            global_free: i64,
        }
        let quota_rows: Vec<Room> = sqlx::query_as(
            "SELECT q.product_id, q.quota - q.used AS room, \
               COALESCE((SELECT f.free FROM pool_free f WHERE f.tenant_id = q.tenant_id \
                  AND f.product_id = q.product_id AND f.company_id = 0), 0) \
               - (SELECT count(*) FROM seats s WHERE s.tenant_id = q.tenant_id \
                  AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 \
                  AND s.product_id = q.product_id AND s.holder_id IS NULL \
                  AND s.pool_company_id IS NULL) AS global_free \
             FROM company_quotas q WHERE q.tenant_id = $1 AND q.company_id = $2",
        )
        .bind(tenant)
        .bind(company)
        .bind(now)
        .fetch_all(&mut *c)
        .await?;
        for r in &quota_rows {
            let room = r.room.min(r.global_free);
            *free_in_pool.entry(r.product_id).or_insert(0) += room.max(0);
        }
    }
    let group_rows = sqlx::query(sql(format!(
        "{ASSIGNMENT_SELECT} WHERE a.tenant_id = $1 AND a.user_id = $2 ORDER BY a.group_id"
    )))
    .bind(tenant)
    .bind(user.user.id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(assignment_from_row)
    .collect::<QueryResult<Vec<_>>>()?;
    let holds = |id: ProductId| {
        products.iter().any(|p| {
            p.id == id
                && !rules::is_expired(p.expires_at.map(rules::to_micros), now)
                && (p.kind == ProductKind::Site || held.contains(&id))
        })
    };
    let mut views = Vec::with_capacity(products.len());
    for product in products
        .iter()
        .filter(|p| only.is_none_or(|ids| ids.contains(&p.id)))
    {
        let status = statuses
            .iter()
            .find(|s| s.product == product.id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("no status for product {}", product.id)))?;
        let assigned = holds(product.id);
        // The assign command's own rule; then every product it would give that the user
        // does not hold yet needs a seat it can take (a plan's members included).
        let seat_for = |id: ProductId| {
            holds(id)
                || products.iter().any(|p| p.id == id && p.unrestricted)
                || free_in_pool.get(&id).copied().unwrap_or(0) > 0
        };
        let can_assign = !assigned
            && match rules::assignment(
                product,
                &products,
                user.user.id,
                user.user.retired || user.user.disabled,
                now,
                holds,
            ) {
                Ok(Some(order)) => order.into_iter().all(seat_for),
                Ok(None) | Err(_) => false,
            };
        let groups: Vec<GroupAssignment> = group_rows
            .iter()
            .filter(|a| a.product == product.id)
            .cloned()
            .collect();
        let mut reasons = Vec::new();
        if assigned && product.kind == ProductKind::User {
            for (_, via) in grants.iter().filter(|(p, _)| *p == product.id) {
                if *via == product.id {
                    reasons.push("direct".to_owned());
                } else if let Some(plan) = products.iter().find(|p| p.id == *via) {
                    reasons.push(format!("plan:{}", plan.full_name()));
                }
            }
            for a in groups.iter().filter(|a| a.state == AssignmentState::Active) {
                reasons.push(format!("group:{}", a.group_name));
            }
        }
        views.push(UserProductView {
            product: product.clone(),
            status,
            assigned,
            can_assign,
            reasons,
            groups,
        });
    }
    Ok(views)
}

pub(crate) async fn seat_on(c: &mut Conn, tenant: TenantId, seat: Uuid) -> QueryResult<Seat> {
    let row = sqlx::query(sql(format!(
        "SELECT {SEAT_COLUMNS} FROM seats s WHERE s.tenant_id = $1 AND s.uuid = $2"
    )))
    .bind(tenant)
    .bind(seat.to_string())
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => Ok(seat_from_row(&row)?.seat),
        None => Err(LedgerError::UnknownSeat(seat).into()),
    }
}
