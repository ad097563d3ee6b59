//! The claims of an offline license file: what a user (or one seat) is licensed for right now,
//! for a client that checks it later with only the tenant's public keys. The rule of what goes in
//! lives here; [`crate::Ledger::user_license`] and [`crate::Ledger::seat_license`] gather the
//! state and sign.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::*;

/// Default validity of a license file (`exp - iat`), per tenant: 7 days.
pub const DEFAULT_VALIDITY_SECONDS: i64 = 7 * 24 * 3600;
/// Bounds on a tenant's chosen validity: one minute to one year.
pub const MIN_VALIDITY_SECONDS: i64 = 60;
pub const MAX_VALIDITY_SECONDS: i64 = 366 * 24 * 3600;

/// A license file's payload (JWT claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseClaims {
    /// `allot:<tenant name>`.
    pub iss: String,
    /// The user's UUID (or the seat's, for a seat license without a holder).
    pub sub: String,
    /// Unique per file.
    pub jti: Uuid,
    /// Issued at, not before, expires: seconds since the epoch.
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tenant: LicenseTenant,
    pub user: Option<LicenseUser>,
    /// Products held, each with its prerequisite (transitively) held too.
    pub products: Vec<LicenseProduct>,
    /// The seats behind them, each with the device it is activated on.
    pub seats: Vec<LicenseSeat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseTenant {
    pub id: TenantId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseUser {
    pub id: UserId,
    pub uuid: Uuid,
    pub login: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseProduct {
    pub id: ProductId,
    pub owner: String,
    pub name: String,
    pub kind: ProductKind,
    pub trial: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The seats of it in this file (none for a site product).
    pub seats: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseSeat {
    pub id: Uuid,
    pub number: i64,
    pub product: ProductId,
    pub trial: bool,
    /// The earlier of the seat's and its product's expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub device: Option<Activation>,
}

/// The products a user may use offline: those `assigned` in the user's view whose prerequisite
/// chain is assigned too (a prerequisite lost after assignment takes its dependants out of the
/// file), in the view's order.
pub fn licensed_products(view: &[UserProductView]) -> Vec<&Product> {
    let assigned = |id: ProductId| view.iter().find(|v| v.product.id == id && v.assigned);
    view.iter()
        .filter(|v| v.assigned)
        .filter(|v| {
            // Walk the chain; a cycle (which the ledger refuses anyway) counts as unmet.
            let mut next = v.product.prerequisite;
            let mut steps = 0;
            while let Some(id) = next {
                steps += 1;
                match assigned(id) {
                    Some(p) if steps <= view.len() => next = p.product.prerequisite,
                    _ => return false,
                }
            }
            true
        })
        .map(|v| &v.product)
        .collect()
}

/// Builds the claims from the user's licensed products and the seats behind them; `only_seat`
/// narrows a file to one seat (and its product). Expired seats are left out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn claims(
    tenant: &Tenant,
    user: Option<&User>,
    subject: String,
    products: &[&Product],
    seats: &[Seat],
    now: OffsetDateTime,
    validity_seconds: i64,
) -> LicenseClaims {
    let product_of = |id: ProductId| products.iter().copied().find(|p| p.id == id);
    let seats: Vec<LicenseSeat> = seats
        .iter()
        .filter_map(|s| {
            let product = product_of(s.product)?;
            let expires_at = s.effective_expiry(Some(product));
            if expires_at.is_some_and(|e| e <= now) {
                return None;
            }
            Some(LicenseSeat {
                id: s.id,
                number: s.number,
                product: s.product,
                trial: s.is_trial(Some(product)),
                expires_at,
                device: s.activation.clone(),
            })
        })
        .collect();
    let products = products
        .iter()
        .map(|p| LicenseProduct {
            id: p.id,
            owner: p.owner.clone(),
            name: p.name.clone(),
            kind: p.kind,
            trial: p.trial,
            expires_at: p.expires_at,
            seats: seats
                .iter()
                .filter(|s| s.product == p.id)
                .map(|s| s.id)
                .collect(),
        })
        .collect();
    let iat = now.unix_timestamp();
    LicenseClaims {
        iss: format!("allot:{}", tenant.name),
        sub: subject,
        jti: Uuid::new_v4(),
        iat,
        nbf: iat,
        exp: iat + validity_seconds,
        tenant: LicenseTenant {
            id: tenant.id,
            name: tenant.name.clone(),
        },
        user: user.map(|u| LicenseUser {
            id: u.id,
            uuid: u.uuid,
            login: u.login.clone(),
        }),
        products,
        seats,
    }
}
