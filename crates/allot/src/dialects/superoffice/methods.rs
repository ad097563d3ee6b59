//! The operations this dialect serves: one table for REST and SOAP (names, parameters, the
//! versions that have them), parameter binding, and the implementations over the ledger.

use std::collections::HashMap;

use super::carriers::{self, Catalog};
use super::wire::Wire;
use super::{SoCaller, SoError, Version, is_superoffice_owner};
use crate::state::SuperOfficeState;
use crate::xml::Element;
use allot_ledger::{
    ClientKind, Command, EndReason, LedgerError, PoolStatus, Product, ProductRef, User,
    UserProductView, UserRef,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Int,
    Str,
    Bool,
    IntArray,
    StrArray,
}

impl Param {
    /// XML Schema type for the WSDL.
    pub fn xsd(self) -> &'static str {
        match self {
            Param::Int => "xs:int",
            Param::Str => "xs:string",
            Param::Bool => "xs:boolean",
            Param::IntArray => "q1:ArrayOfint",
            Param::StrArray => "q1:ArrayOfstring",
        }
    }

    /// .NET type name, for call descriptions.
    pub fn dotnet(self) -> &'static str {
        match self {
            Param::Int => "Int32",
            Param::Str => "String",
            Param::Bool => "Boolean",
            Param::IntArray => "Int32[]",
            Param::StrArray => "String[]",
        }
    }
}

/// What a method answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    Void,
    /// One carrier of this DataContract type.
    One(&'static str),
    /// An array of this item type.
    Many(&'static str),
}

/// What a method does. The table below names each method's op, and [`call`] matches on it
/// exhaustively, so routing (REST and SOAP look methods up in the table), the WSDL (written from
/// the table) and the implementation cannot drift apart: a method without an implementation,
/// or an implementation no method reaches, does not compile or fails the table's test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    GetUserLicenses,
    GetThirdPartyLicenseAssignments,
    AssignThirdPartyLicenses,
    UnassignThirdPartyLicenses,
    GetLicenseFromDb,
    GetLicenseForAllOwnersFromDb,
    GetModuleLicenseFromDb,
    GetUserAndInstallationLicenceStatus,
    RemoveLicenseFromDb,
    RemoveLicenses,
    MakeRetired,
    GetUserInfo,
    LogOffWindowsUsers,
    AuthenticateUsernamePassword,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::GetUserLicenses,
        Op::GetThirdPartyLicenseAssignments,
        Op::AssignThirdPartyLicenses,
        Op::UnassignThirdPartyLicenses,
        Op::GetLicenseFromDb,
        Op::GetLicenseForAllOwnersFromDb,
        Op::GetModuleLicenseFromDb,
        Op::GetUserAndInstallationLicenceStatus,
        Op::RemoveLicenseFromDb,
        Op::RemoveLicenses,
        Op::MakeRetired,
        Op::GetUserInfo,
        Op::LogOffWindowsUsers,
        Op::AuthenticateUsernamePassword,
    ];
}

#[derive(Debug)]
pub struct Method {
    /// Agent and SOAP service name: License, User, Associate, SoPrincipal.
    pub agent: &'static str,
    pub name: &'static str,
    pub op: Op,
    pub params: &'static [(&'static str, Param)],
    pub returns: Returns,
    /// First ServicesNN version with the method; `None`: REST only.
    pub soap_since: Option<u8>,
    /// Served as a REST agent.
    pub rest: bool,
    pub summary: &'static str,
}

impl Method {
    pub fn in_soap(&self, version: Version) -> bool {
        self.soap_since.is_some_and(|since| version.0 >= since)
    }
}

use Param::*;

/// Every operation served. SOAP availability per version follows NetServer's: LogOffWindowsUsers
/// from Services81, the third-party methods and GetModuleLicenseFromDB from Services83,
/// GetUserAndInstallationLicenceStatus from Services88.
pub static METHODS: &[Method] = &[
    Method {
        agent: "License",
        name: "GetUserLicenses",
        op: Op::GetUserLicenses,
        params: &[("AssociateId", Int)],
        returns: Returns::Many("LicenseOwner"),
        soap_since: Some(75),
        rest: true,
        summary: "Obtain information about associate module licenses",
    },
    Method {
        agent: "License",
        name: "GetThirdPartyLicenseAssignments",
        op: Op::GetThirdPartyLicenseAssignments,
        params: &[("AssociateId", Int), ("ModuleOwner", Str)],
        returns: Returns::Many("ModuleLicenseLink"),
        soap_since: Some(83),
        rest: true,
        summary: "Get license assignments for an associate for licenses belonging to an other module owner than SuperOffice",
    },
    Method {
        agent: "License",
        name: "AssignThirdPartyLicenses",
        op: Op::AssignThirdPartyLicenses,
        params: &[
            ("AssociateId", Int),
            ("ModuleOwner", Str),
            ("ModuleLicenseNames", StrArray),
        ],
        returns: Returns::Many("ModuleLicenseLink"),
        soap_since: Some(83),
        rest: true,
        summary: "Assign third party licenses",
    },
    Method {
        agent: "License",
        name: "UnassignThirdPartyLicenses",
        op: Op::UnassignThirdPartyLicenses,
        params: &[
            ("AssociateId", Int),
            ("ModuleOwner", Str),
            ("ModuleLicenseNames", StrArray),
        ],
        returns: Returns::Many("ModuleLicenseLink"),
        soap_since: Some(83),
        rest: true,
        summary: "Unassign (remove) third party licenses",
    },
    Method {
        agent: "License",
        name: "GetLicenseFromDB",
        op: Op::GetLicenseFromDb,
        params: &[("OwnerName", Str)],
        returns: Returns::One("ExtendedLicenseInfo"),
        soap_since: Some(75),
        rest: true,
        summary: "Get license, with usage, as it is stored in the database for one particular module owner.",
    },
    Method {
        agent: "License",
        name: "GetLicenseForAllOwnersFromDB",
        op: Op::GetLicenseForAllOwnersFromDb,
        params: &[],
        returns: Returns::Many("ExtendedLicenseInfo"),
        soap_since: Some(75),
        rest: true,
        summary: "Get all licenses, with usage, from all module owners as they are stored in the database",
    },
    Method {
        agent: "License",
        name: "GetModuleLicenseFromDB",
        op: Op::GetModuleLicenseFromDb,
        params: &[("OwnerName", Str), ("ModuleName", Str)],
        returns: Returns::One("ModuleLicense"),
        soap_since: Some(83),
        rest: true,
        summary: "Get license information for one particular license module.",
    },
    Method {
        agent: "License",
        name: "GetUserAndInstallationLicenceStatus",
        op: Op::GetUserAndInstallationLicenceStatus,
        params: &[("AssociateId", Int)],
        returns: Returns::One("UserAndInstallationLicenceStatus"),
        soap_since: Some(88),
        rest: true,
        summary: "Get status values for user licenses and installation license that can be used for feedback to the user.",
    },
    Method {
        agent: "License",
        name: "RemoveLicenseFromDB",
        op: Op::RemoveLicenseFromDb,
        params: &[("ModuleOwner", Str)],
        returns: Returns::One("LicenseResult"),
        soap_since: Some(75),
        rest: true,
        summary: "Remove the license from a particular module owner from the database. It is not permitted to remove licenses from SuperOffice",
    },
    Method {
        agent: "User",
        name: "RemoveLicenses",
        op: Op::RemoveLicenses,
        params: &[("AssociateId", Int)],
        returns: Returns::Void,
        soap_since: Some(75),
        rest: true,
        summary: "Remove all user licenses.",
    },
    Method {
        agent: "User",
        name: "MakeRetired",
        op: Op::MakeRetired,
        params: &[("AssociateId", Int), ("Retired", Bool)],
        returns: Returns::Void,
        soap_since: Some(75),
        rest: true,
        summary: "Retiring a user removes all licenses and marks the associate retired; un-retiring clears the marks.",
    },
    Method {
        agent: "User",
        name: "GetUserInfo",
        op: Op::GetUserInfo,
        params: &[("UserName", Str)],
        returns: Returns::One("UserInfo"),
        soap_since: Some(75),
        rest: true,
        summary: "Get the user info of a user, with its granted licenses.",
    },
    Method {
        agent: "Associate",
        name: "LogOffWindowsUsers",
        op: Op::LogOffWindowsUsers,
        params: &[("AssociateIds", IntArray)],
        returns: Returns::Void,
        soap_since: Some(81),
        rest: true,
        summary: "Method that logs off associates that are logged on to the win client",
    },
    Method {
        agent: "SoPrincipal",
        name: "AuthenticateUsernamePassword",
        op: Op::AuthenticateUsernamePassword,
        params: &[("UserName", Str), ("Password", Str)],
        returns: Returns::One("SoPrincipalCarrier"),
        soap_since: Some(75),
        rest: false,
        summary: "Authenticate with a user name and password; answers a ticket.",
    },
];

/// The method of `agent` named `name` (both case-insensitive).
pub fn find(agent: &str, name: &str) -> Option<&'static Method> {
    METHODS
        .iter()
        .find(|m| m.agent.eq_ignore_ascii_case(agent) && m.name.eq_ignore_ascii_case(name))
}

/// Bound arguments. Missing parameters take .NET's defaults (0, null, false, empty), as
/// NetServer's binder gives them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    ints: HashMap<&'static str, i64>,
    strs: HashMap<&'static str, String>,
    bools: HashMap<&'static str, bool>,
    int_lists: HashMap<&'static str, Vec<i64>>,
    str_lists: HashMap<&'static str, Vec<String>>,
}

impl Args {
    pub fn int(&self, name: &str) -> i64 {
        self.ints.get(name).copied().unwrap_or(0)
    }
    pub fn str(&self, name: &str) -> &str {
        self.strs.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn ints(&self, name: &str) -> &[i64] {
        self.int_lists.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn strs(&self, name: &str) -> &[String] {
        self.str_lists.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn set_strs(&mut self, name: &'static str, values: Vec<String>) {
        self.str_lists.insert(name, values);
    }
    pub fn set_int(&mut self, name: &'static str, value: i64) {
        self.ints.insert(name, value);
    }
    pub fn set_str(&mut self, name: &'static str, value: String) {
        self.strs.insert(name, value);
    }

    /// Binds a JSON request body (`{"AssociateId": 1, ...}`, names case-insensitive; unknown
    /// names ignored). Numbers may come as numeric strings, as Json.NET accepts them.
    pub fn from_json(method: &Method, body: &serde_json::Value) -> Result<Args, SoError> {
        let object = match body {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => return Ok(Args::default()),
            _ => {
                return Err(SoError::Bind(format!(
                    "The request body for {} must be a JSON object with its parameters.",
                    method.name
                )));
            }
        };
        let mut args = Args::default();
        for (name, kind) in method.params {
            let Some(value) = object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
            else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let bad = || {
                SoError::Bind(format!(
                    "Error converting value {value} to type 'System.{}' for parameter '{name}'.",
                    kind.dotnet()
                ))
            };
            match kind {
                Int => {
                    args.ints.insert(name, json_int(value).ok_or_else(bad)?);
                }
                Str => {
                    let s = match value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => return Err(bad()),
                    };
                    args.strs.insert(name, s);
                }
                Bool => {
                    let b = match value {
                        serde_json::Value::Bool(b) => *b,
                        serde_json::Value::String(s) => parse_bool(s).ok_or_else(bad)?,
                        _ => return Err(bad()),
                    };
                    args.bools.insert(name, b);
                }
                IntArray => {
                    let items = value.as_array().ok_or_else(bad)?;
                    let ints = items
                        .iter()
                        .map(json_int)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?;
                    args.int_lists.insert(name, ints);
                }
                StrArray => {
                    let items = value.as_array().ok_or_else(bad)?;
                    let strs = items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?;
                    args.str_lists.insert(name, strs);
                }
            }
        }
        Ok(args)
    }

    /// Binds the parameters of an XML element (REST XML body or SOAP operation element):
    /// children named after the parameters (case-insensitive), arrays as item children.
    pub fn from_xml(method: &Method, element: &Element) -> Result<Args, SoError> {
        let mut args = Args::default();
        for (name, kind) in method.params {
            let Some(child) = element.child(name) else {
                continue;
            };
            if child.is_nil() {
                continue;
            }
            let bad = || {
                SoError::Bind(format!(
                    "The value '{}' is not valid for parameter '{name}' ({}).",
                    child.value(),
                    kind.dotnet()
                ))
            };
            match kind {
                Int => {
                    args.ints
                        .insert(name, parse_int(child.value()).ok_or_else(bad)?);
                }
                Str => {
                    args.strs.insert(name, child.text.clone());
                }
                Bool => {
                    args.bools
                        .insert(name, parse_bool(child.value()).ok_or_else(bad)?);
                }
                IntArray => {
                    let ints = child
                        .children
                        .iter()
                        .map(|c| parse_int(c.value()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?;
                    args.int_lists.insert(name, ints);
                }
                StrArray => {
                    let strs = child.children.iter().map(|c| c.text.clone()).collect();
                    args.str_lists.insert(name, strs);
                }
            }
        }
        Ok(args)
    }

    /// Binds `application/x-www-form-urlencoded` pairs (arrays as repeated keys, with or
    /// without `[]`).
    pub fn from_form(method: &Method, pairs: &[(String, String)]) -> Result<Args, SoError> {
        let mut args = Args::default();
        for (name, kind) in method.params {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| {
                    let k = k.trim_end_matches("[]");
                    k.eq_ignore_ascii_case(name)
                })
                .map(|(_, v)| v.as_str())
                .collect();
            let Some(first) = values.first() else {
                continue;
            };
            let bad = |v: &str| {
                SoError::Bind(format!(
                    "The value '{v}' is not valid for parameter '{name}' ({}).",
                    kind.dotnet()
                ))
            };
            match kind {
                Int => {
                    args.ints
                        .insert(name, parse_int(first).ok_or_else(|| bad(first))?);
                }
                Str => {
                    args.strs.insert(name, (*first).to_owned());
                }
                Bool => {
                    args.bools
                        .insert(name, parse_bool(first).ok_or_else(|| bad(first))?);
                }
                IntArray => {
                    let ints = values
                        .iter()
                        .map(|v| parse_int(v).ok_or_else(|| bad(v)))
                        .collect::<Result<Vec<_>, _>>()?;
                    args.int_lists.insert(name, ints);
                }
                StrArray => {
                    args.str_lists
                        .insert(name, values.iter().map(|v| (*v).to_owned()).collect());
                }
            }
        }
        Ok(args)
    }
}

/// An `Int32` in JSON: an integral number or a numeric string, within range.
fn json_int(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().filter(|i| i32::try_from(*i).is_ok()),
        serde_json::Value::String(s) => parse_int(s),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    text.trim().parse::<i32>().ok().map(i64::from)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
        _ => None,
    }
}

/// A call's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Value(Wire),
    /// A void method that ran.
    Void,
    /// An unknown id: agents answer `null`.
    NotFound,
}

/// A lookup's result with "no such user/product" as `None` (agents answer those with `null`);
/// other failures stay errors.
fn found<T>(result: Result<T, LedgerError>) -> Result<Option<T>, SoError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(LedgerError::UnknownUser(_) | LedgerError::UnknownProduct(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Looks a user up by AssociateId; `None` when there is no such user.
async fn associate(
    state: &SuperOfficeState,
    caller: &SoCaller,
    id: i64,
) -> Result<Option<User>, SoError> {
    found(state.ledger.user(caller.tenant, &UserRef::Id(id)).await)
}

/// A user checking its own licenses (the client at start-up: GetUserLicenses,
/// GetUserAndInstallationLicenceStatus) is using the seats it holds: recorded for the idle-seat
/// harvest as the native license file is, at most one write an hour per seat. An administrator
/// looking at someone else's licenses is not a use.
async fn used_by_self(
    state: &SuperOfficeState,
    caller: &SoCaller,
    user: i64,
    views: &[UserProductView],
) -> Result<(), SoError> {
    if caller.principal.is_self(user) && views.iter().any(|v| v.assigned) {
        state
            .ledger
            .record_use(caller.tenant, &UserRef::Id(user), None)
            .await?;
    }
    Ok(())
}

/// Runs a method (anything but SoPrincipal's, which needs no caller) for `caller`.
pub async fn call(
    state: &SuperOfficeState,
    caller: &SoCaller,
    method: &Method,
    args: &Args,
    version: Version,
) -> Result<Answer, SoError> {
    let ledger = &state.ledger;
    let tenant = caller.tenant;
    match method.op {
        Op::GetUserLicenses => {
            let Some(user) = associate(state, caller, args.int("AssociateId")).await? else {
                return Ok(Answer::NotFound);
            };
            caller.require_reader_or_self(user.id)?;
            let views = ledger.user_view(tenant, &UserRef::Id(user.id)).await?;
            used_by_self(state, caller, user.id, &views).await?;
            let products: Vec<Product> = views.iter().map(|v| v.product.clone()).collect();
            let catalog = Catalog::new(&products);
            Ok(Answer::Value(carriers::license_owners(
                &views, &catalog, version,
            )))
        }
        Op::GetThirdPartyLicenseAssignments
        | Op::AssignThirdPartyLicenses
        | Op::UnassignThirdPartyLicenses => {
            third_party(state, caller, method.name, args, version).await
        }
        Op::GetLicenseFromDb => {
            let owner = args.str("OwnerName");
            let infos = license_infos(state, caller, Some(owner)).await?;
            Ok(infos
                .into_iter()
                .next()
                .map_or(Answer::NotFound, Answer::Value))
        }
        Op::GetLicenseForAllOwnersFromDb => {
            let infos = license_infos(state, caller, None).await?;
            Ok(Answer::Value(Wire::Arr("ExtendedLicenseInfo", infos)))
        }
        Op::GetModuleLicenseFromDb => {
            let named = ProductRef::named(args.str("OwnerName"), args.str("ModuleName"));
            let Some(product) = found(ledger.product(tenant, &named).await)? else {
                return Ok(Answer::NotFound);
            };
            let products = ledger.products(tenant).await?;
            let status = ledger.pool_status(tenant, Some(product.id)).await?;
            let Some(status) = status.first() else {
                return Ok(Answer::NotFound);
            };
            let catalog = Catalog::new(&products);
            Ok(Answer::Value(carriers::module_license(
                &product, status, &catalog,
            )))
        }
        Op::GetUserAndInstallationLicenceStatus => {
            let Some(user) = associate(state, caller, args.int("AssociateId")).await? else {
                return Ok(Answer::NotFound);
            };
            caller.require_reader_or_self(user.id)?;
            let views = ledger.user_view(tenant, &UserRef::Id(user.id)).await?;
            used_by_self(state, caller, user.id, &views).await?;
            Ok(Answer::Value(carriers::user_and_installation_status(
                &caller.tenant_name,
                &views,
            )))
        }
        Op::RemoveLicenseFromDb => {
            caller.require_admin()?;
            let owner = args.str("ModuleOwner").trim().to_owned();
            if is_superoffice_owner(&owner) {
                return Ok(Answer::Value(carriers::license_result(
                    false,
                    "It is not permitted to remove licenses from SuperOffice.",
                )));
            }
            match ledger
                .execute(
                    &caller.context(),
                    Command::RemoveOwner {
                        owner: owner.clone(),
                    },
                )
                .await
            {
                Ok(_) => Ok(Answer::Value(carriers::license_result(true, ""))),
                Err(LedgerError::UnknownProduct(_)) => Ok(Answer::Value(carriers::license_result(
                    false,
                    &format!("No license from module owner '{owner}' is stored."),
                ))),
                Err(e) => Err(e.into()),
            }
        }
        Op::RemoveLicenses => {
            caller.require_admin()?;
            let Some(user) = associate(state, caller, args.int("AssociateId")).await? else {
                return Ok(Answer::NotFound);
            };
            ledger
                .execute(
                    &caller.context(),
                    Command::RemoveAllLicenses {
                        user: UserRef::Id(user.id),
                    },
                )
                .await?;
            Ok(Answer::Void)
        }
        Op::MakeRetired => {
            caller.require_admin()?;
            let Some(user) = associate(state, caller, args.int("AssociateId")).await? else {
                return Ok(Answer::NotFound);
            };
            let user = UserRef::Id(user.id);
            let command = if args.bool("Retired") {
                Command::Retire { user }
            } else {
                Command::Unretire { user }
            };
            ledger.execute(&caller.context(), command).await?;
            Ok(Answer::Void)
        }
        Op::GetUserInfo => {
            let name = args.str("UserName");
            let Some(user) = found(ledger.user(tenant, &UserRef::Login(name.to_owned())).await)?
            else {
                return Ok(Answer::NotFound);
            };
            caller.require_reader_or_self(user.id)?;
            let views = ledger.user_view(tenant, &UserRef::Id(user.id)).await?;
            Ok(Answer::Value(carriers::user_info(&user, &views)))
        }
        Op::LogOffWindowsUsers => {
            let ids = args.ints("AssociateIds");
            let only_self = !ids.is_empty() && ids.iter().all(|id| caller.principal.is_self(*id));
            if !only_self {
                caller.require_admin()?;
            }
            let mut users = Vec::new();
            for id in ids {
                if let Some(user) = associate(state, caller, *id).await? {
                    users.push(UserRef::Id(user.id));
                }
            }
            if !users.is_empty() {
                ledger
                    .execute(
                        &caller.context(),
                        Command::LogOff {
                            users,
                            client: Some(ClientKind::Windows),
                            reason: EndReason::Admin,
                        },
                    )
                    .await?;
            }
            Ok(Answer::Void)
        }
        // Answered by the SOAP layer before any caller exists.
        Op::AuthenticateUsernamePassword => Err(SoError::Bind(format!(
            "{}.{} cannot be called this way.",
            method.agent, method.name
        ))),
    }
}

/// Get/Assign/UnassignThirdPartyLicenses: act on one owner's modules only (never SuperOffice's)
/// and answer that owner's modules as the associate now sees them.
async fn third_party(
    state: &SuperOfficeState,
    caller: &SoCaller,
    name: &str,
    args: &Args,
    version: Version,
) -> Result<Answer, SoError> {
    let owner = args.str("ModuleOwner").trim().to_owned();
    if owner.is_empty() || is_superoffice_owner(&owner) {
        return Ok(Answer::NotFound);
    }
    let Some(user) = associate(state, caller, args.int("AssociateId")).await? else {
        return Ok(Answer::NotFound);
    };
    if name == "GetThirdPartyLicenseAssignments" {
        caller.require_reader_or_self(user.id)?;
    } else {
        caller.require_admin()?;
        let commands: Vec<Command> = args
            .strs("ModuleLicenseNames")
            .iter()
            .map(|module| {
                let product = ProductRef::named(&owner, module.trim());
                let user = UserRef::Id(user.id);
                if name == "AssignThirdPartyLicenses" {
                    Command::Assign { user, product }
                } else {
                    Command::Unassign { user, product }
                }
            })
            .collect();
        if !commands.is_empty() {
            // One transaction; each module succeeds or is refused on its own (no seat free,
            // prerequisite missing, unknown name), and the answer shows where each ended up.
            let outcomes = state.ledger.apply(&caller.context(), &commands).await?;
            for (command, outcome) in commands.iter().zip(outcomes) {
                if let Err(e) = outcome {
                    tracing::debug!(?command, error = %e, "third-party license change refused");
                }
            }
        }
    }
    // Only the owner's pools are read: the answer is the owner's links.
    let views = state
        .ledger
        .user_owner_view(caller.tenant, &UserRef::Id(user.id), &owner)
        .await?;
    let products = state.ledger.products(caller.tenant).await?;
    let catalog = Catalog::new(&products);
    let mine: Vec<&UserProductView> = views.iter().collect();
    if mine.is_empty() {
        return Ok(Answer::NotFound);
    }
    Ok(Answer::Value(carriers::module_license_links(
        &mine, &catalog, version,
    )))
}

/// ExtendedLicenseInfo per owner (one owner, or all).
async fn license_infos(
    state: &SuperOfficeState,
    caller: &SoCaller,
    owner: Option<&str>,
) -> Result<Vec<Wire>, SoError> {
    let products = state.ledger.products(caller.tenant).await?;
    let statuses = state.ledger.pool_status(caller.tenant, None).await?;
    let catalog = Catalog::new(&products);
    let mut owners: Vec<&str> = Vec::new();
    for p in &products {
        if owner.is_none_or(|o| o.trim().eq_ignore_ascii_case(&p.owner))
            && !owners.iter().any(|o| o.eq_ignore_ascii_case(&p.owner))
        {
            owners.push(&p.owner);
        }
    }
    Ok(owners
        .into_iter()
        .map(|o| {
            let lines: Vec<(&Product, &PoolStatus)> = products
                .iter()
                .filter(|p| p.owner.eq_ignore_ascii_case(o))
                .filter_map(|p| statuses.iter().find(|s| s.product == p.id).map(|s| (p, s)))
                .collect();
            carriers::extended_license_info(&caller.tenant_name, o, &lines, &catalog)
        })
        .collect())
}

/// `User/currentPrincipal` (REST) and the `Response` of SoPrincipal's Authenticate (SOAP).
pub async fn principal_carrier(
    state: &SuperOfficeState,
    tenant: allot_ledger::TenantId,
    principal: &crate::auth::Principal,
    rest: bool,
) -> Result<Wire, SoError> {
    let user = match principal.user {
        Some(id) => found(state.ledger.user(tenant, &UserRef::Id(id)).await)?,
        None => None,
    };
    let views = match &user {
        Some(u) => state.ledger.user_view(tenant, &UserRef::Id(u.id)).await?,
        None => Vec::new(),
    };
    let products: Vec<Product> = views.iter().map(|v| v.product.clone()).collect();
    let catalog = Catalog::new(&products);
    Ok(carriers::principal_carrier(
        &principal.login,
        principal.role,
        user.as_ref(),
        &views,
        &catalog,
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str) -> &'static Method {
        METHODS.iter().find(|m| m.name == name).unwrap()
    }

    #[test]
    fn every_op_is_served_by_exactly_one_method_of_its_own_name() {
        for op in Op::ALL {
            let rows: Vec<&Method> = METHODS.iter().filter(|m| m.op == op).collect();
            assert_eq!(rows.len(), 1, "{op:?} is in the table {} times", rows.len());
        }
        assert_eq!(
            METHODS.len(),
            Op::ALL.len(),
            "a table row without its own op"
        );
        for m in METHODS {
            assert!(
                format!("{:?}", m.op).eq_ignore_ascii_case(m.name),
                "{}.{} is wired to {:?}",
                m.agent,
                m.name,
                m.op
            );
        }
    }

    #[test]
    fn json_binding_is_case_insensitive_and_lenient_about_numbers() {
        let m = method("AssignThirdPartyLicenses");
        let args = Args::from_json(
            m,
            &serde_json::json!({"associateid": "326", "MODULEOWNER": "saepe",
                "ModuleLicenseNames": ["a", "b"], "Other": 1}),
        )
        .unwrap();
        assert_eq!(args.int("AssociateId"), 326);
        assert_eq!(args.str("ModuleOwner"), "saepe");
        assert_eq!(args.strs("ModuleLicenseNames"), ["a", "b"]);
        assert!(matches!(
            Args::from_json(m, &serde_json::json!({"AssociateId": "glops"})),
            Err(SoError::Bind(_))
        ));
        assert!(matches!(
            Args::from_json(m, &serde_json::json!({"AssociateId": 1u64 << 40})),
            Err(SoError::Bind(_))
        ));
        assert!(matches!(
            Args::from_json(m, &serde_json::json!([1])),
            Err(SoError::Bind(_))
        ));
        assert_eq!(
            Args::from_json(m, &serde_json::Value::Null).unwrap(),
            Args::default()
        );
    }

    #[test]
    fn xml_and_form_binding() {
        let m = method("LogOffWindowsUsers");
        let el = crate::xml::parse(
            "<LogOffWindowsUsers xmlns:a=\"urn:arrays\"><AssociateIds><a:int>5</a:int><a:int> 7 </a:int></AssociateIds></LogOffWindowsUsers>",
        )
        .unwrap();
        assert_eq!(Args::from_xml(m, &el).unwrap().ints("AssociateIds"), [5, 7]);
        let pairs = vec![
            ("AssociateIds[]".to_owned(), "1".to_owned()),
            ("associateids".to_owned(), "2".to_owned()),
        ];
        assert_eq!(
            Args::from_form(m, &pairs).unwrap().ints("AssociateIds"),
            [1, 2]
        );
        let bad = vec![("AssociateIds".to_owned(), "x".to_owned())];
        assert!(Args::from_form(m, &bad).is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "\\PC{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("AssociateId".to_owned()),
                            Just("associateids".to_owned()),
                            Just("ModuleLicenseNames".to_owned()),
                            Just("Retired".to_owned()),
                            "[a-zA-Z]{1,8}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever JSON arrives, binding answers arguments or a bind error, never a panic.
        #[test]
        fn json_binding_never_panics(value in json_value()) {
            for method in METHODS {
                let _ = Args::from_json(method, &value);
            }
        }
    }

    #[test]
    fn version_table_matches_netserver() {
        let logoff = method("LogOffWindowsUsers");
        assert!(!logoff.in_soap(Version(75)) && !logoff.in_soap(Version(80)));
        assert!(logoff.in_soap(Version(81)) && logoff.in_soap(Version(88)));
        assert!(!method("UnassignThirdPartyLicenses").in_soap(Version(82)));
        assert!(method("UnassignThirdPartyLicenses").in_soap(Version(83)));
        assert!(method("RemoveLicenses").in_soap(Version(75)));
    }
}
