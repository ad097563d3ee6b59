//! The ledger's nouns. Plain data: no I/O, no SQL. Adapters (native API, SuperOffice, MSP360)
//! map these to their own wire shapes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub type TenantId = i64;
/// Per-tenant product id (SuperOffice `ModuleLicenseId`).
pub type ProductId = i64;
/// Per-tenant user id (SuperOffice `AssociateId`); users also carry a UUID (MSP360 `UserID`).
pub type UserId = i64;
pub type CompanyId = i64;
pub type OwnerId = i64;
/// Per-tenant group id.
pub type GroupId = i64;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::LedgerError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($text) { return Ok($name::$variant); })+
                Err(crate::LedgerError::Invalid {
                    field: stringify!($name),
                    reason: format!("unknown value {s:?}"),
                })
            }
        }
    };
}

string_enum! {
    /// How a product's seats are consumed.
    ProductKind {
        /// Named seats, assigned to users.
        User = "user",
        /// Applies to every user; nothing to assign.
        Site = "site",
        /// One seat per live session.
        Floating = "floating",
    }
}

string_enum! {
    /// Where a company's users take seats from (MSP360 `LicenseSettings`).
    PoolMode {
        Global = "global",
        Company = "company",
        /// Each user's own license-management mode decides.
        Custom = "custom",
    }
}

string_enum! {
    /// A user's license-management mode (MSP360 `LicenseManagmentMode`).
    LicenseMode {
        Manual = "manual",
        Automatic = "automatic",
        /// Follow the company's pool mode.
        Company = "company",
    }
}

string_enum! {
    ClientKind {
        Windows = "windows",
        Web = "web",
        Mobile = "mobile",
        Api = "api",
    }
}

string_enum! {
    EndReason {
        Logoff = "logoff",
        Expiry = "expiry",
        Admin = "admin",
    }
}

string_enum! {
    /// Where a member's assignment through a group stands.
    AssignmentState {
        /// The member holds a seat of the product (this group is one reason why).
        Active = "active",
        /// No seat the member may take is free: it gets one first come, first served.
        Waiting = "waiting",
        /// A rule refuses it (`reason` says which); tried again when that may have changed.
        Error = "error",
    }
}

/// `extra_flags` bit marking a user plan.
pub const EXTRA_FLAG_USER_PLAN: i64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Owner {
    pub id: OwnerId,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: ProductId,
    pub owner: String,
    pub name: String,
    pub description: String,
    pub tooltip: String,
    pub kind: ProductKind,
    pub unrestricted: bool,
    pub hidden: bool,
    pub sort_order: i64,
    pub extra_flags: i64,
    /// Products a user plan brings along (empty unless `extra_flags & 1`).
    pub plan_members: Vec<ProductId>,
    pub prerequisite: Option<ProductId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub trial: bool,
    /// The list price of one seat for 30 days, when one is set (the usage history then says
    /// what the unused seats cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_price_per_30_days: Option<SeatPrice>,
}

impl Product {
    pub fn is_user_plan(&self) -> bool {
        self.extra_flags & EXTRA_FLAG_USER_PLAN != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activation {
    pub hardware_id: String,
    pub computer_name: String,
    pub operating_system: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Seat {
    pub id: Uuid,
    /// Tenant-wide sequential number (MSP360 `Number`).
    pub number: i64,
    pub product: ProductId,
    pub trial: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub transaction_id: Option<String>,
    /// `None` = the tenant-wide pool.
    pub pool_company: Option<CompanyId>,
    /// Created for an unrestricted product assigned past what was bought; deleted on release.
    pub overflow: bool,
    pub holder: Option<UserId>,
    pub session: Option<Uuid>,
    pub activation: Option<Activation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub uuid: Uuid,
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub company: Option<CompanyId>,
    pub license_mode: LicenseMode,
    pub retired: bool,
    /// Disabled (an identity provider's `active: false`): kept, but cannot log on or use a
    /// token, and holds no seat unless the tenant keeps disabled users' seats.
    pub disabled: bool,
    pub user_type: String,
    /// The identity provider's id for the user (SCIM `externalId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The name to show (SCIM `displayName`), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the user's own fields last changed (its creation, if never).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Company {
    pub id: CompanyId,
    pub uuid: Uuid,
    pub name: String,
    pub pool_mode: PoolMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Computer {
    pub hardware_id: String,
    pub name: String,
    pub operating_system: String,
    pub user: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub id: Uuid,
    /// Per-tenant sequence number (listing order and cursor).
    pub number: i64,
    pub user: UserId,
    pub client: ClientKind,
    pub device: String,
    pub product: Option<ProductId>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub end_reason: Option<EndReason>,
}

/// A freshly opened or renewed session, with the secret only its holder gets to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    pub session: Session,
    /// The fencing token: presented on every heartbeat. Stored only as a hash.
    pub lease_token: String,
    /// The floating seat the session holds, if its product is floating.
    pub seat: Option<Uuid>,
}

/// Live counts for one product (SuperOffice Total/InUse/Free).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PoolStatus {
    pub product: ProductId,
    pub owner: String,
    pub name: String,
    pub kind: ProductKind,
    pub unrestricted: bool,
    /// Unexpired seats bought (overflow seats excluded).
    pub total: i64,
    /// Unexpired seats held (overflow seats included: may exceed `total` when unrestricted).
    pub in_use: i64,
    /// `total - in_use`, never below zero.
    pub free: i64,
}

/// One product as a given user sees it (SuperOffice Assigned/CanAssign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserProductView {
    pub product: Product,
    pub status: PoolStatus,
    /// Granted to the user: holds an unexpired seat, or a site product.
    pub assigned: bool,
    /// Assigning it now would succeed (ignoring the caller's own rights).
    pub can_assign: bool,
    /// Why the user holds it: `direct` (assigned or granted), `plan:<owner>/<name>` (brought by
    /// a user plan), `group:<name>` (an active group assignment). Empty when not held (and for
    /// site products, which everyone holds).
    pub reasons: Vec<String>,
    /// The user's assignments of this product through groups, whatever their state.
    pub groups: Vec<GroupAssignment>,
}

/// A group of users; licenses given to it go to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub id: GroupId,
    pub uuid: Uuid,
    pub name: String,
    /// The identity provider's id for the group (SCIM `externalId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its name, external id or members last changed (`created_at` if never).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
}

/// One member's assignment of one product through one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupAssignment {
    pub group: GroupId,
    pub group_name: String,
    pub user: UserId,
    pub login: String,
    pub product: ProductId,
    /// `owner/name`.
    pub product_name: String,
    pub state: AssignmentState,
    /// Why it is not active: `no_free_seat`, `quota_exhausted` (waiting); `prerequisite_missing`,
    /// `user_disabled`, `user_retired`, `product_expired` (error).
    pub reason: Option<String>,
    /// Place in the product's waiting list, taken when the assignment last started waiting
    /// (smaller goes first; kept once active, as the order it was served in).
    pub queue_number: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// A member as its group shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupMember {
    pub user: UserId,
    pub login: String,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// A license given to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupLicense {
    pub product: ProductId,
    /// `owner/name`.
    pub product_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// A group with its members, its licenses and every member's assignment state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: GroupId,
    pub uuid: Uuid,
    pub name: String,
    pub members: Vec<GroupMember>,
    pub licenses: Vec<GroupLicense>,
    pub assignments: Vec<GroupAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub user: Option<UserId>,
    pub product: Option<ProductId>,
    pub seat: Option<Uuid>,
    pub company: Option<CompanyId>,
    pub session: Option<Uuid>,
    /// Before/after summary of the change.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

string_enum! {
    /// What a credential may do. `Operator` is server-wide; the others are bound to one tenant.
    Role {
        /// Creates tenants; sees no tenant's ledger.
        Operator = "operator",
        /// Everything within its tenant.
        Admin = "admin",
        /// Reads everything within its tenant, changes nothing.
        Reader = "reader",
        /// Its own user's sessions and licenses.
        User = "user",
        /// An identity provider's SCIM client: `/scim/v2` and nothing else (tokens only).
        Scim = "scim",
    }
}

/// A password login (the hash stays in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginInfo {
    pub login: String,
    pub role: Role,
    pub user: Option<UserId>,
}

/// A login with its stored argon2id hash, for verification only.
#[derive(Clone)]
pub struct LoginRecord {
    pub tenant: TenantId,
    pub info: LoginInfo,
    pub password_hash: String,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord")
            .field("tenant", &self.tenant)
            .field("info", &self.info)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// An API token as listed (never the token itself, which is shown once at issue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub tenant: Option<TenantId>,
    pub role: Role,
    pub login: String,
    pub user: Option<UserId>,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A presented token as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    Live(TokenInfo),
    /// Revoked (by hand, or by a password change), whether or not it has also expired.
    Revoked,
    Expired,
    /// No token has this hash.
    Unknown,
}

impl TokenState {
    /// Classifies a token looked up by its hash at `now`; a token is live until its expiry.
    pub fn of(info: Option<TokenInfo>, now: OffsetDateTime) -> TokenState {
        match info {
            None => TokenState::Unknown,
            Some(t) if t.revoked_at.is_some() => TokenState::Revoked,
            Some(t) if t.expires_at <= now => TokenState::Expired,
            Some(t) => TokenState::Live(t),
        }
    }
}

impl Seat {
    /// When the seat stops counting: the earlier of its own expiry and its product's.
    pub fn effective_expiry(&self, product: Option<&Product>) -> Option<time::OffsetDateTime> {
        match (self.expires_at, product.and_then(|p| p.expires_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A trial seat, or a seat of a trial product.
    pub fn is_trial(&self, product: Option<&Product>) -> bool {
        self.trial || product.is_some_and(|p| p.trial)
    }
}

impl Product {
    /// `owner/name`, as people and errors name a product.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

string_enum! {
    /// What the harvest does with a seat idle past its product's policy.
    HarvestAction {
        /// Frees the seat (audited with the reason `idle`).
        Release = "release",
        /// Only lists it.
        Report = "report",
    }
}

/// A product's idle-seat policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HarvestPolicy {
    /// A held seat unused for this many days is idle (1..=3650).
    #[schema(minimum = 1, maximum = 3650)]
    pub idle_days: i64,
    pub action: HarvestAction,
}

/// One product's policy, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductHarvestPolicy {
    pub product: ProductId,
    pub owner: String,
    pub name: String,
    pub idle_days: i64,
    pub action: HarvestAction,
}

/// A held seat idle past its product's policy: what the harvest would do with it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdleSeat {
    pub seat: Uuid,
    pub product: ProductId,
    /// `owner/name`.
    pub product_name: String,
    pub user: UserId,
    pub login: String,
    /// When the seat was last used (or taken, if never used since).
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    /// Whole days since `last_used_at`.
    pub idle_days: i64,
    /// The policy's threshold.
    pub policy_idle_days: i64,
    pub action: HarvestAction,
    /// Why the harvest leaves it alone: `user` (its holder is exempt) or `group:<name>` (a
    /// group its holder is in is exempt); absent when it is not exempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt: Option<String>,
    /// The harvest released it (false: reported only, exempt, a dry run, or used again meanwhile).
    pub released: bool,
}

/// A company's share of one product: its quota of the tenant-wide pool and its own pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompanyPool {
    pub company: CompanyId,
    pub product: ProductId,
    pub owner: String,
    pub name: String,
    /// Tenant-wide seats the company's users may hold; `None`: no quota set.
    pub quota: Option<i64>,
    /// Tenant-wide seats charged against the quota.
    pub quota_used: i64,
    /// Unexpired seats in the company's own pool.
    pub own_total: i64,
    pub own_in_use: i64,
    pub own_free: i64,
}

/// Seats that stop counting at one moment: a batch of seats with that expiry, or a whole
/// product whose own expiry it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Expiry {
    pub product: ProductId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The product itself expires (all its seats with it).
    pub whole_product: bool,
    /// Seats that stop counting then.
    pub seats: i64,
    /// Of those, held by someone now.
    pub held: i64,
}

string_enum! {
    /// The width of one point of a usage history.
    UsageStep {
        Minute = "minute",
        Hour = "hour",
        Day = "day",
    }
}

impl UsageStep {
    pub fn seconds(self) -> i64 {
        match self {
            UsageStep::Minute => 60,
            UsageStep::Hour => 3_600,
            UsageStep::Day => 86_400,
        }
    }
}

/// One step of a product's usage history (`at` is its start, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsagePoint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Seats bought at the end of the step (overflow excluded, expiry not applied).
    pub total: i64,
    /// The most seats held at once during the step.
    pub in_use_max: i64,
    /// Seats held, averaged over the step's time (up to now, for the step under way).
    pub in_use_avg: f64,
    /// Requests refused for want of a free seat during the step.
    pub denied: i64,
    /// Seat-seconds bought but not held during the step.
    pub unused_seat_seconds: i64,
    /// What `unused_seat_seconds` cost at the product's seat price, in its currency, when it
    /// has one: seconds x price / 2,592,000, exact, rounded half up to 1/10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "1.2345")]
    pub unused_seat_cost: Option<Amount>,
}

/// An exact amount of money in ten-thousandths of its currency's unit (no binary floating
/// point). In JSON a decimal string: at most four places in, always four out ("12.5000").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    pub e4: i128,
}

impl Amount {
    pub fn from_e4(e4: i128) -> Amount {
        Amount { e4 }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.e4 < 0 { "-" } else { "" };
        let abs = self.e4.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / 10_000, abs % 10_000)
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    /// A non-negative decimal with at most four places: `12`, `12.5`, `0.0001`.
    fn from_str(s: &str) -> Result<Amount, String> {
        let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || (s.contains('.') && fraction.is_empty())
        {
            return Err(format!(
                "{s:?} is not a decimal amount such as \"12.50\" (digits, an optional point and \
                 up to four places; no sign, no exponent)"
            ));
        }
        if fraction.len() > 4 {
            return Err(format!("{s:?} has more than four decimal places"));
        }
        if whole.len() > 20 {
            return Err(format!("{s:?} is too large"));
        }
        let whole: i128 = whole.parse().map_err(|_| format!("{s:?} is too large"))?;
        let fraction: i128 = format!("{fraction:0<4}").parse().unwrap_or(0);
        Ok(Amount::from_e4(whole * 10_000 + fraction))
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A product's list price: `amount` for one seat held or not for 30 days (2,592,000 seconds;
/// not a calendar month), in `currency` (an ISO 4217 code such as `EUR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatPrice {
    /// A non-negative decimal string with at most four places, e.g. "12.50".
    #[schema(value_type = String, example = "12.50", pattern = r"^[0-9]+(\.[0-9]{1,4})?$")]
    pub amount: Amount,
    /// ISO 4217 code: three upper-case letters.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}
