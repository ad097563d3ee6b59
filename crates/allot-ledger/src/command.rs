//! Commands: the only way ledger state changes. Each runs inside a store transaction together
//! with the audit record it writes; a batch of commands shares one transaction but each gets
//! its own outcome.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::*;

/// Names a user by any of its identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRef {
    Id(UserId),
    Uuid(Uuid),
    Login(String),
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Id(id) => write!(f, "#{id}"),
            UserRef::Uuid(u) => write!(f, "{u}"),
            UserRef::Login(l) => write!(f, "{l:?}"),
        }
    }
}

/// Names a product by id or by owner and module name (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductRef {
    Id(ProductId),
    Name { owner: String, name: String },
}

impl ProductRef {
    pub fn named(owner: &str, name: &str) -> Self {
        ProductRef::Name {
            owner: owner.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ProductRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProductRef::Id(id) => write!(f, "#{id}"),
            ProductRef::Name { owner, name } => write!(f, "{owner}/{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompanyRef {
    Id(CompanyId),
    Uuid(Uuid),
    Name(String),
}

impl std::fmt::Display for CompanyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompanyRef::Id(id) => write!(f, "#{id}"),
            CompanyRef::Uuid(u) => write!(f, "{u}"),
            CompanyRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// Names a group by id, UUID or name (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRef {
    Id(GroupId),
    Uuid(Uuid),
    Name(String),
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupRef::Id(id) => write!(f, "#{id}"),
            GroupRef::Uuid(u) => write!(f, "{u}"),
            GroupRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProduct {
    pub owner: String,
    pub name: String,
    pub description: String,
    pub tooltip: String,
    pub kind: ProductKind,
    pub unrestricted: bool,
    pub hidden: bool,
    pub sort_order: i64,
    pub extra_flags: i64,
    /// For a user plan: the products it brings along.
    pub plan_members: Vec<ProductRef>,
    pub prerequisite: Option<ProductRef>,
    pub expires_at: Option<OffsetDateTime>,
    pub trial: bool,
    /// Seats bought with the product (tenant-wide pool).
    pub seats: i64,
    /// The list price of a seat for 30 days.
    #[serde(default)]
    pub seat_price_per_30_days: Option<SeatPrice>,
}

impl NewProduct {
    /// A restricted user-kind product with `seats` seats and defaults for the rest.
    pub fn user(owner: &str, name: &str, seats: i64) -> Self {
        NewProduct {
            owner: owner.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            tooltip: String::new(),
            kind: ProductKind::User,
            unrestricted: false,
            hidden: false,
            sort_order: 0,
            extra_flags: 0,
            plan_members: Vec::new(),
            prerequisite: None,
            expires_at: None,
            trial: false,
            seats,
            seat_price_per_30_days: None,
        }
    }
}

/// Fields to change on a product; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPatch {
    pub description: Option<String>,
    pub tooltip: Option<String>,
    pub unrestricted: Option<bool>,
    pub hidden: Option<bool>,
    pub sort_order: Option<i64>,
    pub extra_flags: Option<i64>,
    pub plan_members: Option<Vec<ProductRef>>,
    /// `Some(None)` removes the prerequisite.
    pub prerequisite: Option<Option<ProductRef>>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub trial: Option<bool>,
    /// `Some(None)` removes the seat price.
    #[serde(default)]
    pub seat_price_per_30_days: Option<Option<SeatPrice>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSeats {
    pub product: ProductRef,
    pub count: i64,
    pub trial: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub transaction_id: Option<String>,
    /// `None` = the tenant-wide pool.
    pub pool_company: Option<CompanyRef>,
}

impl NewSeats {
    pub fn plain(product: ProductRef, count: i64) -> Self {
        NewSeats {
            product,
            count,
            trial: false,
            expires_at: None,
            transaction_id: None,
            pool_company: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// The integer id to use (SuperOffice AssociateId); allocated when `None`.
    pub id: Option<UserId>,
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub company: Option<CompanyRef>,
    pub license_mode: LicenseMode,
    pub user_type: String,
    /// The identity provider's id for the user (SCIM `externalId`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// The name to show (SCIM `displayName`).
    #[serde(default)]
    pub display_name: Option<String>,
}

impl NewUser {
    pub fn named(login: &str) -> Self {
        NewUser {
            id: None,
            login: login.to_owned(),
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            company: None,
            license_mode: LicenseMode::Manual,
            user_type: "internal".to_owned(),
            external_id: None,
            display_name: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    pub login: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// `Some(None)` takes the user out of any company.
    pub company: Option<Option<CompanyRef>>,
    pub license_mode: Option<LicenseMode>,
    pub user_type: Option<String>,
    /// `Some(None)` clears it.
    #[serde(default)]
    pub external_id: Option<Option<String>>,
    /// `Some(None)` clears it.
    #[serde(default)]
    pub display_name: Option<Option<String>>,
}

/// A user as a directory import states it: created when no user has the login, else brought
/// to these values (`None` leaves a field as it is); the company is made if missing; each
/// license is assigned if not held yet (licenses not listed are left alone); the user joins
/// each group listed, made if missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpsert {
    pub login: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// The company's name.
    pub company: Option<String>,
    pub licenses: Vec<ProductRef>,
    /// Groups (by name) the user is made a member of, each made if missing (groups not listed
    /// are left alone).
    #[serde(default)]
    pub groups: Vec<String>,
}

// Commands carry password and token hashes: keep them out of logs (see `Command::redacted`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    CreateCompany {
        name: String,
        pool_mode: PoolMode,
    },
    EditCompany {
        company: CompanyRef,
        name: Option<String>,
        pool_mode: Option<PoolMode>,
    },
    /// Deletes a company (MSP360 `DELETE /api/Companies/{id}`): its members leave it, its quotas
    /// and the charges against them go. Refused while seats are in the company's own pool.
    DeleteCompany {
        company: CompanyRef,
    },
    /// Sets (or with `None` removes) how many tenant-wide seats of a product a company-pool
    /// company's users may hold.
    SetCompanyQuota {
        company: CompanyRef,
        product: ProductRef,
        quota: Option<i64>,
    },
    CreateUser(NewUser),
    /// Creates or updates a user matched by login, with its company and direct licenses; run
    /// twice, the second run changes nothing (changed 0).
    UpsertUser(UserUpsert),
    EditUser {
        user: UserRef,
        patch: UserPatch,
    },
    CreateProduct(NewProduct),
    EditProduct {
        product: ProductRef,
        patch: ProductPatch,
    },
    AddSeats(NewSeats),
    /// Removes `count` free seats of a product from a pool (the tenant-wide one unless
    /// `pool_company`): all of them or none, never a held seat.
    RemoveSeats {
        product: ProductRef,
        count: i64,
        pool_company: Option<CompanyRef>,
    },
    /// Sets (or with `None` removes) a product's idle-seat policy.
    SetHarvestPolicy {
        product: ProductRef,
        policy: Option<HarvestPolicy>,
    },
    /// Exempts a user's seats from the harvest, or ends the exemption.
    SetHarvestExempt {
        user: UserRef,
        exempt: bool,
    },
    /// Exempts the seats of a group's members from the harvest, or ends the exemption.
    SetHarvestExemptGroup {
        group: GroupRef,
        exempt: bool,
    },
    /// Releases one seat the harvest found idle, if it still is: its product's policy still
    /// says release past its idle days, its holder is not exempt and has used it (or held a
    /// live session) no later than that. A use racing the harvest wins (changed 0).
    HarvestSeat {
        seat: Uuid,
    },
    /// Records a use of the user's seats (all, or one), e.g. a license file fetched. Not
    /// audited (it changes no holding); writes only seats whose last use is over an hour old.
    RecordUse {
        user: UserRef,
        seat: Option<Uuid>,
    },
    /// Removes an owner's whole license from the store (SuperOffice RemoveLicenseFromDB): every
    /// holder loses the owner's products, then their seats, quotas and the products go.
    RemoveOwner {
        owner: String,
    },
    /// Gives the user a seat of a user-kind product (and a plan's members along with a plan).
    Assign {
        user: UserRef,
        product: ProductRef,
    },
    /// Takes a product away; dependents go with it, plan members stay while something still
    /// grants them.
    Unassign {
        user: UserRef,
        product: ProductRef,
    },
    RemoveAllLicenses {
        user: UserRef,
    },
    Retire {
        user: UserRef,
    },
    Unretire {
        user: UserRef,
    },
    /// Deletes a user (MSP360 `DELETE /api/Users/{id}`): retires it (its sessions end, its
    /// seats and grants go) and frees its login name, keeping the row for the audit trail.
    DeleteUser {
        user: UserRef,
    },
    /// Disables a user (SCIM `active: false`, MSP360 `Enabled: false`): its sessions end, every
    /// credential acting as it is revoked, its logins are refused, and its seats are released
    /// unless the tenant keeps disabled users' seats. The user stays.
    DisableUser {
        user: UserRef,
    },
    /// Enables a disabled user again. No revoked credential comes back; its group assignments
    /// queue again for seats.
    EnableUser {
        user: UserRef,
    },
    /// Whether disabling a user keeps its seats (the tenant's setting; default: released).
    SetDisabledKeepSeats {
        keep: bool,
    },
    /// Creates a group (SCIM's groups, an admin's teams); optionally with a chosen UUID.
    CreateGroup {
        name: String,
        uuid: Option<Uuid>,
        /// The identity provider's id for the group (SCIM `externalId`).
        #[serde(default)]
        external_id: Option<String>,
    },
    RenameGroup {
        group: GroupRef,
        name: String,
    },
    /// Renames a group and/or sets its external id (`Some(None)` clears it); `None` leaves a
    /// field as it is.
    EditGroup {
        group: GroupRef,
        name: Option<String>,
        external_id: Option<Option<String>>,
    },
    /// Makes the group's members exactly these users (SCIM's replace of `members`), decided in
    /// the transaction: the others leave, the missing ones join.
    SetGroupMembers {
        group: GroupRef,
        users: Vec<UserRef>,
    },
    /// Deletes a group: its members lose the seats it was the last reason for.
    DeleteGroup {
        group: GroupRef,
    },
    /// Adds a member: it gets a seat of every license of the group, or waits for one.
    AddGroupMember {
        group: GroupRef,
        user: UserRef,
    },
    /// Removes a member: it loses the seats this group was the last reason for.
    RemoveGroupMember {
        group: GroupRef,
        user: UserRef,
    },
    /// Gives a (user-kind, not plan) product to a group: every member holds a seat of it while
    /// a member, or waits for one.
    AddGroupLicense {
        group: GroupRef,
        product: ProductRef,
    },
    RemoveGroupLicense {
        group: GroupRef,
        product: ProductRef,
    },
    /// Gives one particular seat to a user (MSP360 Grant).
    GrantSeat {
        seat: Uuid,
        user: UserRef,
    },
    /// Frees a seat entirely (MSP360 Release). With `user`, the seat must be held by that user.
    ReleaseSeat {
        seat: Uuid,
        user: Option<UserRef>,
    },
    /// Clears a seat's activation; the holder goes too for users who take seats automatically
    /// (MSP360 Revoke).
    RevokeSeat {
        seat: Uuid,
        user: Option<UserRef>,
    },
    /// Binds a held seat to a computer. With `user`, the seat must be held by that user, checked
    /// after the seat's holder is locked (a holder acting for itself).
    ActivateSeat {
        seat: Uuid,
        activation: Activation,
        user: Option<UserRef>,
    },
    /// Records a computer and binds it to a user (MSP360 computer authorization).
    RegisterComputer {
        hardware_id: String,
        name: String,
        operating_system: String,
        user: Option<UserRef>,
    },
    LogOn {
        user: UserRef,
        client: ClientKind,
        device: String,
        /// A floating product to take a seat of for the session's lifetime.
        product: Option<ProductRef>,
        lease_seconds: i64,
    },
    Heartbeat {
        session: Uuid,
        lease_token: String,
        lease_seconds: i64,
    },
    /// Ends every live session of the users (of one client kind, or all).
    LogOff {
        users: Vec<UserRef>,
        client: Option<ClientKind>,
        reason: EndReason,
    },
    EndSession {
        session: Uuid,
        lease_token: Option<String>,
        reason: EndReason,
    },
    /// Ends every session whose lease has lapsed, freeing their floating seats.
    ExpireSessions,
    /// Creates a password login. The caller hashes the password (argon2id); the store never
    /// sees it in clear.
    CreateLogin {
        login: String,
        password_hash: String,
        role: Role,
        user: Option<UserRef>,
    },
    /// Replaces a login's password hash and revokes every token issued to it.
    SetPassword {
        login: String,
        password_hash: String,
    },
    /// Records an API token by its SHA-256; the token itself is shown to its holder once.
    IssueToken {
        token_hash: String,
        role: Role,
        login: String,
        user: Option<UserId>,
        label: String,
        expires_at: OffsetDateTime,
    },
    RevokeToken {
        id: Uuid,
    },
    /// Adds a license-signing key; the newest signs new files, older ones still verify. Made by
    /// [`crate::Ledger::rotate_signing_key`], which generates the key and seals its private half.
    /// With `first_only`, nothing happens when the tenant already has a key.
    AddSigningKey {
        kid: String,
        public_key: String,
        sealed_private_key: String,
        first_only: bool,
    },
    /// How long license files of the tenant are valid (`exp - iat`).
    SetLicenseValidity {
        seconds: i64,
    },
    /// Registers a webhook endpoint. Made by [`crate::Ledger::create_webhook`], which generates
    /// the signing secret and seals it.
    CreateWebhook {
        id: String,
        url: String,
        description: String,
        events: Vec<String>,
        sealed_secret: String,
    },
    EditWebhook {
        id: String,
        patch: crate::webhooks::WebhookPatch,
    },
    /// Removes an endpoint with its deliveries.
    DeleteWebhook {
        id: String,
    },
    /// Queues a `webhook.test` event for one endpoint, with this message id.
    TestWebhook {
        id: String,
        event_id: String,
    },
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Company(Company),
    User(User),
    Product(Product),
    Seats {
        seats: Vec<Seat>,
    },
    Seat(Seat),
    Computer(Computer),
    Lease(Lease),
    Login(LoginInfo),
    Token(TokenInfo),
    Group(Group),
    Webhook(crate::webhooks::WebhookEndpoint),
    /// The command changed `changed` things (seats, sessions, flags); 0 means the outcome
    /// already held and nothing was written.
    Changed {
        changed: u64,
    },
}

impl Outcome {
    pub fn changed(&self) -> u64 {
        match self {
            Outcome::Changed { changed } => *changed,
            _ => 1,
        }
    }
}

/// Who is acting and on whose behalf: every audit record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub tenant: TenantId,
    pub actor: String,
    pub request_id: Option<String>,
}

impl Context {
    pub fn new(tenant: TenantId, actor: impl Into<String>) -> Self {
        Context {
            tenant,
            actor: actor.into(),
            request_id: None,
        }
    }
}

impl Command {
    /// Can this command end or change a credential (revoke a token, change a password, retire,
    /// disable or delete a user)? Only the seat and session operations are known not to; every
    /// other command, including ones added later, counts as one, so the token cache
    /// ([`crate::Ledger::token_state`]) forgets the tenant's tokens after it commits.
    pub fn may_change_credentials(&self) -> bool {
        !matches!(
            self,
            Command::Assign { .. }
                | Command::Unassign { .. }
                | Command::GrantSeat { .. }
                | Command::ReleaseSeat { .. }
                | Command::RevokeSeat { .. }
                | Command::ActivateSeat { .. }
                | Command::RegisterComputer { .. }
                | Command::RecordUse { .. }
                | Command::LogOn { .. }
                | Command::Heartbeat { .. }
                | Command::EndSession { .. }
                | Command::LogOff { .. }
                | Command::ExpireSessions
        )
    }

    /// A stable name for the command (metrics label, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateCompany { .. } => "create_company",
            Command::EditCompany { .. } => "edit_company",
            Command::DeleteCompany { .. } => "delete_company",
            Command::SetCompanyQuota { .. } => "set_company_quota",
            Command::CreateUser(_) => "create_user",
            Command::UpsertUser(_) => "upsert_user",
            Command::EditUser { .. } => "edit_user",
            Command::CreateProduct(_) => "create_product",
            Command::EditProduct { .. } => "edit_product",
            Command::RemoveOwner { .. } => "remove_owner",
            Command::AddSeats(_) => "add_seats",
            Command::RemoveSeats { .. } => "remove_seats",
            Command::SetHarvestPolicy { .. } => "set_harvest_policy",
            Command::SetHarvestExempt { .. } => "set_harvest_exempt",
            Command::HarvestSeat { .. } => "harvest_seat",
            Command::RecordUse { .. } => "record_use",
            Command::Assign { .. } => "assign",
            Command::Unassign { .. } => "unassign",
            Command::RemoveAllLicenses { .. } => "remove_all_licenses",
            Command::Retire { .. } => "retire",
            Command::Unretire { .. } => "unretire",
            Command::DeleteUser { .. } => "delete_user",
            Command::DisableUser { .. } => "disable_user",
            Command::EnableUser { .. } => "enable_user",
            Command::SetDisabledKeepSeats { .. } => "set_disabled_keep_seats",
            Command::CreateGroup { .. } => "create_group",
            Command::RenameGroup { .. } => "rename_group",
            Command::EditGroup { .. } => "edit_group",
            Command::SetGroupMembers { .. } => "set_group_members",
            Command::SetHarvestExemptGroup { .. } => "set_harvest_exempt_group",
            Command::DeleteGroup { .. } => "delete_group",
            Command::AddGroupMember { .. } => "add_group_member",
            Command::RemoveGroupMember { .. } => "remove_group_member",
            Command::AddGroupLicense { .. } => "add_group_license",
            Command::RemoveGroupLicense { .. } => "remove_group_license",
            Command::GrantSeat { .. } => "grant",
            Command::ReleaseSeat { .. } => "release",
            Command::RevokeSeat { .. } => "revoke",
            Command::ActivateSeat { .. } => "activate",
            Command::RegisterComputer { .. } => "register_computer",
            Command::LogOn { .. } => "log_on",
            Command::Heartbeat { .. } => "heartbeat",
            Command::LogOff { .. } => "log_off",
            Command::EndSession { .. } => "end_session",
            Command::ExpireSessions => "expire_sessions",
            Command::CreateLogin { .. } => "create_login",
            Command::SetPassword { .. } => "set_password",
            Command::IssueToken { .. } => "issue_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::AddSigningKey { .. } => "add_signing_key",
            Command::SetLicenseValidity { .. } => "set_license_validity",
            Command::CreateWebhook { .. } => "create_webhook",
            Command::EditWebhook { .. } => "edit_webhook",
            Command::DeleteWebhook { .. } => "delete_webhook",
            Command::TestWebhook { .. } => "test_webhook",
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::CreateLogin {
                login, role, user, ..
            } => f
                .debug_struct("CreateLogin")
                .field("login", login)
                .field("role", role)
                .field("user", user)
                .field("password_hash", &"<redacted>")
                .finish(),
            Command::SetPassword { login, .. } => f
                .debug_struct("SetPassword")
                .field("login", login)
                .field("password_hash", &"<redacted>")
                .finish(),
            Command::IssueToken {
                role,
                login,
                user,
                label,
                expires_at,
                ..
            } => f
                .debug_struct("IssueToken")
                .field("role", role)
                .field("login", login)
                .field("user", user)
                .field("label", label)
                .field("expires_at", expires_at)
                .field("token_hash", &"<redacted>")
                .finish(),
            Command::Heartbeat {
                session,
                lease_seconds,
                ..
            } => f
                .debug_struct("Heartbeat")
                .field("session", session)
                .field("lease_seconds", lease_seconds)
                .field("lease_token", &"<redacted>")
                .finish(),
            Command::EndSession {
                session,
                reason,
                lease_token,
            } => f
                .debug_struct("EndSession")
                .field("session", session)
                .field("reason", reason)
                .field("lease_token", &lease_token.as_ref().map(|_| "<redacted>"))
                .finish(),
            Command::AddSigningKey {
                kid, first_only, ..
            } => f
                .debug_struct("AddSigningKey")
                .field("kid", kid)
                .field("first_only", first_only)
                .field("sealed_private_key", &"<redacted>")
                .finish(),
            Command::CreateWebhook {
                id,
                url,
                description,
                events,
                ..
            } => f
                .debug_struct("CreateWebhook")
                .field("id", id)
                .field("url", url)
                .field("description", description)
                .field("events", events)
                .field("sealed_secret", &"<redacted>")
                .finish(),
            other => {
                // Everything else holds no secret: show it as serde sees it.
                let json = serde_json::to_string(other).map_err(|_| std::fmt::Error)?;
                f.write_str(&json)
            }
        }
    }
}
