//! SuperOffice NetServer dialect: the REST agents (`/api/v1/Agents/...`), the RESTful license
//! mirrors (`/api/v1/License/...`) and the SOAP services (`/Remote/ServicesNN/<Service>.svc`).
//!
//! Layout: [`methods`] is the one table of operations (name, parameters, versions) and their
//! implementations over the ledger; [`carriers`] builds NetServer's carriers from ledger data;
//! [`wire`] renders carriers as JSON, REST XML or SOAP content; [`rest`] and [`soap`] are the
//! two transports; [`wsdl`] describes the SOAP services. Credentials are checked here, once.

pub mod carriers;
pub mod methods;
pub mod rest;
pub mod soap;
pub mod wire;
pub mod wsdl;

use std::net::IpAddr;

use crate::auth::{AuthError, Principal};
use crate::state::SuperOfficeState;
use allot_ledger::{LedgerError, TenantId, rules};

/// A ServicesNN version. REST speaks the newest carrier shapes (those of Services88).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u8);

impl Version {
    pub const REST: Version = Version(88);
    /// Every SOAP version served: 75 and 80 through 88.
    pub const SOAP: [u8; 10] = [75, 80, 81, 82, 83, 84, 85, 86, 87, 88];

    /// `Services86` (any casing) to a supported version.
    pub fn parse(segment: &str) -> Option<Version> {
        let digits = segment
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("services"))
            .map(|_| &segment[8..])?;
        let n: u8 = digits.parse().ok()?;
        Self::SOAP.contains(&n).then_some(Version(n))
    }

    pub fn namespace(self) -> String {
        format!(
            "http://www.superoffice.net/ws/crm/NetServer/Services{}",
            self.0
        )
    }

    /// `ModuleLicenseLink.IsHidden` exists from Services87.
    pub fn has_is_hidden(self) -> bool {
        self.0 >= 87
    }

    /// `ModuleLicenseLink.ExtraFlags` exists from Services88.
    pub fn has_extra_flags(self) -> bool {
        self.0 >= 88
    }
}

/// The owner whose licenses the third-party methods never touch, and whose license cannot be
/// removed from the database.
pub const SUPEROFFICE_OWNER: &str = "SuperOffice";

pub fn is_superoffice_owner(owner: &str) -> bool {
    owner.trim().eq_ignore_ascii_case(SUPEROFFICE_OWNER)
}

/// Why a call failed, before each transport phrases it its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum SoError {
    /// No credentials, or wrong, expired or revoked ones (REST 401; SOAP ExceptionInfo).
    Unauthorized,
    /// An Online tenant called without a registered application token.
    AppToken,
    /// Authenticated, but this needs more rights.
    Forbidden(String),
    /// Too many failed logins: retry after this many seconds.
    Throttled(u64),
    /// A parameter could not be bound (REST 400 `{Message, MessageDetail}`).
    Bind(String),
    /// The ledger refused (a rule), phrased for people.
    Refused(LedgerError),
    /// The store is unavailable (503).
    Unavailable,
}

impl From<AuthError> for SoError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized | AuthError::BadToken(_) => SoError::Unauthorized,
            AuthError::Throttled(d) => SoError::Throttled(d.as_secs().max(1)),
            AuthError::Unavailable => SoError::Unavailable,
            // NetServer has no "busy" fault; its throttling answer (429, Retry-After) fits.
            AuthError::Busy(d) => SoError::Throttled(d.as_secs().max(1)),
        }
    }
}

impl From<LedgerError> for SoError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(_) => {
                tracing::error!(error = %e, "store failure");
                SoError::Unavailable
            }
            other => SoError::Refused(other),
        }
    }
}

impl SoError {
    /// NetServer's exception type name for this failure (SOAP `ExceptionInfo.ExceptionType`,
    /// REST `ErrorType`).
    pub fn exception_type(&self) -> &'static str {
        match self {
            SoError::Unauthorized | SoError::AppToken => "SoSessionException",
            SoError::Forbidden(_) => "SoAccessDeniedException",
            SoError::Throttled(_) => "SoSessionException",
            SoError::Bind(_) => "SoArgumentException",
            SoError::Refused(e) if e.code().starts_with("unknown") => "SoNotFoundException",
            SoError::Refused(_) => "SoException",
            SoError::Unavailable => "SoServerUnavailableException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            SoError::Unauthorized => "Authorization has been denied for this request.".into(),
            SoError::AppToken => {
                "This installation is Online: a registered application token is required.".into()
            }
            SoError::Forbidden(m) => m.clone(),
            SoError::Throttled(s) => {
                format!("Too many failed log-ins; try again in {s} seconds.")
            }
            SoError::Bind(m) => m.clone(),
            SoError::Refused(e) => e.to_string(),
            SoError::Unavailable => "Server unavailable, please try later".into(),
        }
    }
}

/// The authenticated caller inside one tenant.
#[derive(Debug, Clone)]
pub struct SoCaller {
    pub tenant: TenantId,
    pub tenant_name: String,
    pub principal: Principal,
    pub request_id: Option<String>,
}

impl SoCaller {
    pub fn context(&self) -> allot_ledger::Context {
        allot_ledger::Context {
            tenant: self.tenant,
            actor: self.principal.login.clone(),
            request_id: self.request_id.clone(),
        }
    }

    /// Changes: the admin role.
    pub fn require_admin(&self) -> Result<(), SoError> {
        if self.principal.can_write() {
            Ok(())
        } else {
            Err(SoError::Forbidden(
                "This needs administrator rights.".into(),
            ))
        }
    }

    /// Reads about one associate: admin, reader, or that associate itself.
    pub fn require_reader_or_self(&self, associate: i64) -> Result<(), SoError> {
        if self.principal.can_read() || self.principal.is_self(associate) {
            Ok(())
        } else {
            Err(SoError::Forbidden(
                "A user may only read its own licenses.".into(),
            ))
        }
    }
}

/// Resolves the addressed tenant (unknown tenants are indistinguishable from bad credentials).
pub async fn tenant_of(state: &SuperOfficeState, name: &str) -> Result<TenantId, SoError> {
    state
        .ledger
        .tenant(name)
        .await?
        .map(|t| t.id)
        .ok_or(SoError::Unauthorized)
}

/// Online tenants need a registered application token; on-site tenants take any or none.
pub fn check_app_token(
    state: &SuperOfficeState,
    tenant: &str,
    token: Option<&str>,
) -> Result<(), SoError> {
    let config = &state.config;
    if !config.is_online(tenant) {
        return Ok(());
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(SoError::AppToken);
    };
    let hash = rules::hash_token(token);
    // Compare digests in constant time; every registered hash is checked.
    let registered = config.app_token_hashes.iter().fold(false, |found, h| {
        found | rules::hashes_match(&h.trim().to_ascii_lowercase(), &hash)
    });
    if registered {
        Ok(())
    } else {
        Err(SoError::AppToken)
    }
}

/// A ticket, API token or bearer token, which must belong to `tenant`.
pub async fn principal_from_ticket(
    state: &SuperOfficeState,
    tenant: TenantId,
    ticket: &str,
) -> Result<Principal, SoError> {
    let ticket = crate::auth::ticket_text(ticket);
    let principal = state.auth.token(ticket).await?;
    if principal.tenant != Some(tenant) {
        return Err(SoError::Unauthorized);
    }
    Ok(principal)
}

/// `Authorization: Basic base64(login:password)`.
pub async fn principal_from_basic(
    state: &SuperOfficeState,
    tenant: TenantId,
    encoded: &str,
    client: Option<IpAddr>,
) -> Result<Principal, SoError> {
    let (login, password) = crate::auth::decode_basic(encoded).ok_or(SoError::Unauthorized)?;
    Ok(state
        .auth
        .password(tenant, &login, &password, client)
        .await?)
}

/// The lifetime of a SoPrincipal ticket.
pub fn ticket_lifetime(state: &SuperOfficeState) -> time::Duration {
    state.token_ttl
}

/// Prefix of the tickets SoPrincipal issues (NetServer's are `7T:` followed by base64).
pub const TICKET_PREFIX: &str = "7T:";
