//! Discovery (RFC 7644 §4): what this server supports, and the User schema it keeps. The schema
//! names only the attributes allot stores, so every attribute a client writes reads back.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

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

pub async fn service_provider_config(_caller: ScimCaller, headers: HeaderMap) -> Response {
    let base = base_url(&headers);
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

pub async fn resource_types(_caller: ScimCaller, headers: HeaderMap) -> Response {
    scim_json(
        StatusCode::OK,
        &list(vec![user_resource_type(&base_url(&headers))]),
    )
}

pub async fn resource_type(
    _caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    if id == "User" {
        Ok(scim_json(
            StatusCode::OK,
            &user_resource_type(&base_url(&headers)),
        ))
    } else {
        Err(ScimError::not_found(&id))
    }
}

pub async fn schemas(
    State(_state): State<AppState>,
    _caller: ScimCaller,
    headers: HeaderMap,
) -> Response {
    scim_json(
        StatusCode::OK,
        &list(vec![user_schema(&base_url(&headers))]),
    )
}

pub async fn schema(
    _caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    if id == USER_SCHEMA {
        Ok(scim_json(StatusCode::OK, &user_schema(&base_url(&headers))))
    } else {
        Err(ScimError::not_found(&id))
    }
}
