//! SCIM 2.0 at `/scim/v2` against the real binary, on SQLite and PostgreSQL: scim2-tester (PyPI,
//! pinned) runs every check it has; requests recorded from Okta's and Microsoft Entra ID's
//! published SCIM examples replay in their own shapes; a scim token reaches nothing else and
//! other roles do not reach /scim.

use allot_ledger::testing as common;
use serde_json::{Value, json};

use crate::server::{Server, python};

const PASSWORD: &str = "scim-admin-password";
const SCIM: &str = "application/scim+json";

struct Scim {
    url: String,
    token: String,
    admin: String,
    http: reqwest::Client,
}

impl Scim {
    async fn new(server: &Server) -> Scim {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{}/v1/auth/login", server.url))
            .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin = login["token"].as_str().unwrap().to_owned();
        let r = http
            .post(format!("{}/v1/tokens", server.url))
            .bearer_auth(&admin)
            .json(&json!({ "role": "scim", "label": "identity provider" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Scim {
            url: server.url.clone(),
            token,
            admin,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.header("content-type", SCIM).body(body.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        if status != 204 {
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert_eq!(ct, SCIM, "{path}");
        }
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Okta's "Create a user" and "Update a specific user (PATCH)" requests (Okta SCIM 2.0 guide):
/// a lookup by userName first, then POST, then PATCH replace with a value object and no path.
async fn okta(s: &Scim) {
    use reqwest::Method;
    let (status, found) = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!((status, found["totalResults"].clone()), (200, json!(0)));
    let (status, user) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "test.user@okta.local",
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
                "displayName": "Test User",
                "locale": "en-US",
                "externalId": "00ujl29u0le5T6Aj10h7",
                "groups": [],
                "password": "1mz050nq",
                "active": true
            })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["userName"], "test.user@okta.local");
    assert_eq!(user["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_eq!(user["emails"], json!([{"value": "test.user@okta.local"}]));
    assert_eq!(user["meta"]["resourceType"], "User");
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, again) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "TEST.USER@okta.local"})),
        )
        .await;
    assert_eq!(
        (status, again["scimType"].clone(), again["status"].clone()),
        (409, json!("uniqueness"), json!("409"))
    );
    let (status, found) = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22test.user%40okta.local%22",
            None,
        )
        .await;
    assert_eq!(
        (status, found["Resources"][0]["id"].clone()),
        (200, json!(id))
    );
    let (status, patched) = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"name": {"givenName": "Another", "familyName": "User"}, "displayName": "Another User"}}]
            })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["name"],
        json!({"givenName": "Another", "familyName": "User"})
    );
    assert_eq!(patched["displayName"], "Another User");
    // Okta's deactivation: the user is disabled (kept, login refused), then enabled again.
    for active in [false, true] {
        let (status, changed) = s
            .call(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": active}}]
                })),
            )
            .await;
        assert_eq!(
            (status, changed["active"].clone()),
            (200, json!(active)),
            "{changed}"
        );
        let (_, now) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(now["active"], json!(active));
        let user: Value = s
            .http
            .get(format!("{}/v1/users/{id}", s.url))
            .bearer_auth(&s.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(user["disabled"], json!(!active), "{user}");
    }
}

/// Microsoft Entra ID's provisioning requests (its SCIM 2.0 protocol compliance document):
/// lookup by userName, POST with the enterprise shape, PATCH `"op": "Replace"` with paths,
/// `emails[type eq "work"].value`, and DELETE.
async fn entra(s: &Scim) {
    use reqwest::Method;
    let (status, none) = s
        .call(
            Method::GET,
            "/Users?filter=userName+eq+%22Test_User_dfeef4c5-5681-4387-b016-bdf221e82081%22",
            None,
        )
        .await;
    assert_eq!((status, none["totalResults"].clone()), (200, json!(0)));
    let (status, user) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": []
            })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, patched) = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                    {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                    {"op": "Add", "path": "displayName", "value": "Updated Display"},
                    {"op": "Replace", "path": "active", "value": "True"}
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["emails"],
        json!([{"value": "updatedEmail@microsoft.com"}])
    );
    assert_eq!(patched["name"]["familyName"], "updatedFamilyName");
    assert_eq!(patched["displayName"], "Updated Display");
    let (status, refused) = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
            })),
        )
        .await;
    assert_eq!(
        (status, refused["active"].clone()),
        (200, json!(false)),
        "{refused}"
    );
    let (status, found) = s
        .call(Method::GET, "/Users?filter=externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22+and+name.familyName+sw+%22updated%22", None)
        .await;
    assert_eq!((status, found["totalResults"].clone()), (200, json!(1)));
    let (status, bad) = s.call(Method::GET, "/Users?filter=userName+eq", None).await;
    assert_eq!(
        (status, bad["scimType"].clone()),
        (400, json!("invalidFilter"))
    );
    let (status, _) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, gone) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!((status, gone["status"].clone()), (404, json!("404")));
    let (status, _) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(status, 404);
}

impl Scim {
    async fn admin_call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A SCIM user made for the group tests; answers its SCIM id.
    async fn user(&self, login: &str) -> String {
        let (status, user) = self
            .call(
                reqwest::Method::POST,
                "/Users",
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": login})),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_str().unwrap().to_owned()
    }

    /// Whether the user (by login) holds a seat of the product.
    async fn holds(&self, login: &str, product: &str) -> bool {
        let r = self
            .http
            .get(format!("{}/v1/users/{login}/licenses", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body.as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .any(|l| l["product"]["name"] == product && l["assigned"] == true)
    }

    /// A group's members (their SCIM ids), sorted.
    async fn members(&self, group: &str) -> Vec<String> {
        let (status, g) = self
            .call(reqwest::Method::GET, &format!("/Groups/{group}"), None)
            .await;
        assert_eq!(status, 200, "{g}");
        let mut ids: Vec<String> = g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

fn patch_op(ops: Value) -> Option<Value> {
    Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}))
}

/// Okta's group push (Okta SCIM 2.0 guide, "Create a group", "Update a group name", "Add/remove
/// group members"): a lookup by displayName, POST with no members, PATCH replace of the name
/// with the group's id in the value, PATCH add and remove of members. The group's license
/// follows membership.
async fn okta_groups(s: &Scim) {
    use reqwest::Method;
    let (status, product) = s
        .admin_call(
            Method::POST,
            "/v1/products",
            json!({"owner": "SuperOffice", "name": "okta-crm", "seats": 2}),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let ann = s.user("okta.ann@example.com").await;
    let bob = s.user("okta.bob@example.com").await;
    let (status, found) = s
        .call(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!((status, found["totalResults"].clone()), (200, json!(0)));
    let (status, group) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(group["meta"]["resourceType"], "Group");
    let id = group["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("/v1/groups/{id}/licenses"),
            json!({"product": "SuperOffice/okta-crm"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, renamed) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(
                json!([{"op": "replace", "value": {"id": id, "displayName": "Another Name"}}]),
            ),
        )
        .await;
    assert_eq!(
        (status, renamed["displayName"].clone()),
        (200, json!("Another Name")),
        "{renamed}"
    );
    let (status, added) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": ann, "display": "okta.ann@example.com"}, {"value": bob, "display": "okta.bob@example.com"}]}])),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert!(s.holds("okta.ann@example.com", "okta-crm").await);
    assert!(s.holds("okta.bob@example.com", "okta-crm").await);
    let (status, removed) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{ann}\"]")}])),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert!(!s.holds("okta.ann@example.com", "okta-crm").await);
    assert!(s.holds("okta.bob@example.com", "okta-crm").await);
    assert_eq!(s.members(&id).await, std::slice::from_ref(&bob));
    // Okta's replace of the whole member list.
    let (status, replaced) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([{"op": "replace", "path": "members", "value": [{"value": ann}]}])),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert!(s.holds("okta.ann@example.com", "okta-crm").await);
    assert!(!s.holds("okta.bob@example.com", "okta-crm").await);
    // Found by displayName (any case) and by excludedAttributes without members.
    let (status, found) = s
        .call(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22another%20name%22&excludedAttributes=members",
            None,
        )
        .await;
    assert_eq!(
        (status, found["totalResults"].clone()),
        (200, json!(1)),
        "{found}"
    );
    assert_eq!(found["Resources"][0]["id"], json!(id));
    assert!(found["Resources"][0].get("members").is_none(), "{found}");
    // A group deleted takes its seats along.
    let (status, _) = s.call(Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_eq!(status, 204);
    assert!(!s.holds("okta.ann@example.com", "okta-crm").await);
    let (status, gone) = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!((status, gone["status"].clone()), (404, json!("404")));
}

/// Microsoft Entra ID's group provisioning (its SCIM validator's requests): POST with
/// externalId, lookups by externalId and displayName, PATCH "Add"/"Remove" of members (by
/// value list and by path filter), "Replace" of displayName; several operations in one PATCH
/// apply all or nothing.
async fn entra_groups(s: &Scim) {
    use reqwest::Method;
    let (status, product) = s
        .admin_call(
            Method::POST,
            "/v1/products",
            json!({"owner": "SuperOffice", "name": "entra-crm", "seats": 1}),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let ann = s.user("entra.ann@example.com").await;
    let bob = s.user("entra.bob@example.com").await;
    let (status, group) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Group1DisplayName",
                "meta": {"resourceType": "Group"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(group["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    let id = group["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("/v1/groups/{id}/licenses"),
            json!({"product": "SuperOffice/entra-crm"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, again) = s
        .call(Method::POST, "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "group1displayname"})))
        .await;
    assert_eq!(
        (status, again["scimType"].clone()),
        (409, json!("uniqueness")),
        "{again}"
    );
    let (status, found) = s
        .call(Method::GET, "/Groups?excludedAttributes=members&filter=externalId+eq+%228aa1a0c0-c4c3-4bc0-b4a5-2ef676900159%22", None)
        .await;
    assert_eq!(
        (status, found["totalResults"].clone()),
        (200, json!(1)),
        "{found}"
    );
    let (status, found) = s
        .call(
            Method::GET,
            "/Groups?filter=displayName+eq+%22Group1DisplayName%22+or+externalId+eq+%22nothing%22",
            None,
        )
        .await;
    assert_eq!(
        (status, found["totalResults"].clone()),
        (200, json!(1)),
        "{found}"
    );
    // Add both: one seat, so ann (first) holds it and bob waits.
    for member in [&ann, &bob] {
        let (status, body) = s
            .call(
                Method::PATCH,
                &format!("/Groups/{id}"),
                patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": member}]}])),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(s.holds("entra.ann@example.com", "entra-crm").await);
    assert!(!s.holds("entra.bob@example.com", "entra-crm").await);
    let (status, found) = s
        .call(
            Method::GET,
            &format!("/Groups?filter=members+eq+%22{bob}%22"),
            None,
        )
        .await;
    assert_eq!(
        (status, found["totalResults"].clone()),
        (200, json!(1)),
        "{found}"
    );
    // Remove ann by value list: her seat goes to bob, who was waiting.
    let (status, body) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": ann}]}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!s.holds("entra.ann@example.com", "entra-crm").await);
    assert!(s.holds("entra.bob@example.com", "entra-crm").await);
    // A PATCH whose last operation names an unknown user changes nothing at all.
    let (status, refused) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([
                {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"},
                {"op": "Remove", "path": format!("members[value eq \"{bob}\"]")},
                {"op": "Add", "path": "members", "value": [{"value": "00000000-0000-0000-0000-000000000000"}]}
            ])),
        )
        .await;
    assert_eq!(
        (status, refused["scimType"].clone()),
        (400, json!("invalidValue")),
        "{refused}"
    );
    assert!(s.holds("entra.bob@example.com", "entra-crm").await);
    let (_, unchanged) = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!(unchanged["displayName"], "Group1DisplayName");
    // The same without the bad operation applies whole.
    let (status, changed) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([
                {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"},
                {"op": "Remove", "path": format!("members[value eq \"{bob}\"]")}
            ])),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    assert!(changed.get("members").is_none(), "{changed}");
    assert!(!s.holds("entra.bob@example.com", "entra-crm").await);
    // Bad requests answer in SCIM's shape.
    let (status, bad) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{id}"),
            patch_op(json!([{"op": "Remove", "path": "displayName"}])),
        )
        .await;
    assert_eq!(
        (status, bad["scimType"].clone()),
        (400, json!("invalidValue")),
        "{bad}"
    );
    let (status, bad) = s
        .call(Method::PATCH, &format!("/Groups/{id}"), patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": id, "type": "Group"}]}])))
        .await;
    assert_eq!(
        (status, bad["scimType"].clone()),
        (400, json!("invalidValue")),
        "{bad}"
    );
    let (status, bad) = s
        .call(
            Method::PATCH,
            "/Groups/not-a-group",
            patch_op(json!([{"op": "Remove", "path": "members"}])),
        )
        .await;
    assert_eq!(
        (status, bad["status"].clone()),
        (404, json!("404")),
        "{bad}"
    );
}

/// A scim token reaches only /scim/v2; an admin token does not reach /scim/v2.
async fn roles(s: &Scim) {
    let r = s
        .http
        .get(format!("{}/v1/users", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .get(format!("{}/scim/v2/Users", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "403");
    let r = s
        .http
        .get(format!("{}/scim/v2/Users", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The changes are audited under the identity provider's token.
    let audit: Value = s
        .http
        .get(format!("{}/v1/audit?limit=1000", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scim_actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("scim:")))
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(scim_actions.contains(&"user.create"), "{scim_actions:?}");
    assert!(scim_actions.contains(&"user.edit"), "{scim_actions:?}");
}

/// scim2-tester's every check; returns its closing line.
async fn conformance(s: &Scim) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join("scim_tester.py");
    let (url, token) = (s.url.clone(), s.token.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(script)
            .args([&url, &token])
            .output()
            .expect("run scim2-tester")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "scim2-tester failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_owned()
}

async fn whole(db: &str) {
    let server = Server::start(db, Some(PASSWORD)).await;
    let s = Scim::new(&server).await;
    okta(&s).await;
    entra(&s).await;
    okta_groups(&s).await;
    entra_groups(&s).await;
    roles(&s).await;
    conformance(&s).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    whole(&format!(
        "sqlite://{}",
        dir.path().join("allot.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_on_postgres() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    whole(&db.url()).await;
    db.drop_db().await;
}
