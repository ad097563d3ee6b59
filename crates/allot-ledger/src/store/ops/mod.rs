//! Every command, as statements inside the caller's transaction. Rules that depend on state are
//! enforced here by conditional updates (`... WHERE holder_id IS NULL`), constraints and row
//! locks, never by trusting an earlier read; each change appends its audit record before the
//! transaction commits.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Backend, Conn, Env, OpError, OpResult, Tx, is_unique_violation};
use crate::command::*;
use crate::error::{LedgerError, StoreError};
use crate::model::*;
use crate::rules::{self, Pool};

mod assignments;
mod catalog;
mod claims;
mod credentials;
mod directory;
mod groups;
mod harvest;
mod keys;
mod seats;
mod sessions;
mod usage;
mod webhooks;
use assignments::*;
use catalog::*;
use claims::*;
pub(crate) use credentials::*;
pub(crate) use directory::*;
use groups::*;
pub(crate) use groups::{GROUP_COLUMNS, find_group, group_from_row};
use harvest::*;
pub(crate) use harvest::{exemption_sql, last_use_sql};
pub(crate) use keys::*;
use seats::*;
pub(crate) use sessions::*;
pub(crate) use usage::{denied_product, record_denial};
pub(crate) use webhooks::{AttemptRecord, endpoint_from_row, finish_delivery};

/// Runs one command, then serves the waiting lists of the products whose seats it freed or
/// added (`groups::settle`): every command, so no path that frees a seat can forget to.
pub(crate) async fn execute(
    tx: &mut Tx<'_>,
    env: &Env<'_>,
    command: &Command,
) -> OpResult<Outcome> {
    // Seats that expired since the last command leave the usage history first, at their time.
    usage::lapse_expired(tx, env).await?;
    let outcome = run_command(tx, env, command).await?;
    settle(tx, env).await?;
    if env.backend == Backend::Postgres && command.may_change_credentials() {
        // Delivered at the commit, to every process's token cache (`store/notify.rs`).
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::notify::CREDENTIALS_CHANNEL)
            .bind(env.tenant().to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(outcome)
}

async fn run_command(tx: &mut Tx<'_>, env: &Env<'_>, command: &Command) -> OpResult<Outcome> {
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
        Command::DeleteCompany { company } => delete_company(c, env, company).await,
        Command::SetCompanyQuota {
            company,
            product,
            quota,
        } => set_company_quota(c, env, company, product, *quota).await,
        Command::CreateUser(new) => create_user(c, env, new).await,
        Command::UpsertUser(upsert) => upsert_user(c, env, upsert).await,
        Command::EditUser { user, patch } => edit_user(c, env, user, patch).await,
        Command::CreateProduct(new) => create_product(c, env, new).await,
        Command::EditProduct { product, patch } => edit_product(c, env, product, patch).await,
        Command::RemoveOwner { owner } => remove_owner(c, env, owner).await,
        Command::AddSeats(new) => add_seats(c, env, new).await,
        Command::RemoveSeats {
            product,
            count,
            pool_company,
        } => remove_seats(c, env, product, *count, pool_company.as_ref()).await,
        Command::SetHarvestPolicy { product, policy } => {
            set_harvest_policy(c, env, product, *policy).await
        }
        Command::SetHarvestExempt { user, exempt } => {
            set_harvest_exempt(c, env, user, *exempt).await
        }
        Command::HarvestSeat { seat } => harvest_seat(c, env, *seat).await,
        Command::RecordUse { user, seat } => record_use(c, env, user, *seat).await,
        Command::Assign { user, product } => assign(c, env, user, product).await,
        Command::Unassign { user, product } => unassign(c, env, user, product).await,
        Command::RemoveAllLicenses { user } => remove_all_licenses(c, env, user).await,
        Command::Retire { user } => retire(c, env, user).await,
        Command::Unretire { user } => unretire(c, env, user).await,
        Command::DeleteUser { user } => delete_user(c, env, user).await,
        Command::DisableUser { user } => disable_user(c, env, user).await,
        Command::EnableUser { user } => enable_user(c, env, user).await,
        Command::SetDisabledKeepSeats { keep } => set_disabled_keep_seats(c, env, *keep).await,
        Command::CreateGroup {
            name,
            uuid,
            external_id,
        } => create_group(c, env, name, *uuid, external_id.as_deref()).await,
        Command::RenameGroup { group, name } => rename_group(c, env, group, name).await,
        Command::EditGroup {
            group,
            name,
            external_id,
        } => {
            edit_group(
                c,
                env,
                group,
                name.as_deref(),
                external_id.as_ref().map(|e| e.as_deref()),
            )
            .await
        }
        Command::SetGroupMembers { group, users } => set_group_members(c, env, group, users).await,
        Command::SetHarvestExemptGroup { group, exempt } => {
            set_harvest_exempt_group(c, env, group, *exempt).await
        }
        Command::DeleteGroup { group } => delete_group(c, env, group).await,
        Command::AddGroupMember { group, user } => add_group_member(c, env, group, user).await,
        Command::RemoveGroupMember { group, user } => {
            remove_group_member(c, env, group, user).await
        }
        Command::AddGroupLicense { group, product } => {
            add_group_license(c, env, group, product).await
        }
        Command::RemoveGroupLicense { group, product } => {
            remove_group_license(c, env, group, product).await
        }
        Command::GrantSeat { seat, user } => grant_seat(c, env, *seat, user).await,
        Command::ReleaseSeat { seat, user } => release_seat(c, env, *seat, user.as_ref()).await,
        Command::RevokeSeat { seat, user } => revoke_seat(c, env, *seat, user.as_ref()).await,
        Command::ActivateSeat {
            seat,
            activation,
            user,
        } => activate_seat(c, env, *seat, activation, user.as_ref()).await,
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
        Command::AddSigningKey {
            kid,
            public_key,
            sealed_private_key,
            first_only,
        } => add_signing_key(c, env, kid, public_key, sealed_private_key, *first_only).await,
        Command::SetLicenseValidity { seconds } => set_license_validity(c, env, *seconds).await,
        Command::CreateWebhook {
            id,
            url,
            description,
            events,
            sealed_secret,
        } => webhooks::create_webhook(c, env, id, url, description, events, sealed_secret).await,
        Command::EditWebhook { id, patch } => webhooks::edit_webhook(c, env, id, patch).await,
        Command::DeleteWebhook { id } => webhooks::delete_webhook(c, env, id).await,
        Command::TestWebhook { id, event_id } => webhooks::test_webhook(c, env, id, event_id).await,
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
     u.company_id, u.license_mode, u.retired, u.disabled, u.user_type, u.external_id, u.display_name, \
     u.created_at, COALESCE(u.modified_at, u.created_at) AS modified_at, c.pool_mode AS company_mode";

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
            disabled: row.try_get::<i64, _>("disabled")? != 0,
            user_type: row.try_get("user_type")?,
            external_id: row.try_get("external_id")?,
            display_name: row.try_get("display_name")?,
            created_at: rules::from_micros(row.try_get("created_at")?),
            modified_at: rules::from_micros(row.try_get("modified_at")?),
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
     p.expires_at, p.trial, p.seat_price_e4, p.seat_price_currency";

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
            seat_price_per_30_days: match (
                row.try_get::<Option<i64>, _>("seat_price_e4")?,
                row.try_get::<Option<String>, _>("seat_price_currency")?,
            ) {
                (Some(e4), Some(currency)) => Some(SeatPrice {
                    amount: Amount::from_e4(e4 as i128),
                    currency,
                }),
                _ => None,
            },
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
        .map_err(|_| OpError::Store(crate::error::StoreError::Corrupt(format!("uuid {text:?}"))))
}

pub(crate) fn parse_enum<T: std::str::FromStr>(text: &str) -> OpResult<T> {
    text.parse()
        .map_err(|_| OpError::Store(crate::error::StoreError::Corrupt(format!("value {text:?}"))))
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
pub(super) async fn bump_counter(
    c: &mut Conn,
    tenant: i64,
    column: &'static str,
    by: i64,
) -> OpResult<i64> {
    let value: Option<i64> = sqlx::query_scalar(sql(format!(
        "UPDATE tenants SET {column} = {column} + $2 WHERE id = $1 RETURNING {column}"
    )))
    .bind(tenant)
    .bind(by)
    .fetch_optional(&mut *c)
    .await?;
    value.ok_or_else(|| LedgerError::UnknownTenant(format!("#{tenant}")).into())
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

/// Ends a command inside its transaction: writes the usage history of the pools it changed and
/// its audit records. Every path that runs a command calls this (and only this) after it. The
/// audit records come last: on PostgreSQL they lock the tenant's counter row until the commit,
/// and every writer of the tenant queues on it, so nothing else runs while it is held.
pub(crate) async fn finish_command(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    usage::flush_usage(c, env).await?;
    flush_audit(c, env).await
}

/// Numbers the command's pending audit records densely from the tenant's counter and writes them.
async fn flush_audit(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    let pending = std::mem::take(&mut *env.pending_audit());
    if pending.is_empty() {
        return Ok(());
    }
    // One statement numbers the records and reads the chain's head (RETURNING gives the head as
    // it was: this statement does not change it); the row stays locked until the commit.
    let row = sqlx::query(
        "UPDATE tenants SET last_audit_seq = last_audit_seq + $2 WHERE id = $1 \
         RETURNING last_audit_seq, audit_head",
    )
    .bind(env.tenant())
    .bind(pending.len() as i64)
    .fetch_optional(&mut *c)
    .await?
    .ok_or_else(|| LedgerError::UnknownTenant(format!("#{}", env.tenant())))?;
    let last: i64 = row.try_get(0)?;
    let mut head: Option<String> = row.try_get(1)?;
    let first = last - pending.len() as i64 + 1;
    let mut written = Vec::with_capacity(pending.len());
    for (i, record) in pending.into_iter().enumerate() {
        let row = crate::audit_chain::ChainedFields {
            seq: first + i as i64,
            at: env.now,
            actor: env.ctx.actor.clone(),
            action: record.action,
            user_id: record.subjects.user,
            product_id: record.subjects.product,
            seat_uuid: record.subjects.seat.map(|u| u.to_string()),
            company_id: record.subjects.company,
            session_uuid: record.subjects.session.map(|u| u.to_string()),
            detail: record.detail.to_string(),
            request_id: env.ctx.request_id.clone(),
        };
        sqlx::query(
            "INSERT INTO audit_events (tenant_id, seq, at, actor, action, user_id, product_id, \
             seat_uuid, company_id, session_uuid, detail, request_id, prev_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(env.tenant())
        .bind(row.seq)
        .bind(row.at)
        .bind(row.actor.clone())
        .bind(row.action.clone())
        .bind(row.user_id)
        .bind(row.product_id)
        .bind(row.seat_uuid.clone())
        .bind(row.company_id)
        .bind(row.session_uuid.clone())
        .bind(row.detail.clone())
        .bind(row.request_id.clone())
        .bind(head.clone())
        .execute(&mut *c)
        .await?;
        head = Some(row.hash(head.as_deref()));
        written.push(row);
    }
    sqlx::query("UPDATE tenants SET audit_head = $2 WHERE id = $1")
        .bind(env.tenant())
        .bind(head)
        .execute(&mut *c)
        .await?;
    // The outbox: each change's webhook deliveries, in the same transaction as its record.
    webhooks::enqueue(c, env, &written).await
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
    // A plan's members come in the same statement (one seek of plan_members' key), not in a
    // second one: a product is looked up several times on every seat operation.
    let base = format!(
        "SELECT {PRODUCT_COLUMNS}, (SELECT string_agg(CAST(m.member_id AS TEXT), ',') \
           FROM plan_members m WHERE m.tenant_id = p.tenant_id AND m.plan_id = p.id) AS members \
         FROM products p JOIN owners o \
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
            found.product.plan_members = plan_members(row.try_get("members")?)?;
            Ok(found)
        }
        None => Err(LedgerError::UnknownProduct(product.to_string()).into()),
    }
}

/// A plan's member ids from their comma-separated list, in ascending order.
fn plan_members(list: Option<String>) -> OpResult<Vec<ProductId>> {
    let mut members = list
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse()
                .map_err(|_| OpError::Store(StoreError::Corrupt(format!("plan member id {id:?}"))))
        })
        .collect::<OpResult<Vec<ProductId>>>()?;
    members.sort_unstable();
    Ok(members)
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
        let required = find_product(c, env.tenant(), &ProductRef::Id(prerequisite)).await?;
        return Err(LedgerError::PrerequisiteMissing {
            product: product.id,
            name: product.full_name(),
            prerequisite,
            prerequisite_name: required.product.full_name(),
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
    Ok(sqlx::query_scalar(
        "SELECT number FROM seats WHERE tenant_id = $1 AND holder_id = $2 AND product_id = $3 \
         ORDER BY number",
    )
    .bind(tenant)
    .bind(user)
    .bind(product)
    .fetch_all(&mut *c)
    .await?)
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
    if env.backend == Backend::Postgres {
        let row = sqlx::query(
            "SELECT retired, disabled FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(env.tenant())
        .bind(found.user.id)
        .fetch_one(&mut *c)
        .await?;
        found.user.retired = row.try_get::<i64, _>("retired")? != 0;
        found.user.disabled = row.try_get::<i64, _>("disabled")? != 0;
    }
    Ok(found)
}

fn require_not_retired(user: &UserRow) -> OpResult<()> {
    if user.user.retired {
        return Err(LedgerError::Retired(user.user.id).into());
    }
    Ok(())
}

/// Neither retired nor disabled: may be given seats and log on.
fn require_active(user: &UserRow) -> OpResult<()> {
    require_not_retired(user)?;
    require_enabled(user)
}
