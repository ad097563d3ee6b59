//! Request and response bodies of the native API that are not ledger types themselves.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{product_ref, user_ref};
use allot_ledger::*;

/// An integer id, or a name (`owner/name` for products; login or UUID for users).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Key {
    Id(i64),
    Name(String),
}

impl Key {
    pub fn user(&self) -> UserRef {
        match self {
            Key::Id(id) => UserRef::Id(*id),
            Key::Name(text) => user_ref(text),
        }
    }
    pub fn product(&self) -> Result<ProductRef, ApiError> {
        match self {
            Key::Id(id) => Ok(ProductRef::Id(*id)),
            Key::Name(text) => product_ref(text),
        }
    }
    pub fn company(&self) -> CompanyRef {
        match self {
            Key::Id(id) => CompanyRef::Id(*id),
            Key::Name(text) => match Uuid::parse_str(text) {
                Ok(uuid) => CompanyRef::Uuid(uuid),
                Err(_) => CompanyRef::Name(text.clone()),
            },
        }
    }
}

/// The document's shape of a product [`Key`]: an integer id, or `owner/name` (the server
/// answers 422 for a name without its owner).
fn product_key_schema() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(PRODUCT_NAME_PATTERN)),
        )
}

/// `owner/name`, or an integer id, as a string (path and query parameters, product keys).
pub const PRODUCT_NAME_PATTERN: &str = r"^(-?[0-9]+|[^/]+/.+)$";

fn product_keys_schema() -> utoipa::openapi::schema::ArrayBuilder {
    utoipa::openapi::schema::ArrayBuilder::new().items(product_key_schema())
}

fn nullable_product_key_schema() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    product_key_schema().item(ObjectBuilder::new().schema_type(Type::Null))
}

/// The roles a tenant's login may have (operators are server-wide: `allot operator`).
fn tenant_role_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["admin", "reader", "user"]))
}

/// One page of a list, and the cursor for the next (absent on the last page).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

/// Paging parameters shared by every list: `after` is the `next` of the previous page.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub after: Option<i64>,
    /// Page size [default: 100]; clamped to 1..=1000.
    pub limit: Option<i64>,
}

impl PageQuery {
    pub fn limit(&self) -> i64 {
        allot_ledger::rules::page_limit(self.limit)
    }
}

impl<T> Page<T> {
    /// Pages a list that is read whole (small catalogs: products, companies, tenants), ordered
    /// by `key`.
    pub fn slice(mut items: Vec<T>, q: &PageQuery, key: impl Fn(&T) -> i64) -> Self {
        items.sort_by_key(|i| key(i));
        let after = q.after.unwrap_or(i64::MIN);
        let limit = q.limit();
        let items: Vec<T> = items
            .into_iter()
            .filter(|i| key(i) > after)
            .take(limit as usize)
            .collect();
        Page::of(items, limit, key)
    }

    /// `cursor` gives an item's position; a full page means there may be more.
    pub fn of(items: Vec<T>, limit: i64, cursor: impl Fn(&T) -> i64) -> Self {
        let next = if items.len() as i64 >= limit {
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub tenant: String,
    pub login: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// Shown once: only its hash is stored.
    pub token: String,
    pub id: Uuid,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    pub role: Role,
    /// For the `user` role: the user the token acts as.
    pub user: Option<Key>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub label: String,
    /// Lifetime in hours [default: 720].
    pub ttl_hours: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLoginRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub login: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[schema(schema_with = tenant_role_schema)]
    pub role: Role,
    pub user: Option<Key>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub admin_login: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub admin_password: String,
}

fn default_kind() -> ProductKind {
    ProductKind::User
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub owner: String,
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub description: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub tooltip: String,
    #[serde(default = "default_kind")]
    pub kind: ProductKind,
    #[serde(default)]
    pub unrestricted: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub sort_order: i64,
    #[serde(default)]
    pub extra_flags: i64,
    #[schema(schema_with = product_keys_schema)]
    #[serde(default)]
    pub plan_members: Vec<Key>,
    #[schema(schema_with = nullable_product_key_schema)]
    pub prerequisite: Option<Key>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub trial: bool,
    #[schema(minimum = 0, maximum = 100_000)]
    #[serde(default)]
    pub seats: i64,
    /// The list price of one seat for 30 days (`{"amount": "12.50", "currency": "EUR"}`).
    #[serde(default)]
    pub seat_price_per_30_days: Option<SeatPrice>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchRequest {
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub description: Option<String>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub tooltip: Option<String>,
    pub unrestricted: Option<bool>,
    pub hidden: Option<bool>,
    pub sort_order: Option<i64>,
    pub extra_flags: Option<i64>,
    #[schema(schema_with = product_keys_schema)]
    pub plan_members: Option<Vec<Key>>,
    /// `null` removes the prerequisite; absent leaves it.
    #[schema(schema_with = nullable_product_key_schema)]
    #[serde(default, deserialize_with = "double_option")]
    pub prerequisite: Option<Option<Key>>,
    #[serde(default, deserialize_with = "double_option_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub trial: Option<bool>,
    /// The list price of one seat for 30 days (`{"amount": "12.50", "currency": "EUR"}`);
    /// `null` removes it, absent leaves it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub seat_price_per_30_days: Option<Option<SeatPrice>>,
}

/// Absent -> None, null -> Some(None), value -> Some(Some(v)).
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn double_option_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(with = "time::serde::rfc3339::option")] Option<OffsetDateTime>);
    Wrap::deserialize(d).map(|w| Some(w.0))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSeatsRequest {
    #[schema(minimum = 1, maximum = 100_000)]
    pub count: i64,
    #[serde(default)]
    pub trial: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub transaction_id: Option<String>,
    /// A company whose own pool the seats belong to (tenant-wide when absent).
    pub company: Option<Key>,
}

/// A product's idle-seat policy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HarvestPolicyRequest {
    /// A held seat unused this many days is idle.
    #[schema(minimum = 1, maximum = 3650)]
    pub idle_days: i64,
    /// `release` frees idle seats; `report` only lists them.
    pub action: HarvestAction,
}

/// Free seats to remove from a product's pool.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveSeatsRequest {
    /// How many free seats to remove (all or none).
    #[schema(minimum = 1, maximum = 100_000)]
    pub count: i64,
    /// A company whose own pool loses them (the tenant-wide pool when absent).
    pub company: Option<Key>,
}

/// A product with its live counts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductWithStatus {
    #[serde(flatten)]
    pub product: Product,
    pub status: PoolStatus,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// The integer id (SuperOffice AssociateId) to use; allocated when absent.
    #[schema(minimum = 1)]
    pub id: Option<i64>,
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub login: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub first_name: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub last_name: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub email: String,
    pub company: Option<Key>,
    pub license_mode: Option<LicenseMode>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub user_type: Option<String>,
    /// Also create a password login for the user (role `user`).
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub login: Option<String>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub first_name: Option<String>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub last_name: Option<String>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub email: Option<String>,
    /// `null` takes the user out of its company.
    #[serde(default, deserialize_with = "double_option")]
    pub company: Option<Option<Key>>,
    pub license_mode: Option<LicenseMode>,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub user_type: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRequest {
    #[schema(schema_with = product_key_schema)]
    pub product: Key,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatUserRequest {
    pub user: Option<Key>,
}

/// A grant names the user the seat goes to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub user: Key,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub hardware_id: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub computer_name: String,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub operating_system: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompanyRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    pub pool_mode: PoolMode,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyPatchRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    pub pool_mode: Option<PoolMode>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    /// `null` removes the quota.
    pub quota: Option<i64>,
}

fn default_lease() -> i64 {
    300
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogOnRequest {
    pub user: Key,
    pub client: ClientKind,
    #[schema(
        max_length = 400,
        pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default)]
    pub device: String,
    /// A floating product to hold a seat of while the session lives.
    #[schema(schema_with = nullable_product_key_schema)]
    pub product: Option<Key>,
    #[schema(minimum = 1, maximum = 604_800)]
    #[serde(default = "default_lease")]
    pub lease_seconds: i64,
}

/// A session just opened or renewed: the session's own fields at the top level, with the lease's
/// secret, its expiry and the floating seat held.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionLease {
    #[serde(flatten)]
    pub session: Session,
    /// The fencing token, presented on every heartbeat. Shown only here; stored as a hash.
    pub lease_token: String,
    /// When the lease lapses unless renewed (the same instant as `lease_expires_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The floating seat the session holds, if its product is floating.
    pub seat: Option<Uuid>,
}

impl From<Lease> for SessionLease {
    fn from(lease: Lease) -> Self {
        SessionLease {
            expires_at: lease.session.lease_expires_at,
            session: lease.session,
            lease_token: lease.lease_token,
            seat: lease.seat,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub lease_token: String,
    #[schema(minimum = 1, maximum = 604_800)]
    #[serde(default = "default_lease")]
    pub lease_seconds: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogOffRequest {
    pub users: Vec<Key>,
    pub client: Option<ClientKind>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Changed {
    /// How many things changed (0: the outcome already held).
    pub changed: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Invariants {
    pub violations: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatchRequest {
    #[schema(
        min_length = 1,
        max_length = 400,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
}

/// A member to add: integer id, login or UUID.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberRequest {
    pub user: Key,
}

/// The tenant's directory settings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettings {
    /// Disabling a user keeps its seats (otherwise they are released).
    pub disabled_keep_seats: bool,
}
