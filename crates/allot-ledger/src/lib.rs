//! The seat ledger: products, seats, users, companies, computers, sessions and the audit trail
//! of one or many tenants, with every license rule in one place.
//!
//! [`Ledger`] is the only entry point adapters use. Changes go through [`Command`]s, applied
//! singly ([`Ledger::execute`]) or as a batch in one transaction ([`Ledger::apply`]); reads go
//! through the query methods. Rules that need no database live in [`rules`]; rules that depend
//! on state are enforced by the [`store`] inside its transactions.

pub mod audit_chain;
pub mod command;
pub mod error;
mod harvest;
pub mod idempotency;
pub mod keys;
pub mod license;
mod licensing;
mod maintenance;
pub mod model;
pub mod rules;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod token_cache;
pub mod webhooks;

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

pub use command::*;
pub use error::LedgerError;
pub use harvest::{harvest_commands, harvest_report};
pub use licensing::SignedLicense;
pub use maintenance::PRUNE_BATCH;
pub use model::*;
pub use store::{
    AuditFilter, Cell, CommitStats, SeatFilter, StoreOptions, TableContent, UserSearch,
};

use store::Store;

/// A log filter directive that keeps the store's driver quiet below warnings, for adapters that
/// set up logging (they need not know which driver the store uses).
pub const QUIET_STORE_LOGS: &str = "sqlx=warn";

/// What every ledger call answers: a value, or the one error type (a rule's refusal, or
/// [`LedgerError::Store`] when the store failed and nothing was applied).
pub type QueryResult<T> = Result<T, LedgerError>;

/// Where the ledger gets the time from; tests move it by hand to exercise expiry and leases.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock lock")
    }
}

/// The most points one usage answer holds (a week of minutes, 13 years of days).
pub const MAX_USAGE_POINTS: i64 = 10_080;

/// The first bucket start and the end (microseconds) of a usage range, or why it is refused.
fn usage_range(
    from: OffsetDateTime,
    to: OffsetDateTime,
    step: UsageStep,
) -> QueryResult<(i64, i64)> {
    if to <= from {
        return Err(LedgerError::Invalid {
            field: "to",
            reason: "must be later than from".into(),
        });
    }
    let width = step.seconds() * 1_000_000;
    let first = rules::to_micros(from).div_euclid(width) * width;
    let end = rules::to_micros(to);
    let points = (end - first + width - 1) / width;
    if points > MAX_USAGE_POINTS {
        return Err(LedgerError::Invalid {
            field: "step",
            reason: format!(
                "{points} points of a {step} asked for, at most {MAX_USAGE_POINTS}: \
                 a larger step or a shorter range"
            ),
        });
    }
    Ok((first, end))
}

/// Fills in each point's `unused_seat_cost` when the product has a seat price.
fn price_points(product: &Product, points: &mut [UsagePoint]) {
    if let Some(price) = &product.seat_price_per_30_days {
        for point in points {
            point.unused_seat_cost = Some(rules::unused_seat_cost(
                point.unused_seat_seconds,
                price.amount,
            ));
        }
    }
}

/// What the unused seats of `points` cost in all, in the product's currency: the points'
/// unused seat-seconds added up exactly, then priced and rounded once (so the total is exact
/// to 1/10,000; the points' own rounded costs may add up to a little more or less, at most
/// half of 1/10,000 per point); `None` when the product has no seat price.
pub fn unused_seat_cost_total(product: &Product, points: &[UsagePoint]) -> Option<Amount> {
    let price = product.seat_price_per_30_days.as_ref()?;
    let seconds: i64 = points.iter().map(|p| p.unused_seat_seconds).sum();
    Some(rules::unused_seat_cost(seconds, price.amount))
}

#[derive(Clone)]
pub struct Ledger {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    vault: Arc<keys::KeyVault>,
    tokens: Arc<token_cache::TokenCache>,
}

impl Ledger {
    /// Opens the store at `url` (running its migrations) with the system clock.
    pub async fn open(url: &str) -> QueryResult<Ledger> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    pub async fn open_with(url: &str, options: &StoreOptions) -> QueryResult<Ledger> {
        Ok(Ledger {
            store: Arc::new(Store::open(url, options).await?),
            clock: Arc::new(SystemClock),
            vault: Arc::new(keys::KeyVault::plain()),
            tokens: Arc::new(token_cache::TokenCache::new(std::time::Duration::ZERO)),
        })
    }

    /// Remembers live bearer tokens for `ttl` ([`Ledger::token_state`] then reads the store once
    /// per token and `ttl`, not per request); zero (the default) remembers none. A token revoked
    /// through this handle (or a clone) is refused at once; one changed where no notification
    /// reaches (by hand in the database, or another process on one SQLite file), within `ttl`.
    ///
    /// On PostgreSQL a revocation committed by another process reaches this cache as a
    /// notification (`store/notify.rs`), milliseconds after its commit; the cache serves nothing
    /// while it cannot listen. Must be called inside a Tokio runtime to listen.
    pub fn with_token_cache(mut self, ttl: std::time::Duration) -> Ledger {
        let cache = Arc::new(token_cache::TokenCache::new(ttl));
        if cache.enabled() {
            // Nothing is served until the feed listens; the task holds the cache weakly, so
            // it ends with the last handle.
            cache.distrust();
            let weak = Arc::downgrade(&cache);
            match self.store.watch_credentials(move |event| {
                let Some(cache) = weak.upgrade() else {
                    return false;
                };
                match event {
                    store::notify::CredentialsEvent::Listening => cache.trust(),
                    store::notify::CredentialsEvent::Changed(tenant) => {
                        cache.forget_tenant(Some(tenant))
                    }
                    store::notify::CredentialsEvent::Lost => cache.distrust(),
                }
                true
            }) {
                Some(task) => cache.set_watch(task),
                // SQLite: one process owns the file and its own commands clear the cache.
                None if self.store.is_sqlite() => cache.trust(),
                // PostgreSQL outside a runtime: no feed, so no cache.
                None => {}
            }
        }
        self.tokens = cache;
        self
    }

    /// Whether the token cache answers from memory now: false without a cache, and on
    /// PostgreSQL while its feed of other processes' changes is not listening.
    pub fn token_cache_serving(&self) -> bool {
        self.tokens.serving()
    }

    /// How long live tokens are remembered (zero: not at all).
    pub fn token_cache_ttl(&self) -> std::time::Duration {
        self.tokens.ttl()
    }

    /// After commands that may have ended credentials of `tenant`: forget its cached tokens.
    pub(crate) fn credentials_changed(&self, tenant: TenantId, commands: &[Command]) {
        if commands.iter().any(Command::may_change_credentials) {
            self.tokens.forget_tenant(Some(tenant));
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Ledger {
        self.clock = clock;
        self
    }

    /// Seals new license-signing keys with (and opens sealed ones through) this vault.
    pub fn with_key_vault(mut self, vault: keys::KeyVault) -> Ledger {
        self.vault = Arc::new(vault);
        self
    }

    /// Whether the store answers (readiness probes).
    pub async fn ping(&self) -> QueryResult<()> {
        Ok(self.store.ping().await?)
    }

    fn now(&self) -> i64 {
        rules::to_micros(self.clock.now())
    }

    pub async fn close(&self) {
        self.tokens.stop();
        self.store.close().await;
    }

    /// Creates a tenant with nothing in it; its first audit record is its own creation.
    /// Adapters create a tenant together with its admin login: [`Ledger::create_tenant_with`].
    pub async fn create_tenant(&self, name: &str, actor: &str) -> Result<Tenant, LedgerError> {
        Ok(self.create_tenant_with(name, actor, None, &[]).await?.0)
    }

    /// Creates a tenant and runs `setup` in it (as `actor`, audited with `request_id`) in the
    /// same transaction, e.g. its first admin login: if any command is refused, or the store
    /// fails, no tenant exists afterwards, so a tenant can never be left without the admin it
    /// was created with.
    pub async fn create_tenant_with(
        &self,
        name: &str,
        actor: &str,
        request_id: Option<String>,
        setup: &[Command],
    ) -> Result<(Tenant, Vec<Outcome>), LedgerError> {
        let now = self.now();
        let by = Context {
            tenant: 0,
            actor: actor.to_owned(),
            request_id,
        };
        let (id, outcomes) = self
            .store
            .create_tenant(name, &by, now, setup, &self.vault)
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))??;
        let tenant = Tenant {
            id,
            name: name.trim().to_owned(),
            created_at: rules::from_micros(now),
        };
        Ok((tenant, outcomes))
    }

    pub async fn tenant(&self, name: &str) -> QueryResult<Option<Tenant>> {
        Ok(self.store.tenant_by_name(name).await?)
    }

    pub async fn tenants(&self) -> QueryResult<Vec<Tenant>> {
        Ok(self.store.tenants().await?)
    }

    /// Applies commands in one transaction, each with its own outcome. `Err` means the store
    /// failed and nothing of the batch was applied.
    pub async fn apply(
        &self,
        ctx: &Context,
        commands: &[Command],
    ) -> QueryResult<Vec<Result<Outcome, LedgerError>>> {
        let outcomes = self.store.apply(ctx, commands, self.now()).await;
        self.credentials_changed(ctx.tenant, commands);
        Ok(outcomes?)
    }

    /// Runs commands as [`Ledger::apply`] would, each with its own outcome, and rolls them all
    /// back: what they would change, with nothing applied.
    pub async fn apply_dry_run(
        &self,
        ctx: &Context,
        commands: &[Command],
    ) -> QueryResult<Vec<Result<Outcome, LedgerError>>> {
        Ok(self.store.apply_dry_run(ctx, commands, self.now()).await?)
    }

    /// Applies commands in one transaction that commits only if every command succeeds; the
    /// first refusal is returned and nothing is applied.
    pub async fn apply_all_or_nothing(
        &self,
        ctx: &Context,
        commands: &[Command],
    ) -> Result<Vec<Outcome>, LedgerError> {
        let outcomes = self
            .store
            .apply_all_or_nothing(ctx, commands, self.now())
            .await;
        self.credentials_changed(ctx.tenant, commands);
        outcomes
            .map_err(|e| LedgerError::Store(e.to_string()))?
            .into_iter()
            .collect()
    }

    /// How many group commits this handle's store has run, and how many commands they held.
    pub fn commit_stats(&self) -> CommitStats {
        self.store.commit_stats()
    }

    /// Applies one command.
    ///
    /// Commands of concurrent callers are committed together (group commit: one transaction,
    /// each command under its own savepoint, one commit); each caller gets its own command's
    /// outcome, and only once that transaction has committed.
    pub async fn execute(&self, ctx: &Context, command: Command) -> Result<Outcome, LedgerError> {
        let changes_credentials = command.may_change_credentials();
        let outcome = self.store.execute(ctx.clone(), command, self.now()).await;
        if changes_credentials {
            self.tokens.forget_tenant(Some(ctx.tenant));
        }
        outcome
    }

    pub async fn user(&self, tenant: TenantId, user: &UserRef) -> QueryResult<User> {
        Ok(self.store.user(tenant, user).await?)
    }

    pub async fn users(
        &self,
        tenant: TenantId,
        after_id: Option<UserId>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<User>> {
        Ok(self.store.users(tenant, after_id, limit).await?)
    }

    pub async fn company(&self, tenant: TenantId, company: &CompanyRef) -> QueryResult<Company> {
        Ok(self.store.company(tenant, company).await?)
    }

    pub async fn companies(&self, tenant: TenantId) -> QueryResult<Vec<Company>> {
        Ok(self.store.companies(tenant).await?)
    }

    pub async fn product(&self, tenant: TenantId, product: &ProductRef) -> QueryResult<Product> {
        Ok(self.store.product(tenant, product).await?)
    }

    pub async fn products(&self, tenant: TenantId) -> QueryResult<Vec<Product>> {
        Ok(self.store.products(tenant).await?)
    }

    /// Total / InUse / Free of every product (or one).
    pub async fn pool_status(
        &self,
        tenant: TenantId,
        product: Option<ProductId>,
    ) -> QueryResult<Vec<PoolStatus>> {
        Ok(self.store.pool_status(tenant, product, self.now()).await?)
    }

    /// Every product as `user` sees it (Assigned, CanAssign).
    pub async fn user_view(
        &self,
        tenant: TenantId,
        user: &UserRef,
    ) -> QueryResult<Vec<UserProductView>> {
        Ok(self.store.user_view(tenant, user, self.now(), None).await?)
    }

    /// One product as `user` sees it: what [`Ledger::user_view`] says of it, reading only that
    /// product's pool (and its plan members').
    pub async fn user_product_view(
        &self,
        tenant: TenantId,
        user: &UserRef,
        product: ProductId,
    ) -> QueryResult<UserProductView> {
        self.store
            .user_view(tenant, user, self.now(), Some(&[product]))
            .await?
            .pop()
            .ok_or_else(|| LedgerError::UnknownProduct(format!("#{product}")))
    }

    /// The products of one owner (matched without regard to case) as `user` sees them: what
    /// [`Ledger::user_view`] says of them, reading only their pools.
    pub async fn user_owner_view(
        &self,
        tenant: TenantId,
        user: &UserRef,
        owner: &str,
    ) -> QueryResult<Vec<UserProductView>> {
        let owner = rules::name_key(owner);
        let ids: Vec<ProductId> = self
            .store
            .products(tenant)
            .await?
            .iter()
            .filter(|p| rules::name_key(&p.owner) == owner)
            .map(|p| p.id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .user_view(tenant, user, self.now(), Some(&ids))
            .await?)
    }

    /// The product's usage history: one point per `step` from the step holding `from` up to
    /// `to` (and no later than now), each with the seats bought, the peak and time-weighted mean
    /// of seats held, and the requests refused for want of a seat; steps without a change carry
    /// the counts over. At most [`MAX_USAGE_POINTS`] points: a longer range wants a larger step.
    pub async fn usage(
        &self,
        tenant: TenantId,
        product: ProductId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        step: UsageStep,
    ) -> QueryResult<Vec<UsagePoint>> {
        let (first, end) = usage_range(from, to, step)?;
        // Answers unknown_product for a product that is not the tenant's.
        let product = self.store.product(tenant, &ProductRef::Id(product)).await?;
        let mut points = self
            .store
            .usage(tenant, product.id, first, end, step, self.now())
            .await?;
        price_points(&product, &mut points);
        Ok(points)
    }

    /// [`Ledger::usage`] of every product of the tenant, in the products' order.
    pub async fn tenant_usage(
        &self,
        tenant: TenantId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        step: UsageStep,
    ) -> QueryResult<Vec<(Product, Vec<UsagePoint>)>> {
        let (first, end) = usage_range(from, to, step)?;
        let now = self.now();
        let mut all = Vec::new();
        for product in self.store.products(tenant).await? {
            let mut points = self
                .store
                .usage(tenant, product.id, first, end, step, now)
                .await?;
            price_points(&product, &mut points);
            all.push((product, points));
        }
        Ok(all)
    }

    /// Requests refused for want of a seat since the usage history began, per product.
    pub async fn pool_denials(&self, tenant: TenantId) -> QueryResult<Vec<(ProductId, i64)>> {
        Ok(self.store.pool_denials(tenant).await?)
    }

    pub async fn seat(&self, tenant: TenantId, seat: Uuid) -> QueryResult<Seat> {
        Ok(self.store.seat(tenant, seat).await?)
    }

    pub async fn seats(&self, tenant: TenantId, filter: &SeatFilter) -> QueryResult<Vec<Seat>> {
        Ok(self.store.seats(tenant, filter, self.now()).await?)
    }

    pub async fn session(&self, tenant: TenantId, session: Uuid) -> QueryResult<Session> {
        Ok(self.store.session(tenant, session).await?)
    }

    pub async fn live_sessions(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        client: Option<ClientKind>,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<Session>> {
        Ok(self
            .store
            .live_sessions(tenant, user, client, after, limit)
            .await?)
    }

    pub async fn computers(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> QueryResult<Vec<Computer>> {
        Ok(self.store.computers(tenant, user).await?)
    }

    pub async fn audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> QueryResult<Vec<AuditEvent>> {
        Ok(self.store.audit(tenant, filter).await?)
    }

    /// The tenant's audit chain head (its last record's number, hash and time); `None` for an
    /// unknown tenant.
    pub async fn audit_head(
        &self,
        tenant: TenantId,
    ) -> QueryResult<Option<audit_chain::AuditHead>> {
        Ok(self.store.audit_head(tenant).await?)
    }

    /// Walks the tenant's audit chain and names the first record edited, removed or reordered;
    /// `None` for an unknown tenant.
    pub async fn verify_audit_chain(
        &self,
        tenant: TenantId,
    ) -> QueryResult<Option<audit_chain::ChainCheck>> {
        Ok(self.store.verify_audit_chain(tenant).await?)
    }

    /// Users matching a search (text in login, name or e-mail; company; retired), by id.
    pub async fn find_users(
        &self,
        tenant: TenantId,
        search: &UserSearch,
    ) -> QueryResult<Vec<User>> {
        Ok(self.store.find_users(tenant, search).await?)
    }

    /// The newest audit records matching `filter` (at most its `limit`), newest first.
    pub async fn audit_latest(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> QueryResult<Vec<AuditEvent>> {
        Ok(self.store.audit_latest(tenant, filter).await?)
    }

    /// A company's quotas and own pool, per product it has either of.
    pub async fn company_pools(
        &self,
        tenant: TenantId,
        company: &CompanyRef,
    ) -> QueryResult<Vec<CompanyPool>> {
        Ok(self
            .store
            .company_pools(tenant, company, self.now())
            .await?)
    }

    /// What stops counting within `within` from now: seats by expiry, and whole products.
    pub async fn expiring(
        &self,
        tenant: TenantId,
        within: time::Duration,
    ) -> QueryResult<Vec<Expiry>> {
        let now = self.now();
        let until = rules::to_micros(self.clock.now() + within);
        Ok(self.store.expiring(tenant, now, until).await?)
    }

    /// Every invariant violation found in the tenant's committed state (empty: all hold).
    pub async fn check_invariants(&self, tenant: TenantId) -> QueryResult<Vec<String>> {
        Ok(self.store.check_invariants(tenant, self.now()).await?)
    }

    pub async fn group(&self, tenant: TenantId, group: &GroupRef) -> QueryResult<Group> {
        Ok(self.store.group(tenant, group).await?)
    }

    /// Groups by id, a page at a time (`after_id` is the previous page's last id).
    pub async fn groups(
        &self,
        tenant: TenantId,
        after_id: Option<GroupId>,
        limit: Option<i64>,
    ) -> QueryResult<Vec<Group>> {
        Ok(self.store.groups(tenant, after_id, limit).await?)
    }

    /// Users whose external id is exactly this (an indexed lookup; SCIM `externalId eq`).
    pub async fn users_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> QueryResult<Vec<User>> {
        Ok(self.store.users_by_external_id(tenant, external_id).await?)
    }

    /// Groups whose external id is exactly this (an indexed lookup; SCIM `externalId eq`).
    pub async fn groups_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> QueryResult<Vec<Group>> {
        Ok(self
            .store
            .groups_by_external_id(tenant, external_id)
            .await?)
    }

    /// The members' UUIDs of the groups with ids `first..=last` (a page of groups), ordered by
    /// group id.
    pub async fn group_member_uuids(
        &self,
        tenant: TenantId,
        first: GroupId,
        last: GroupId,
    ) -> QueryResult<Vec<(GroupId, Uuid)>> {
        Ok(self.store.group_member_uuids(tenant, first, last).await?)
    }

    /// A group with its members, licenses and each member's assignment state.
    pub async fn group_view(&self, tenant: TenantId, group: &GroupRef) -> QueryResult<GroupView> {
        Ok(self.store.group_view(tenant, group).await?)
    }

    /// The groups the user is a member of.
    pub async fn user_groups(&self, tenant: TenantId, user: UserId) -> QueryResult<Vec<Group>> {
        Ok(self.store.user_groups(tenant, user).await?)
    }

    /// Whether disabling a user keeps its seats (the tenant's setting).
    pub async fn disabled_keep_seats(&self, tenant: TenantId) -> QueryResult<bool> {
        Ok(self.store.disabled_keep_seats(tenant).await?)
    }
}

/// What [`Ledger::copy_to`] moved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in copy order; the target holds exactly these rows afterwards.
    pub rows: Vec<(String, usize)>,
    /// Tenants whose invariants and audit chain were verified on the target.
    pub tenants: usize,
}

/// Whole-store operations: backup, copy between stores, restore.
impl Ledger {
    /// The data tables the store's schema has (the migrations' tables), by name.
    pub async fn schema_tables(&self) -> QueryResult<Vec<String>> {
        Ok(self.store.schema_tables().await?)
    }

    /// The tables [`Ledger::copy_to`] copies, in its order (parents first).
    pub fn copied_tables() -> Vec<&'static str> {
        store::copied_tables()
    }

    /// Whether no table of the store holds a row.
    pub async fn is_empty(&self) -> QueryResult<bool> {
        Ok(self.store.is_empty().await?)
    }

    /// Every table's rows in one consistent read, in copy order and each table in key order.
    pub async fn contents(&self) -> QueryResult<Vec<TableContent>> {
        Ok(self.store.contents().await?)
    }

    /// Writes a consistent copy of this SQLite store to a new file at `path` while it is in
    /// use (`VACUUM INTO`: one snapshot, read as a reader reads, so writers go on). PostgreSQL
    /// stores are refused: `pg_dump` does this for them.
    pub async fn backup_to(&self, path: &std::path::Path) -> QueryResult<()> {
        let path = path.to_str().ok_or_else(|| LedgerError::Invalid {
            field: "to",
            reason: "the backup path is not UTF-8".into(),
        })?;
        if std::path::Path::new(path).exists() {
            return Err(LedgerError::Invalid {
                field: "to",
                reason: format!("{path} exists; a backup goes to a new file"),
            });
        }
        Ok(self.store.backup_into(path).await?)
    }

    /// Copies every table of this store (ids, audit chain, keys and all) into `target`, which
    /// must be empty unless `replace` (then its rows are removed first, in the same way).
    /// Verified before answering: the target's rows equal the source's snapshot, table by
    /// table, and every tenant's invariants hold and its audit chain verifies there.
    pub async fn copy_to(&self, target: &Ledger, replace: bool) -> QueryResult<CopyReport> {
        if !target.is_empty().await? {
            if !replace {
                return Err(LedgerError::Invalid {
                    field: "to",
                    reason: "the target store is not empty (pass --force to replace its contents)"
                        .into(),
                });
            }
            target.store.clear().await?;
        }
        let contents = self.contents().await?;
        target.store.load(&contents).await?;
        let copied = target.contents().await?;
        for (want, got) in contents.iter().zip(&copied) {
            if want.rows != got.rows {
                return Err(LedgerError::Store(format!(
                    "table {} differs after the copy ({} rows sent, {} found)",
                    want.table,
                    want.rows.len(),
                    got.rows.len()
                )));
            }
        }
        let tenants = target.tenants().await?;
        for tenant in &tenants {
            let broken = target.check_invariants(tenant.id).await?;
            if !broken.is_empty() {
                return Err(LedgerError::Store(format!(
                    "tenant {}: invariants broken after the copy: {}",
                    tenant.name,
                    broken.join("; ")
                )));
            }
            match target.verify_audit_chain(tenant.id).await? {
                Some(audit_chain::ChainCheck::Intact { .. }) | None => {}
                Some(audit_chain::ChainCheck::Broken { seq, reason }) => {
                    return Err(LedgerError::Store(format!(
                        "tenant {}: audit chain broken at record {seq} after the copy: {reason}",
                        tenant.name
                    )));
                }
            }
        }
        Ok(CopyReport {
            rows: contents
                .iter()
                .map(|c| (c.table.clone(), c.rows.len()))
                .collect(),
            tenants: tenants.len(),
        })
    }
}

impl Ledger {
    pub async fn login(&self, tenant: TenantId, login: &str) -> QueryResult<Option<LoginRecord>> {
        Ok(self.store.login(tenant, login).await?)
    }

    /// The tenant's password logins (their hashes stay in the store).
    pub async fn logins(&self, tenant: TenantId) -> QueryResult<Vec<LoginInfo>> {
        Ok(self.store.logins(tenant).await?)
    }

    /// The live (unexpired, unrevoked) token with this SHA-256.
    pub async fn live_token(&self, token_hash: &str) -> QueryResult<Option<TokenInfo>> {
        Ok(match self.token_state(token_hash).await? {
            TokenState::Live(info) => Some(info),
            _ => None,
        })
    }

    /// What the token with this SHA-256 is now: live, revoked, expired, or unknown; so a refusal
    /// can say which (the holder of a token learns nothing it could not see on it).
    ///
    /// Live tokens are remembered for the token cache's lifetime ([`Ledger::with_token_cache`]);
    /// their expiry is checked on every use all the same.
    pub async fn token_state(&self, token_hash: &str) -> QueryResult<TokenState> {
        if let Some(info) = self.tokens.get(token_hash) {
            return Ok(TokenState::of(Some(info), self.now_time()));
        }
        let generation = self.tokens.generation();
        let read_at = std::time::Instant::now();
        let info = self.store.token_by_hash(token_hash).await?;
        let state = TokenState::of(info, self.now_time());
        if let TokenState::Live(info) = &state {
            self.tokens
                .put(generation, token_hash, info.clone(), read_at);
        }
        Ok(state)
    }

    pub async fn tokens(&self, tenant: TenantId) -> QueryResult<Vec<TokenInfo>> {
        Ok(self.store.tokens(tenant).await?)
    }

    pub async fn issue_operator_token(
        &self,
        token_hash: &str,
        label: &str,
        expires_at: OffsetDateTime,
    ) -> QueryResult<TokenInfo> {
        let now = self.now();
        let info = TokenInfo {
            id: Uuid::new_v4(),
            tenant: None,
            role: Role::Operator,
            login: "operator".into(),
            user: None,
            label: label.to_owned(),
            created_at: rules::from_micros(now),
            expires_at,
            revoked_at: None,
        };
        self.store
            .issue_operator_token(&info, token_hash, now)
            .await?;
        Ok(info)
    }

    pub fn now_time(&self) -> OffsetDateTime {
        self.clock.now()
    }
}
