//! SCIM Groups (RFC 7643 §4.2) at `/scim/v2/Groups`: a SCIM Group is an allot group, its
//! `members` are users named by their SCIM ids. Membership changes are the ledger's group
//! commands, so members gain and lose the group's licenses exactly as through the native API.
//!
//! A PATCH is not applied to a copy of the group and stored whole (as a user's is): identity
//! providers send concurrent PATCHes adding or removing members one at a time, and a
//! read-modify-write of the member list would lose some. Each operation becomes ledger commands
//! (add these members, remove those, make the members exactly these, rename), and all of a
//! request's commands run in one transaction, all or nothing.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::filter::{self, Filter, PatchPath};
use super::patch::{self, Kind, Operation};
use super::{
    ListQuery, MAX_COUNT, PATCH_SCHEMA, ScimCaller, ScimError, ScimResult, base_url, project,
    read_body, rfc3339, scim_json,
};
use crate::state::AppState;
use allot_ledger::{Command, Group, GroupRef, LedgerError, TenantId, UserRef};

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A group as SCIM JSON; `members` is left out when there are none (or when not wanted).
pub fn group_json(group: &Group, members: Option<&[Uuid]>, base: &str) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.uuid.to_string(),
        "displayName": group.name,
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(group.created_at),
            "lastModified": rfc3339(group.modified_at),
            "location": format!("{base}/Groups/{}", group.uuid),
        },
    });
    if let Some(external) = &group.external_id {
        out["externalId"] = json!(external);
    }
    if let Some(members) = members.filter(|m| !m.is_empty()) {
        out["members"] = members
            .iter()
            .map(|m| json!({ "value": m.to_string(), "$ref": format!("{base}/Users/{m}"), "type": "User" }))
            .collect();
    }
    out
}

/// A group named by its SCIM id (the group's UUID).
async fn find_group(state: &AppState, tenant: TenantId, id: &str) -> ScimResult<Group> {
    let uuid = Uuid::parse_str(id).map_err(|_| ScimError::not_found(id))?;
    match state.ledger.group(tenant, &GroupRef::Uuid(uuid)).await {
        Ok(group) => Ok(group),
        Err(LedgerError::UnknownGroup(_)) => Err(ScimError::not_found(id)),
        Err(e) => Err(e.into()),
    }
}

async fn members_of(state: &AppState, tenant: TenantId, group: &Group) -> ScimResult<Vec<Uuid>> {
    Ok(state
        .ledger
        .group_member_uuids(tenant, group.id, group.id)
        .await?
        .into_iter()
        .map(|(_, user)| user)
        .collect())
}

/// A member as SCIM sends one (`{"value": "<user id>"}`): the user it names. Only users are
/// members (no nested groups); a user that does not exist (or was deleted) is a bad value.
async fn member_ref(state: &AppState, tenant: TenantId, item: &Value) -> ScimResult<UserRef> {
    let value = match item {
        Value::Object(_) => filter::member(item, "value").and_then(Value::as_str),
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
    .ok_or_else(|| ScimError::bad("invalidValue", "a member is {\"value\": \"<user id>\"}"))?;
    if let Some(kind) = filter::member(item, "type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("User")
    {
        return Err(ScimError::bad(
            "invalidValue",
            format!("members are users, not {kind:?} (no nested groups)"),
        ));
    }
    let unknown = || ScimError::bad("invalidValue", format!("no user {value:?}"));
    let uuid = Uuid::parse_str(value).map_err(|_| unknown())?;
    match state.ledger.user(tenant, &UserRef::Uuid(uuid)).await {
        Ok(user) if !super::is_deleted(&user) => Ok(UserRef::Uuid(uuid)),
        Ok(_) | Err(LedgerError::UnknownUser(_)) => Err(unknown()),
        Err(e) => Err(e.into()),
    }
}

async fn member_refs(
    state: &AppState,
    tenant: TenantId,
    value: &Value,
) -> ScimResult<Vec<UserRef>> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Null => &[],
        single => std::slice::from_ref(single),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(member_ref(state, tenant, item).await?);
    }
    Ok(out)
}

fn text(name: &str, value: Option<&Value>) -> ScimResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// What a POST or PUT body states.
struct GroupFields {
    name: String,
    external_id: Option<String>,
    /// `None`: the body has no `members` (a PUT then keeps them).
    members: Option<Vec<UserRef>>,
}

async fn group_fields(state: &AppState, tenant: TenantId, body: &Value) -> ScimResult<GroupFields> {
    if !body.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    let name = text("displayName", filter::member(body, "displayName"))?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let members = match filter::member(body, "members") {
        None => None,
        Some(value) => Some(member_refs(state, tenant, value).await?),
    };
    Ok(GroupFields {
        name,
        external_id: text("externalId", filter::member(body, "externalId"))?,
        members,
    })
}

/// Runs the commands in one transaction, all or nothing; a member named but unknown by the
/// time it runs is a bad value, as it would have been before.
async fn run_all(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    commands: &[Command],
) -> ScimResult<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let result = state
        .ledger
        .apply_all_or_nothing(&caller.context(headers), commands)
        .await;
    for command in commands {
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        metrics::counter!("allot_ledger_operations_total", "op" => command.name(), "outcome" => outcome)
            .increment(1);
    }
    match result {
        Ok(_) => Ok(()),
        Err(LedgerError::UnknownUser(user)) => {
            Err(ScimError::bad("invalidValue", format!("no user {user}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn answer(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    status: StatusCode,
    uuid: Uuid,
) -> ScimResult<Response> {
    let group = find_group(state, caller.tenant, &uuid.to_string()).await?;
    let members = members_of(state, caller.tenant, &group).await?;
    let base = base_url(state, headers);
    let mut response = scim_json(status, &group_json(&group, Some(&members), &base));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("{base}/Groups/{uuid}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = read_body(&headers, &body).await?;
    let fields = group_fields(&state, caller.tenant, &body).await?;
    let uuid = Uuid::new_v4();
    let mut commands = vec![Command::CreateGroup {
        name: fields.name,
        uuid: Some(uuid),
        external_id: fields.external_id,
    }];
    if let Some(members) = fields.members.filter(|m| !m.is_empty()) {
        commands.push(Command::SetGroupMembers {
            group: GroupRef::Uuid(uuid),
            users: members,
        });
    }
    run_all(&state, &caller, &headers, &commands).await?;
    answer(&state, &caller, &headers, StatusCode::CREATED, uuid).await
}

pub(super) async fn get_group(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    let group = find_group(&state, caller.tenant, &id).await?;
    let members = if wants_members(&query) {
        Some(members_of(&state, caller.tenant, &group).await?)
    } else {
        None
    };
    let json = group_json(&group, members.as_deref(), &base_url(&state, &headers));
    Ok(scim_json(StatusCode::OK, &project(json, &query)?))
}

/// Whether the answer shows `members` (not when `excludedAttributes` names it, or
/// `attributes` leaves it out): a large group's members are then not even read.
fn wants_members(query: &ListQuery) -> bool {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|a| {
                let a = a.trim();
                let a = a.rsplit(':').next().unwrap_or(a);
                a.split('.').next().unwrap_or(a).to_ascii_lowercase()
            })
            .collect()
    };
    if let Some(list) = query.attributes.as_deref().filter(|l| !l.trim().is_empty()) {
        return names(list).iter().any(|a| a == "members");
    }
    match query.excluded_attributes.as_deref() {
        Some(list) => !names(list).iter().any(|a| a == "members"),
        None => true,
    }
}

pub(super) async fn replace_group(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let group = find_group(&state, caller.tenant, &id).await?;
    let body = read_body(&headers, &body).await?;
    let fields = group_fields(&state, caller.tenant, &body).await?;
    let mut commands = vec![Command::EditGroup {
        group: GroupRef::Id(group.id),
        name: Some(fields.name),
        external_id: Some(fields.external_id),
    }];
    // A PUT without `members` does not assert them (RFC 7644 §3.5.1): they stay.
    if let Some(members) = fields.members {
        commands.push(Command::SetGroupMembers {
            group: GroupRef::Id(group.id),
            users: members,
        });
    }
    run_all(&state, &caller, &headers, &commands).await?;
    answer(&state, &caller, &headers, StatusCode::OK, group.uuid).await
}

pub(super) async fn delete_group(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let group = find_group(&state, caller.tenant, &id).await?;
    run_all(
        &state,
        &caller,
        &headers,
        &[Command::DeleteGroup {
            group: GroupRef::Id(group.id),
        }],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn patch_group(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let group = find_group(&state, caller.tenant, &id).await?;
    let body = read_body(&headers, &body).await?;
    let operations = patch::operations(&body, PATCH_SCHEMA)?;
    let mut commands = Vec::new();
    for operation in &operations {
        patch_commands(&state, caller.tenant, &group, operation, &mut commands).await?;
    }
    run_all(&state, &caller, &headers, &commands).await?;
    answer(&state, &caller, &headers, StatusCode::OK, group.uuid).await
}

/// The ledger commands one PATCH operation stands for, appended in order.
async fn patch_commands(
    state: &AppState,
    tenant: TenantId,
    group: &Group,
    op: &Operation,
    out: &mut Vec<Command>,
) -> ScimResult<()> {
    let Some(path) = &op.path else {
        // No path: each member of the value object is an attribute (Okta sends the group's
        // `id` along with a new displayName; the core schema's URN may hold attributes too).
        let Some(Value::Object(members)) = &op.value else {
            return Err(ScimError::bad(
                "invalidValue",
                "without a path, the value is an object",
            ));
        };
        for (name, value) in members {
            if name.eq_ignore_ascii_case(GROUP_SCHEMA) {
                let nested = Operation {
                    kind: op.kind,
                    path: None,
                    value: Some(value.clone()),
                };
                Box::pin(patch_commands(state, tenant, group, &nested, out)).await?;
                continue;
            }
            if ["id", "schemas", "meta"]
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
            {
                if name.eq_ignore_ascii_case("id")
                    && value.as_str() != Some(&group.uuid.to_string())
                {
                    return Err(ScimError::bad("mutability", "id cannot change"));
                }
                continue;
            }
            let path = filter::parse_path(name)
                .map_err(|e| ScimError::bad("invalidPath", format!("{name:?}: {e}")))?;
            let nested = Operation {
                kind: op.kind,
                path: Some(path),
                value: Some(value.clone()),
            };
            Box::pin(patch_commands(state, tenant, group, &nested, out)).await?;
        }
        return Ok(());
    };
    if let Some(urn) = &path.attr.urn
        && !urn.eq_ignore_ascii_case(GROUP_SCHEMA)
    {
        return Err(ScimError::bad(
            "invalidPath",
            format!("unknown schema {urn}"),
        ));
    }
    let target = GroupRef::Id(group.id);
    let attr = path.attr.attr.as_str();
    let is = |name: &str| attr.eq_ignore_ascii_case(name);
    if is("members") {
        return member_commands(state, tenant, group, path, op, out).await;
    }
    if path.filter.is_some() || path.attr.sub.is_some() {
        return Err(ScimError::bad(
            "invalidPath",
            format!("{attr} has no sub-attributes"),
        ));
    }
    if is("displayName") {
        let name = match op.kind {
            Kind::Remove => None,
            _ => text("displayName", op.value.as_ref())?,
        }
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
        out.push(Command::EditGroup {
            group: target,
            name: Some(name),
            external_id: None,
        });
    } else if is("externalId") {
        let external = match op.kind {
            Kind::Remove => None,
            _ => text("externalId", op.value.as_ref())?,
        };
        out.push(Command::EditGroup {
            group: target,
            name: None,
            external_id: Some(external),
        });
    } else if is("id") || is("meta") || is("schemas") {
        return Err(ScimError::bad("mutability", format!("{attr} is read-only")));
    } else {
        return Err(ScimError::bad(
            "invalidPath",
            format!("a Group has no attribute {attr:?}"),
        ));
    }
    Ok(())
}

/// `members` operations: add (`value` lists users), replace (the members become exactly
/// them), remove (all of them; those `value` lists, as Entra sends; or those a filter such as
/// `members[value eq "<id>"]` names).
async fn member_commands(
    state: &AppState,
    tenant: TenantId,
    group: &Group,
    path: &PatchPath,
    op: &Operation,
    out: &mut Vec<Command>,
) -> ScimResult<()> {
    let target = GroupRef::Id(group.id);
    if path.attr.sub.is_some() {
        return Err(ScimError::bad(
            "mutability",
            "a member's attributes cannot change: add or remove the member",
        ));
    }
    if let Some(f) = &path.filter {
        if op.kind != Kind::Remove {
            return Err(ScimError::bad(
                "invalidPath",
                "a members filter is only for remove; add or replace members by value",
            ));
        }
        let mut ids = Vec::new();
        filtered_ids(f, &mut ids)?;
        for id in ids {
            // A filter naming no member removes nothing (RFC 7644 §3.5.2.2 leaves this to the
            // server; identity providers retry removals).
            if let Ok(user) = member_ref(state, tenant, &json!({ "value": id })).await {
                out.push(Command::RemoveGroupMember {
                    group: target.clone(),
                    user,
                });
            }
        }
        return Ok(());
    }
    match op.kind {
        Kind::Add => {
            let value = op.value.clone().unwrap_or(Value::Null);
            for user in member_refs(state, tenant, &value).await? {
                out.push(Command::AddGroupMember {
                    group: target.clone(),
                    user,
                });
            }
        }
        Kind::Replace => {
            let value = op.value.clone().unwrap_or(Value::Null);
            out.push(Command::SetGroupMembers {
                group: target,
                users: member_refs(state, tenant, &value).await?,
            });
        }
        Kind::Remove => match op.value.as_ref().filter(|v| !v.is_null()) {
            Some(value) => {
                for user in member_refs(state, tenant, value).await? {
                    out.push(Command::RemoveGroupMember {
                        group: target.clone(),
                        user,
                    });
                }
            }
            None => out.push(Command::SetGroupMembers {
                group: target,
                users: Vec::new(),
            }),
        },
    }
    Ok(())
}

/// The member ids a remove filter names: `value eq "<id>"`, joined by `or`.
fn filtered_ids(f: &Filter, out: &mut Vec<String>) -> ScimResult<()> {
    match f {
        Filter::Compare(path, filter::Op::Eq, Value::String(id))
            if path.sub.is_none() && path.attr.eq_ignore_ascii_case("value") =>
        {
            out.push(id.clone());
            Ok(())
        }
        Filter::Or(a, b) => {
            filtered_ids(a, out)?;
            filtered_ids(b, out)
        }
        _ => Err(ScimError::bad(
            "invalidFilter",
            "remove members by value: members[value eq \"<user id>\"]",
        )),
    }
}

pub(super) async fn list_groups(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    list(&state, &caller, &headers, &query).await
}

pub(super) async fn search_groups(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = read_body(&headers, &body).await?;
    let query = super::search_query(&body)?;
    list(&state, &caller, &headers, &query).await
}

/// Lists groups: a filter on `id`, `displayName` or `externalId` equality reads only the
/// groups those indexed lookups find; other filters are tested on every group, a ledger page at
/// a time. Either way the whole filter decides.
pub(super) async fn list(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    query: &ListQuery,
) -> ScimResult<Response> {
    let (start, count) = super::paging(query)?;
    let (total, items) = page(state, caller, headers, query, start, count).await?;
    Ok(super::list_answer(total, start, items))
}

/// The groups matching the query's filter: how many, and the page from `start` of `count`.
pub(super) async fn page(
    state: &AppState,
    caller: &ScimCaller,
    headers: &HeaderMap,
    query: &ListQuery,
    start: usize,
    count: usize,
) -> ScimResult<(usize, Vec<Value>)> {
    let filter = super::parse_list_filter(query)?;
    let base = base_url(state, headers);
    // Members are needed to show them, or to test a filter that names them.
    let members_needed =
        wants_members(query) || filter.as_ref().is_some_and(|f| f.names("members"));
    let keys = filter
        .as_ref()
        .and_then(|f| super::lookup_keys(f, "displayName"));
    let mut matched: Vec<Value> = Vec::new();
    let mut total = 0usize;
    let mut after = None;
    loop {
        let page: Vec<Group> = match &keys {
            Some(keys) => {
                let mut found = Vec::new();
                for key in keys {
                    found.extend(lookup(state, caller.tenant, key).await?);
                }
                found.sort_by_key(|g| g.id);
                found.dedup_by_key(|g| g.id);
                found
            }
            None => {
                state
                    .ledger
                    .groups(caller.tenant, after, Some(MAX_COUNT as i64))
                    .await?
            }
        };
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            break;
        };
        after = Some(last.id);
        let mut members: std::collections::HashMap<i64, Vec<Uuid>> = Default::default();
        if members_needed {
            for (group, user) in state
                .ledger
                .group_member_uuids(caller.tenant, first.id, last.id)
                .await?
            {
                members.entry(group).or_default().push(user);
            }
        }
        for group in &page {
            let list =
                members_needed.then(|| members.get(&group.id).map(Vec::as_slice).unwrap_or(&[]));
            let json = group_json(group, list, &base);
            if filter.as_ref().is_none_or(|f| f.matches(&json)) {
                total += 1;
                if total >= start && matched.len() < count {
                    let mut json = json;
                    if !wants_members(query)
                        && let Some(o) = json.as_object_mut()
                    {
                        o.remove("members");
                    }
                    matched.push(project(json, query)?);
                }
            }
        }
        if keys.is_some() || page.len() < MAX_COUNT {
            break;
        }
    }
    Ok((total, matched))
}

async fn lookup(
    state: &AppState,
    tenant: TenantId,
    key: &super::LookupKey,
) -> ScimResult<Vec<Group>> {
    let one = |r: Result<Group, LedgerError>| -> ScimResult<Vec<Group>> {
        match r {
            Ok(g) => Ok(vec![g]),
            Err(LedgerError::UnknownGroup(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    };
    match key {
        super::LookupKey::Id(id) => match Uuid::parse_str(id) {
            Ok(uuid) => one(state.ledger.group(tenant, &GroupRef::Uuid(uuid)).await),
            Err(_) => Ok(Vec::new()),
        },
        super::LookupKey::Name(name) => one(state
            .ledger
            .group(tenant, &GroupRef::Name(name.clone()))
            .await),
        super::LookupKey::External(external) => {
            Ok(state.ledger.groups_by_external_id(tenant, external).await?)
        }
    }
}
