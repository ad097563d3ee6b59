//! NetServer carriers built from ledger data, in each version's field order.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::Version;
use super::wire::Wire;
use allot_ledger::{PoolStatus, Product, ProductId, ProductKind, User, UserProductView};

/// Looks up product names for prerequisites and plan members.
pub struct Catalog<'a> {
    by_id: HashMap<ProductId, &'a Product>,
}

impl<'a> Catalog<'a> {
    pub fn new(products: impl IntoIterator<Item = &'a Product>) -> Self {
        Catalog {
            by_id: products.into_iter().map(|p| (p.id, p)).collect(),
        }
    }

    fn name(&self, id: Option<ProductId>) -> String {
        id.and_then(|id| self.by_id.get(&id))
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    /// A user plan's `ExtraInfo`: `set=` and the modules it brings along.
    fn extra_info(&self, product: &Product) -> String {
        if !product.is_user_plan() {
            return String::new();
        }
        let names: Vec<String> = product
            .plan_members
            .iter()
            .map(|id| self.name(Some(*id)))
            .collect();
        format!("set={}", names.join(","))
    }
}

fn table_right() -> Wire {
    Wire::Null
}

fn field_properties() -> Wire {
    Wire::Map(Vec::new())
}

/// NetServer dates: ISO 8601 with seven fractional digits, no offset (UTC).
pub fn date(at: OffsetDateTime) -> Wire {
    let at = at.to_offset(time::UtcOffset::UTC);
    Wire::Str(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 100
    ))
}

/// Where NetServer would show "no expiry": its maximum date.
fn never() -> Wire {
    Wire::str("9999-12-31T23:59:59.9999999")
}

fn expiry(at: Option<OffsetDateTime>) -> Wire {
    at.map(date).unwrap_or_else(never)
}

/// `ModuleLicenseLink`: one module as one associate sees it.
pub fn module_license_link(view: &UserProductView, catalog: &Catalog, version: Version) -> Wire {
    let p = &view.product;
    let s = &view.status;
    let mut fields = vec![
        ("Unrestricted", Wire::Bool(p.unrestricted)),
        ("Total", Wire::Int(s.total)),
        ("Tooltip", Wire::str(&p.tooltip)),
        ("CanAssign", Wire::Bool(view.can_assign)),
        ("Free", Wire::Int(s.free)),
        ("InUse", Wire::Int(s.in_use)),
    ];
    if version.has_is_hidden() {
        fields.push(("IsHidden", Wire::Bool(p.hidden)));
    }
    fields.extend([
        ("Assigned", Wire::Bool(view.assigned)),
        ("ModuleLicenseId", Wire::Int(p.id)),
        ("Name", Wire::str(&p.name)),
        ("Description", Wire::str(&p.description)),
        (
            "PrerequisiteModuleName",
            Wire::Str(catalog.name(p.prerequisite)),
        ),
        ("SortOrder", Wire::Int(p.sort_order)),
    ]);
    if version.has_extra_flags() {
        fields.push(("ExtraFlags", Wire::Int(p.extra_flags)));
    }
    if version == Version::REST {
        fields.push(("TableRight", table_right()));
        fields.push(("FieldProperties", field_properties()));
    }
    Wire::Obj("ModuleLicenseLink", fields)
}

pub fn module_license_links(
    views: &[&UserProductView],
    catalog: &Catalog,
    version: Version,
) -> Wire {
    Wire::Arr(
        "ModuleLicenseLink",
        views
            .iter()
            .map(|v| module_license_link(v, catalog, version))
            .collect(),
    )
}

/// `LicenseOwner[]`: an associate's modules grouped by owner, restricted and unrestricted apart.
/// Site licenses need no assignment and are not listed.
pub fn license_owners(views: &[UserProductView], catalog: &Catalog, version: Version) -> Wire {
    let mut owners: Vec<&str> = Vec::new();
    for v in views {
        if !owners
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&v.product.owner))
        {
            owners.push(&v.product.owner);
        }
    }
    let items = owners
        .into_iter()
        .map(|owner| {
            let mine: Vec<&UserProductView> = views
                .iter()
                .filter(|v| v.product.owner.eq_ignore_ascii_case(owner))
                .filter(|v| v.product.kind != ProductKind::Site)
                .collect();
            let (unrestricted, restricted): (Vec<&UserProductView>, Vec<&UserProductView>) =
                mine.into_iter().partition(|v| v.product.unrestricted);
            let mut fields = vec![
                ("Name", Wire::str(owner)),
                ("Description", Wire::str(owner)),
                (
                    "RestrictedModuleLicenses",
                    module_license_links(&restricted, catalog, version),
                ),
                (
                    "UnrestrictedModuleLicenses",
                    module_license_links(&unrestricted, catalog, version),
                ),
            ];
            if version == Version::REST {
                fields.push(("TableRight", table_right()));
                fields.push(("FieldProperties", field_properties()));
            }
            Wire::Obj("LicenseOwner", fields)
        })
        .collect();
    Wire::Arr("LicenseOwner", items)
}

fn license_type(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Site => "SiteLicense",
        ProductKind::User | ProductKind::Floating => "UserLicense",
    }
}

/// `ModuleLicense`: one license line as stored.
pub fn module_license(product: &Product, status: &PoolStatus, catalog: &Catalog) -> Wire {
    Wire::Obj(
        "ModuleLicense",
        vec![
            ("OwnerName", Wire::str(&product.owner)),
            ("ModuleName", Wire::str(&product.name)),
            ("ModuleDescription", Wire::str(&product.description)),
            ("ModuleTooltip", Wire::str(&product.tooltip)),
            ("ModuleVersion", Wire::str("")),
            ("LicenseType", Wire::str(license_type(product.kind))),
            ("Unrestricted", Wire::Bool(product.unrestricted)),
            ("AllowedUserType", Wire::str("InternalAssociate")),
            // "This number is never 0, even when the Unrestricted flag is true."
            ("NumberOfLicenses", Wire::Int(status.total.max(1))),
            ("ExtraFlags", Wire::Int(product.extra_flags)),
            ("ExtraInfo", Wire::Str(catalog.extra_info(product))),
            ("SortOrder", Wire::Int(product.sort_order)),
            ("IsHidden", Wire::Bool(product.hidden)),
            (
                "PrerequisiteModuleName",
                Wire::Str(catalog.name(product.prerequisite)),
            ),
            ("Signature", Wire::str("")),
        ],
    )
}

/// `ExtendedLicenseInfo` for one owner: the stored license with live usage counters.
pub fn extended_license_info(
    tenant_name: &str,
    owner: &str,
    lines: &[(&Product, &PoolStatus)],
    catalog: &Catalog,
) -> Wire {
    let expires = lines.iter().filter_map(|(p, _)| p.expires_at).min();
    let modules: Vec<Wire> = lines
        .iter()
        .map(|(p, s)| module_license(p, s, catalog))
        .collect();
    let current = Wire::Obj(
        "LicenseInfo",
        vec![
            ("CompanyName", Wire::str(tenant_name)),
            ("SerialNr", Wire::str("")),
            ("OwnerName", Wire::str(owner)),
            ("OwnerDescription", Wire::str(owner)),
            ("NextCheckDate", expiry(expires)),
            ("MaintenanceDate", expiry(expires)),
            ("AdminWarningDate", expiry(expires)),
            ("ExpiryDate", expiry(expires)),
            ("GraceDate", expiry(expires)),
            ("ExtraFlags", Wire::Int(0)),
            ("LicenseUrl", Wire::str("")),
            ("LicenseVersion", Wire::str("")),
            ("DeploymentType", Wire::Int(0)),
            ("ProductType", Wire::str("")),
            ("ProductDescription", Wire::str("")),
            (
                "ModuleLicenses",
                Wire::Arr("ModuleLicense", modules.clone()),
            ),
            ("PublicKey", Wire::Null),
            ("Signature", Wire::str("")),
        ],
    );
    let extended = lines
        .iter()
        .zip(modules)
        .map(|((_, s), module)| {
            Wire::Obj(
                "ExtendedModuleLicense",
                vec![
                    ("New", Wire::Null),
                    ("Current", module),
                    ("NumberOfLicensesInUse", Wire::Int(s.in_use)),
                    ("NumberOfLicensesFree", Wire::Int(s.free)),
                    ("NumberOfLicensesAdded", Wire::Int(0)),
                    ("NumberOfLicensesNewTotal", Wire::Int(s.total)),
                    ("NumberOfLicensesNewFree", Wire::Int(s.free)),
                    ("NumberOfLicensesTotal", Wire::Int(s.total)),
                ],
            )
        })
        .collect();
    Wire::Obj(
        "ExtendedLicenseInfo",
        vec![
            ("Reason", Wire::str("")),
            ("CanBeActivated", Wire::Bool(false)),
            ("New", Wire::Null),
            ("Current", current),
            (
                "ExtendedModuleLicenses",
                Wire::Arr("ExtendedModuleLicense", extended),
            ),
            ("AccumulatedNextCheckDate", expiry(expires)),
        ],
    )
}

/// `LicenseResult`.
pub fn license_result(succeeded: bool, reason: &str) -> Wire {
    Wire::Obj(
        "LicenseResult",
        vec![
            ("Succeeded", Wire::Bool(succeeded)),
            ("Reason", Wire::str(reason)),
            ("TableRight", table_right()),
            ("FieldProperties", field_properties()),
        ],
    )
}

/// The modules an associate is granted (assigned seats and site licenses), as
/// `owner.module` names the way NetServer prints them.
pub fn granted_names(views: &[UserProductView]) -> Vec<String> {
    views
        .iter()
        .filter(|v| v.assigned)
        .map(|v| {
            format!(
                "{}.{}",
                v.product.owner.to_ascii_lowercase(),
                v.product.name
            )
        })
        .collect()
}

/// `UserAndInstallationLicenceStatus`.
pub fn user_and_installation_status(tenant_name: &str, views: &[UserProductView]) -> Wire {
    let expires = views.iter().filter_map(|v| v.product.expires_at).min();
    Wire::Obj(
        "UserAndInstallationLicenceStatus",
        vec![
            ("AdminWarningDate", expiry(expires)),
            ("ExpiryDate", expiry(expires)),
            ("GraceDate", expiry(expires)),
            ("CompanyName", Wire::str(tenant_name)),
            ("SerialNr", Wire::str("")),
            (
                "UserLicenses",
                Wire::Arr(
                    "string",
                    granted_names(views).into_iter().map(Wire::Str).collect(),
                ),
            ),
        ],
    )
}

fn full_name(user: &User) -> String {
    let name = format!("{} {}", user.first_name, user.last_name);
    let name = name.trim();
    if name.is_empty() {
        user.login.clone()
    } else {
        name.to_owned()
    }
}

/// `UserInfo` (GetUserInfo).
pub fn user_info(user: &User, views: &[UserProductView]) -> Wire {
    let granted = granted_names(views);
    Wire::Obj(
        "UserInfo",
        vec![
            ("Deleted", Wire::Bool(user.retired)),
            ("UserInfoId", Wire::Int(user.id)),
            ("UserName", Wire::str(&user.login)),
            ("PersonId", Wire::Int(user.id)),
            ("Rank", Wire::Int(0)),
            ("Tooltip", Wire::Str(full_name(user))),
            ("UserGroupId", Wire::Int(0)),
            ("EjUserId", Wire::Int(0)),
            ("UserType", Wire::str("InternalAssociate")),
            (
                "GrantedLicenses",
                Wire::Arr("string", granted.iter().cloned().map(Wire::Str).collect()),
            ),
            // A user can log on while not retired and holding at least one license.
            ("CanLogon", Wire::Bool(!user.retired && !granted.is_empty())),
            ("RoleName", Wire::str("")),
            ("RoleTooltip", Wire::str("")),
            ("UserGroupName", Wire::str("")),
            ("UserGroupTooltip", Wire::str("")),
            ("TableRight", table_right()),
            ("FieldProperties", field_properties()),
        ],
    )
}

/// `GrantedModuleLicense`: a module the principal may use.
fn granted_module_license(view: &UserProductView, catalog: &Catalog, rest: bool) -> Wire {
    let p = &view.product;
    let mut fields = vec![
        ("OwnerId", Wire::Int(0)),
        ("OwnerName", Wire::str(&p.owner)),
        ("OwnerDescription", Wire::str(&p.owner)),
        ("ModuleId", Wire::Int(p.id)),
        ("Name", Wire::str(&p.name)),
        ("Description", Wire::str(&p.description)),
        ("Version", Wire::str("")),
        ("LicenseType", Wire::str(license_type(p.kind))),
        ("ExtraFlags", Wire::Int(p.extra_flags)),
        ("SortOrder", Wire::Int(p.sort_order)),
        ("LicenseNumber", Wire::Int(0)),
        ("IsHidden", Wire::Bool(p.hidden)),
        ("IsUnrestricted", Wire::Bool(p.unrestricted)),
        ("ExpiryDate", expiry(p.expires_at)),
    ];
    if rest {
        fields.push(("ExtraInfo", Wire::Str(catalog.extra_info(p))));
        fields.push(("TableRight", table_right()));
        fields.push(("FieldProperties", field_properties()));
    }
    Wire::Obj("GrantedModuleLicense", fields)
}

/// `SoPrincipalCarrier` for a login; `user` is the ledger user it acts as, if any.
pub fn principal_carrier(
    login: &str,
    role: allot_ledger::Role,
    user: Option<&User>,
    views: &[UserProductView],
    catalog: &Catalog,
    rest: bool,
) -> Wire {
    let licenses: Vec<Wire> = views
        .iter()
        .filter(|v| v.assigned)
        .map(|v| granted_module_license(v, catalog, rest))
        .collect();
    let associate_id = user.map(|u| u.id).unwrap_or(0);
    let role_name = match role {
        allot_ledger::Role::Admin => "Administrator",
        allot_ledger::Role::Reader => "Reader",
        allot_ledger::Role::User => "User",
        allot_ledger::Role::Operator => "Operator",
        allot_ledger::Role::Scim => "Scim",
    };
    let mut fields = vec![
        ("UserType", Wire::str("InternalAssociate")),
        ("Associate", Wire::str(login)),
        ("AssociateId", Wire::Int(associate_id)),
        ("IsPerson", Wire::Bool(user.is_some())),
        ("PersonId", Wire::Int(associate_id)),
        ("CountryId", Wire::Int(0)),
        ("HomeCountryId", Wire::Int(0)),
        ("ContactId", Wire::Int(0)),
        ("GroupId", Wire::Int(0)),
        ("BusinessId", Wire::Int(0)),
        ("CategoryId", Wire::Int(0)),
        ("ContactOwner", Wire::Int(0)),
        ("RoleId", Wire::Int(0)),
        ("RoleName", Wire::str(role_name)),
        ("RoleDescription", Wire::str(role_name)),
        ("RoleType", Wire::str("Employee")),
        ("Licenses", Wire::Arr("GrantedModuleLicense", licenses)),
        (
            "FullName",
            Wire::Str(user.map(full_name).unwrap_or_else(|| login.to_owned())),
        ),
        (
            "EMailAddress",
            Wire::Str(user.map(|u| u.email.clone()).unwrap_or_default()),
        ),
        ("FunctionRights", Wire::Arr("string", Vec::new())),
        ("EjUserId", Wire::Int(0)),
        ("EjAccessLevel", Wire::Int(0)),
        ("EjUserStatus", Wire::str("Normal")),
        ("ProvidedCredentials", Wire::str("Password")),
        ("SecondaryGroups", Wire::Arr("int", Vec::new())),
        ("DatabaseContextIdentifier", Wire::str("")),
    ];
    if rest {
        fields.push(("UserName", Wire::str(login)));
    }
    Wire::Obj("SoPrincipalCarrier", fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates_have_seven_fraction_digits_and_no_offset() {
        assert_eq!(
            date(datetime!(2021-01-17 03:24:47.8301403 +01:00)),
            Wire::str("2021-01-17T02:24:47.8301403")
        );
    }
}
