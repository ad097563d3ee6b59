//! Discovery (RFC 7644 §4): what this server supports, and the User and Group schemas it keeps.
//! The schemas name only the attributes allot stores, so every attribute a client writes reads
//! back.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::groups::GROUP_SCHEMA;
use super::{LIST_SCHEMA, ScimCaller, ScimError, ScimResult, USER_SCHEMA, base_url, scim_json};
use crate::state::AppState;

fn attribute(name: &str, kind: &str, extra: Value) -> Value {
    let mut a = json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": "",
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    });
    if let (Some(a), Value::Object(extra)) = (a.as_object_mut(), extra) {
        a.extend(extra);
    }
    a
}

fn user_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A user of the tenant's licenses",
        "attributes": [
            attribute("userName", "string", json!({
                "required": true, "uniqueness": "server",
                "description": "The allot login (unique in the tenant, case-insensitive)",
            })),
            attribute("name", "complex", json!({
                "description": "The user's name",
                "subAttributes": [
                    attribute("givenName", "string", json!({})),
                    attribute("familyName", "string", json!({})),
                ],
            })),
            attribute("displayName", "string", json!({})),
            attribute("emails", "complex", json!({
                "multiValued": true,
                "description": "One e-mail is kept: the primary one, else the work one, else the first",
                "subAttributes": [attribute("value", "string", json!({}))],
            })),
            // Always has a value (a user is active unless disabled), so it cannot be removed.
            attribute("active", "boolean", json!({"required": true})),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")},
    })
}

fn group_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "A group of users: every member holds a seat of each of its licenses",
        "attributes": [
            attribute("displayName", "string", json!({
                "required": true, "uniqueness": "server",
                "description": "The group's name (unique in the tenant, case-insensitive)",
            })),
            attribute("members", "complex", json!({
                "multiValued": true,
                "description": "The users in the group (no nested groups)",
                "subAttributes": [
                    attribute("value", "string", json!({
                        "mutability": "immutable", "caseExact": true,
                        "description": "The member's SCIM id",
                    })),
                    attribute("$ref", "reference", json!({
                        "mutability": "immutable", "referenceTypes": ["User"],
                        "description": "The member's URI",
                    })),
                    attribute("type", "string", json!({
                        "mutability": "immutable", "canonicalValues": ["User"],
                        "description": "Always User",
                    })),
                ],
            })),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_SCHEMA}")},
    })
}

fn group_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Group",
        "schema": GROUP_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
    })
}

fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub async fn service_provider_config(
    State(state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&state, &headers);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/allot/allot/blob/main/docs/scim.md",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": super::MAX_COUNT},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token of the role scim: POST /v1/tokens {\"role\": \"scim\"}",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
    )
}

pub async fn resource_types(
    State(state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&state, &headers);
    scim_json(
        StatusCode::OK,
        &list(vec![user_resource_type(&base), group_resource_type(&base)]),
    )
}

pub async fn resource_type(
    State(state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let base = base_url(&state, &headers);
    match id.as_str() {
        "User" => Ok(scim_json(StatusCode::OK, &user_resource_type(&base))),
        "Group" => Ok(scim_json(StatusCode::OK, &group_resource_type(&base))),
        _ => Err(ScimError::not_found(&id)),
    }
}

pub async fn schemas(
    State(state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&state, &headers);
    scim_json(
        StatusCode::OK,
        &list(vec![user_schema(&base), group_schema(&base)]),
    )
}

pub async fn schema(
    State(state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let base = base_url(&state, &headers);
    match id.as_str() {
        USER_SCHEMA => Ok(scim_json(StatusCode::OK, &user_schema(&base))),
        GROUP_SCHEMA => Ok(scim_json(StatusCode::OK, &group_schema(&base))),
        _ => Err(ScimError::not_found(&id)),
    }
}
