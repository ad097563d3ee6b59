//! The SuperOffice NetServer dialect: the seed pages' examples byte for byte, REST and SOAP
//! behaviour on both stores (in-process), snapshots of the WSDLs and of each response shape per
//! version, hostile input, and real clients (Python zeep and requests) against the real binary.

use allot_ledger::testing as common;

use crate::server::{Server, run_python};
use allot::auth::Passwords;
use allot::config::{Secret, Settings};
use allot::server::{app, bootstrap};
use allot::state::AppState;
use allot_ledger::*;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::TestDb;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "correct horse battery";
/// The seed page's `Authorization: Basic dGplMDpUamUw` is `tje0:Tje0`.
const SEED_BASIC: &str = "Basic dGplMDpUamUw";
const ASSOCIATE: i64 = 326;
const OTHER: i64 = 327;
const MODULE_A: &str = "Watsica-Kirlin";
const MODULE_B: &str = "Jakubowski, Baumbach and Maggio";

/// The seed request of POST Agents/License/UnassignThirdPartyLicenses, as printed.
const SEED_UNASSIGN_BODY: &str = "{\n  \"AssociateId\": 326,\n  \"ModuleOwner\": \"saepe\",\n  \"ModuleLicenseNames\": [\n    \"Watsica-Kirlin\",\n    \"Jakubowski, Baumbach and Maggio\"\n  ]\n}";

/// The seed request of Services75 User.RemoveLicenses, as printed (ticket and id substituted).
const SEED_REMOVE_LICENSES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope
 xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:SOAP-ENC="http://www.w3.org/2003/05/soap-encoding"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:NetServerServices752="http://schemas.microsoft.com/2003/10/Serialization/Arrays"
 xmlns:NetServerServices751="http://schemas.microsoft.com/2003/10/Serialization/"
 xmlns:User="http://www.superoffice.net/ws/crm/NetServer/Services75">
  <User:ApplicationToken>1234567-1234-9876</User:ApplicationToken>
  <User:Credentials>
    <User:Ticket>TICKET</User:Ticket>
  </User:Credentials>
 <SOAP-ENV:Body>
   <User:RemoveLicenses>
    <User:AssociateId xsi:type="xsd:int">ASSOCIATE</User:AssociateId>
   </User:RemoveLicenses>

 </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"#;

/// The seed request of Services86 Associate.LogOffWindowsUsers, as printed (ticket and id
/// substituted).
const SEED_LOG_OFF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope
 xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:SOAP-ENC="http://www.w3.org/2003/05/soap-encoding"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:NetServerServices862="http://schemas.microsoft.com/2003/10/Serialization/Arrays"
 xmlns:NetServerServices861="http://schemas.microsoft.com/2003/10/Serialization/"
 xmlns:Associate="http://www.superoffice.net/ws/crm/NetServer/Services86">
  <Associate:ApplicationToken>1234567-1234-9876</Associate:ApplicationToken>
  <Associate:Credentials>
    <Associate:Ticket>TICKET</Associate:Ticket>
  </Associate:Credentials>
 <SOAP-ENV:Body>
   <Associate:LogOffWindowsUsers>
    <Associate:AssociateIds xsi:type="NetServerServices862:ArrayOfint">
     <NetServerServices862:int xsi:type="xsd:int">ASSOCIATE</NetServerServices862:int>
    </Associate:AssociateIds>
   </Associate:LogOffWindowsUsers>

 </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"#;

/// The seed page's login `tje0` (password `Tje0`, shorter than allot's own minimum, so hashed
/// here directly the way the server hashes).
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string()
}

/// Products, users and logins of the tests: third-party owner `saepe` with the seed's two
/// modules, SuperOffice's own `user` and `web`, associates 326 (login tje0) and 327.
async fn populate(ledger: &Ledger, tenant: TenantId) {
    let ctx = Context::new(tenant, "test");
    let mut a = NewProduct::user("saepe", MODULE_A, 2);
    a.tooltip = "A third-party module".into();
    let mut b = NewProduct::user("saepe", MODULE_B, 1);
    b.unrestricted = true;
    b.sort_order = 2;
    let so_user = NewProduct::user("SuperOffice", "user", 5);
    let mut web = NewProduct::user("SuperOffice", "web", 5);
    web.prerequisite = Some(ProductRef::named("SuperOffice", "user"));
    let mut tje0 = NewUser::named("tje0");
    tje0.id = Some(ASSOCIATE);
    tje0.first_name = "Tje".into();
    let mut other = NewUser::named("other");
    other.id = Some(OTHER);
    let commands = vec![
        Command::CreateProduct(a),
        Command::CreateProduct(b),
        Command::CreateProduct(so_user),
        Command::CreateProduct(web),
        Command::CreateUser(tje0),
        Command::CreateUser(other),
        Command::CreateLogin {
            login: "tje0".into(),
            password_hash: argon2_hash("Tje0"),
            role: Role::Admin,
            user: Some(UserRef::Id(ASSOCIATE)),
        },
        Command::CreateLogin {
            login: "other".into(),
            password_hash: argon2_hash("other-password"),
            role: Role::User,
            user: Some(UserRef::Id(OTHER)),
        },
        Command::Assign {
            user: UserRef::Id(ASSOCIATE),
            product: ProductRef::named("SuperOffice", "user"),
        },
        Command::Assign {
            user: UserRef::Id(ASSOCIATE),
            product: ProductRef::named("SuperOffice", "web"),
        },
        Command::Assign {
            user: UserRef::Id(ASSOCIATE),
            product: ProductRef::named("saepe", MODULE_A),
        },
        Command::Assign {
            user: UserRef::Id(ASSOCIATE),
            product: ProductRef::named("saepe", MODULE_B),
        },
    ];
    ledger
        .apply_all_or_nothing(&ctx, &commands)
        .await
        .expect("test data");
}

struct So {
    router: Router,
    state: AppState,
    ledger: Ledger,
    tenant: TenantId,
    db: TestDb,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl So {
    async fn new(db: TestDb) -> So {
        So::with(db, |_| {}).await
    }

    async fn with(db: TestDb, tune: impl FnOnce(&mut Settings)) -> So {
        let mut settings = Settings {
            db: Secret::new(db.url()),
            admin_password: Some(Secret::new(ADMIN_PASSWORD)),
            metrics_listen: None,
            rate_limit: 0,
            ..Settings::default()
        };
        tune(&mut settings);
        let ledger = Ledger::open(&db.url()).await.unwrap();
        let state = AppState::new(ledger.clone(), settings);
        bootstrap(&state).await.unwrap();
        let tenant = ledger.tenant("default").await.unwrap().unwrap().id;
        populate(&ledger, tenant).await;
        So {
            router: app(state.clone()),
            state,
            ledger,
            tenant,
            db,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut req = Request::post(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// A JSON agent call as the seed page's admin `tje0`.
    async fn agent(&self, path: &str, body: &str) -> Reply {
        self.agent_as(SEED_BASIC, path, body).await
    }

    /// A JSON agent call with the given `Authorization`.
    async fn agent_as(&self, authorization: &str, path: &str, body: &str) -> Reply {
        self.post(
            &format!("/api/v1/Agents/{path}"),
            &[
                ("authorization", authorization),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// A ticket from SoPrincipal (Services`version`) for `login`.
    async fn ticket(&self, version: u8, login: &str, password: &str) -> String {
        let envelope = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services{version}\">\
             <UserName>{login}</UserName><Password>{password}</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>"
        );
        let reply = self.soap(version, "SoPrincipal", &envelope).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let doc = allot::xml::parse(&reply.text).unwrap();
        let response = doc
            .child("Body")
            .unwrap()
            .child("AuthenticateResponse")
            .unwrap();
        assert_eq!(
            response.child("AuthenticationSucceeded").unwrap().value(),
            "true",
            "{}",
            reply.text
        );
        response
            .child("Credentials")
            .unwrap()
            .child("Ticket")
            .unwrap()
            .value()
            .to_owned()
    }

    async fn soap(&self, version: u8, service: &str, envelope: &str) -> Reply {
        let content_type = if envelope.contains("http://www.w3.org/2003/05/soap-envelope") {
            "application/soap+xml; charset=utf-8"
        } else {
            "text/xml; charset=utf-8"
        };
        self.post(
            &format!("/Remote/Services{version}/{service}.svc"),
            &[("content-type", content_type)],
            envelope,
        )
        .await
    }

    async fn holds(&self, user: i64, owner: &str, module: &str) -> bool {
        self.ledger
            .user_view(self.tenant, &UserRef::Id(user))
            .await
            .unwrap()
            .iter()
            .any(|v| v.assigned && v.product.owner == owner && v.product.name == module)
    }

    async fn in_use(&self, owner: &str, module: &str) -> i64 {
        let product = self
            .ledger
            .product(self.tenant, &ProductRef::named(owner, module))
            .await
            .unwrap();
        self.ledger
            .pool_status(self.tenant, Some(product.id))
            .await
            .unwrap()[0]
            .in_use
    }

    async fn finish(self) {
        let violations = self.ledger.check_invariants(self.tenant).await.unwrap();
        assert!(violations.is_empty(), "{violations:?}");
        // Whatever came before, the server still answers.
        let health = self.get("/healthz", &[]).await;
        assert_eq!(health.status, StatusCode::OK);
        self.ledger.close().await;
        self.db.drop_db().await;
    }
}

/// Runs a test body on SQLite and (in CI always) on PostgreSQL.
macro_rules! both_stores {
    ($($name:ident => $body:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$body(super::TestDb::sqlite()).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(db) = super::TestDb::postgres().await {
                    super::$body(db).await;
                }
            })+
        }
    };
}

both_stores! {
    seed_rest_unassign_third_party_licenses => seed_rest_unassign,
    seed_soap_services75_remove_licenses => seed_soap_remove_licenses,
    seed_soap_services86_log_off_windows_users => seed_soap_log_off,
    rest_agents_and_restful_routes => rest_agents,
    soap_third_party_per_version => soap_third_party,
    remove_license_from_db => remove_license_from_db,
    retired_users_lose_every_credential => retired_users_lose_every_credential,
    group_held_licenses_show_as_assigned => group_held_licenses_show_as_assigned,
}

/// The `Assigned` of the module named `name` anywhere in a SuperOffice answer.
fn assigned_in(answer: &Value, name: &str) -> Option<bool> {
    match answer {
        Value::Object(map) if map.get("Name").and_then(Value::as_str) == Some(name) => {
            map.get("Assigned").and_then(Value::as_bool)
        }
        Value::Object(map) => map.values().find_map(|v| assigned_in(v, name)),
        Value::Array(items) => items.iter().find_map(|v| assigned_in(v, name)),
        _ => None,
    }
}

/// A license held through a group is assigned as far as SuperOffice clients can tell (the
/// dialect reads the same view), and goes when the membership does.
async fn group_held_licenses_show_as_assigned(db: TestDb) {
    let so = So::new(db).await;
    let ctx = Context::new(so.tenant, "test");
    let body = format!("{{\"AssociateId\": {OTHER}}}");
    let before = so.agent("License/GetUserLicenses", &body).await.json();
    assert_eq!(assigned_in(&before, MODULE_A), Some(false), "{before}");
    let group = match so
        .ledger
        .execute(
            &ctx,
            Command::CreateGroup {
                name: "team".into(),
                uuid: None,
                external_id: None,
            },
        )
        .await
        .unwrap()
    {
        Outcome::Group(g) => g,
        other => panic!("{other:?}"),
    };
    for command in [
        Command::AddGroupLicense {
            group: GroupRef::Id(group.id),
            product: ProductRef::named("saepe", MODULE_A),
        },
        Command::AddGroupMember {
            group: GroupRef::Id(group.id),
            user: UserRef::Id(OTHER),
        },
    ] {
        so.ledger.execute(&ctx, command).await.unwrap();
    }
    assert!(so.holds(OTHER, "saepe", MODULE_A).await);
    let after = so.agent("License/GetUserLicenses", &body).await.json();
    assert_eq!(assigned_in(&after, MODULE_A), Some(true), "{after}");
    so.ledger
        .execute(
            &ctx,
            Command::RemoveGroupMember {
                group: GroupRef::Id(group.id),
                user: UserRef::Id(OTHER),
            },
        )
        .await
        .unwrap();
    let gone = so.agent("License/GetUserLicenses", &body).await.json();
    assert_eq!(assigned_in(&gone, MODULE_A), Some(false), "{gone}");
    so.finish().await;
}

async fn seed_rest_unassign(db: TestDb) {
    let so = So::new(db).await;
    assert!(so.holds(ASSOCIATE, "saepe", MODULE_A).await);
    assert_eq!(so.in_use("saepe", MODULE_A).await, 1);
    // The sample request, headers and body exactly as the seed page prints them.
    let reply = so
        .post(
            "/api/v1/Agents/License/UnassignThirdPartyLicenses",
            &[
                ("authorization", SEED_BASIC),
                ("accept", "application/json; charset=utf-8"),
                ("accept-language", "fr,de,ru,zh"),
                ("content-type", "application/json; charset=utf-8"),
            ],
            SEED_UNASSIGN_BODY,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let links = reply.json();
    let links = links.as_array().expect("an array of ModuleLicenseLink");
    assert_eq!(links.len(), 2);
    // serde_json's map sorts keys, so the wire order is checked on the text itself.
    let first = &reply.text[..reply.text.find("},{").unwrap_or(reply.text.len())];
    let order = [
        "Unrestricted",
        "Total",
        "Tooltip",
        "CanAssign",
        "Free",
        "InUse",
        "IsHidden",
        "Assigned",
        "ModuleLicenseId",
        "Name",
        "Description",
        "PrerequisiteModuleName",
        "SortOrder",
        "ExtraFlags",
        "TableRight",
        "FieldProperties",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            first
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "the seed page's field order: {first}"
    );
    for link in links {
        assert_eq!(link["Assigned"], false);
        assert_eq!(
            link["Total"].as_i64().unwrap(),
            link["Free"].as_i64().unwrap() + link["InUse"].as_i64().unwrap()
        );
    }
    let a = links.iter().find(|l| l["Name"] == MODULE_A).unwrap();
    assert_eq!(
        (a["Total"].as_i64(), a["InUse"].as_i64(), a["Free"].as_i64()),
        (Some(2), Some(0), Some(2))
    );
    assert_eq!(a["CanAssign"], true);
    assert!(!so.holds(ASSOCIATE, "saepe", MODULE_A).await);
    assert!(!so.holds(ASSOCIATE, "saepe", MODULE_B).await);
    assert_eq!(so.in_use("saepe", MODULE_A).await, 0);
    // SuperOffice's own licenses were not touched by a third-party call.
    assert!(so.holds(ASSOCIATE, "SuperOffice", "web").await);
    so.finish().await;
}

async fn seed_soap_remove_licenses(db: TestDb) {
    let so = So::new(db).await;
    let ticket = so.ticket(75, "tje0", "Tje0").await;
    assert!(ticket.starts_with("7T:"));
    let envelope = SEED_REMOVE_LICENSES
        .replace("TICKET", &ticket)
        .replace("ASSOCIATE", &ASSOCIATE.to_string());
    let reply = so.soap(75, "User", &envelope).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/soap+xml"),
        "answered in the request's SOAP 1.2"
    );
    let doc = allot::xml::parse(&reply.text).unwrap();
    assert_eq!(
        doc.namespace.as_deref(),
        Some("http://www.w3.org/2003/05/soap-envelope")
    );
    let response = doc
        .child("Body")
        .unwrap()
        .child("RemoveLicensesResponse")
        .unwrap();
    assert_eq!(
        response.namespace.as_deref(),
        Some("http://www.superoffice.net/ws/crm/NetServer/Services75")
    );
    assert!(response.children.is_empty());
    assert_eq!(
        doc.child("Header")
            .unwrap()
            .child("Succeeded")
            .unwrap()
            .value(),
        "true"
    );
    for (owner, module) in [
        ("saepe", MODULE_A),
        ("SuperOffice", "user"),
        ("SuperOffice", "web"),
    ] {
        assert!(
            !so.holds(ASSOCIATE, owner, module).await,
            "{owner}/{module} still held"
        );
    }
    so.finish().await;
}

async fn seed_soap_log_off(db: TestDb) {
    let so = So::new(db).await;
    let ctx = Context::new(so.tenant, "test");
    let lease = match so
        .ledger
        .execute(
            &ctx,
            Command::LogOn {
                user: UserRef::Id(ASSOCIATE),
                client: ClientKind::Windows,
                device: "PC-1".into(),
                product: None,
                lease_seconds: 600,
            },
        )
        .await
        .unwrap()
    {
        Outcome::Lease(lease) => lease,
        other => panic!("{other:?}"),
    };
    let ticket = so.ticket(86, "tje0", "Tje0").await;
    let envelope = SEED_LOG_OFF
        .replace("TICKET", &ticket)
        .replace("ASSOCIATE", &ASSOCIATE.to_string());
    let reply = so.soap(86, "Associate", &envelope).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let doc = allot::xml::parse(&reply.text).unwrap();
    assert!(
        doc.child("Body")
            .unwrap()
            .child("LogOffWindowsUsersResponse")
            .is_some()
    );
    assert_eq!(
        doc.child("Header")
            .unwrap()
            .child("Succeeded")
            .unwrap()
            .value(),
        "true"
    );
    let session = so
        .ledger
        .session(so.tenant, lease.session.id)
        .await
        .unwrap();
    assert!(session.ended_at.is_some());
    assert_eq!(session.end_reason, Some(EndReason::Admin));
    so.finish().await;
}

async fn rest_agents(db: TestDb) {
    let so = So::new(db).await;
    // GET on an agent URL describes the call and changes nothing.
    let before = so
        .ledger
        .audit(so.tenant, &Default::default())
        .await
        .unwrap()
        .len();
    let described = so
        .get("/api/v1/Agents/License/UnassignThirdPartyLicenses", &[])
        .await;
    assert_eq!(described.status, StatusCode::OK);
    assert_eq!(described.json()["Verb"], "POST");
    assert_eq!(
        so.ledger
            .audit(so.tenant, &Default::default())
            .await
            .unwrap()
            .len(),
        before
    );

    // Unknown ids: 200 null. Unbindable input: 400 {Message, MessageDetail}.
    let unknown = so
        .agent("License/GetUserLicenses", "{\"AssociateId\": 999}")
        .await;
    assert_eq!(
        (unknown.status, unknown.text.as_str()),
        (StatusCode::OK, "null")
    );
    let glops = so
        .agent("License/GetUserLicenses", "{\"AssociateId\": \"glops\"}")
        .await;
    assert_eq!(glops.status, StatusCode::BAD_REQUEST);
    assert_eq!(glops.json()["Message"], "The request is invalid.");
    assert!(glops.json()["MessageDetail"].is_string());
    let broken = so
        .agent("License/GetUserLicenses", "{\"AssociateId\": ")
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    let no_method = so.agent("License/NoSuchMethod", "{}").await;
    assert_eq!(no_method.status, StatusCode::NOT_FOUND);
    assert!(
        no_method.json()["Message"]
            .as_str()
            .unwrap()
            .starts_with("No HTTP resource")
    );

    // GetUserLicenses groups by owner and splits restricted from unrestricted.
    let owners = so
        .agent("License/GetUserLicenses", "{\"AssociateId\": 326}")
        .await
        .json();
    let saepe = owners
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["Name"] == "saepe")
        .unwrap();
    assert_eq!(saepe["RestrictedModuleLicenses"][0]["Name"], MODULE_A);
    assert_eq!(saepe["UnrestrictedModuleLicenses"][0]["Name"], MODULE_B);

    // Assign past the restricted limit: associate 327 takes the second seat, then the pool is
    // empty and the module stays unassigned for a third user.
    let assign = |id: i64| {
        format!(
            "{{\"AssociateId\": {id}, \"ModuleOwner\": \"saepe\", \"ModuleLicenseNames\": [\"{MODULE_A}\", \"no such module\"]}}"
        )
    };
    let r = so
        .agent("License/AssignThirdPartyLicenses", &assign(OTHER))
        .await
        .json();
    let a = r
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["Name"] == MODULE_A)
        .unwrap()
        .clone();
    assert_eq!(
        (
            a["Assigned"].clone(),
            a["InUse"].as_i64(),
            a["Free"].as_i64()
        ),
        (Value::Bool(true), Some(2), Some(0))
    );
    so.ledger
        .execute(
            &Context::new(so.tenant, "test"),
            Command::CreateUser({
                let mut u = NewUser::named("third");
                u.id = Some(328);
                u
            }),
        )
        .await
        .unwrap();
    let r = so
        .agent("License/AssignThirdPartyLicenses", &assign(328))
        .await
        .json();
    let a = r
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["Name"] == MODULE_A)
        .unwrap()
        .clone();
    assert_eq!(
        (a["Assigned"].clone(), a["CanAssign"].clone()),
        (Value::Bool(false), Value::Bool(false))
    );
    assert_eq!(so.in_use("saepe", MODULE_A).await, 2);

    // Third-party calls never touch SuperOffice's own modules.
    let so_owner = so
        .agent(
            "License/UnassignThirdPartyLicenses",
            "{\"AssociateId\": 326, \"ModuleOwner\": \"SuperOffice\", \"ModuleLicenseNames\": [\"web\"]}",
        )
        .await;
    assert_eq!(so_owner.text, "null");
    assert!(so.holds(ASSOCIATE, "SuperOffice", "web").await);

    // $select nulls unselected properties (nested paths too) and keeps every key.
    let selected = so
        .agent(
            "License/GetUserLicenses?$select=name,restrictedModuleLicenses/name",
            "{\"AssociateId\": 326}",
        )
        .await
        .json();
    let first = &selected[0];
    assert!(first["Name"].is_string());
    assert!(first["UnrestrictedModuleLicenses"].is_null());
    assert!(first["RestrictedModuleLicenses"][0]["Name"].is_string());
    assert!(first["RestrictedModuleLicenses"][0]["Total"].is_null());
    assert!(first.as_object().unwrap().contains_key("Description"));

    // XML in, XML out; the root is named after the type.
    let xml = so
        .post(
            "/api/v1/Agents/License/GetThirdPartyLicenseAssignments",
            &[
                ("authorization", SEED_BASIC),
                ("content-type", "text/xml"),
                ("accept", "application/xml"),
            ],
            "<GetThirdPartyLicenseAssignments><AssociateId>326</AssociateId><ModuleOwner>saepe</ModuleOwner></GetThirdPartyLicenseAssignments>",
        )
        .await;
    assert_eq!(xml.status, StatusCode::OK, "{}", xml.text);
    let doc = allot::xml::parse(&xml.text).unwrap();
    assert_eq!(doc.name, "ArrayOfModuleLicenseLink");
    assert_eq!(doc.children.len(), 2);

    // Void agents: 204. Retire removes every license; un-retire restores none.
    let retired = so
        .agent(
            "User/MakeRetired",
            "{\"AssociateId\": 327, \"Retired\": true}",
        )
        .await;
    assert_eq!(retired.status, StatusCode::NO_CONTENT);
    assert!(!so.holds(OTHER, "saepe", MODULE_A).await);
    let info = so
        .agent("User/GetUserInfo", "{\"UserName\": \"other\"}")
        .await
        .json();
    assert_eq!(
        (info["Deleted"].clone(), info["CanLogon"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let back = so
        .agent(
            "User/MakeRetired",
            "{\"AssociateId\": 327, \"Retired\": false}",
        )
        .await;
    assert_eq!(back.status, StatusCode::NO_CONTENT);
    let removed = so
        .agent("User/RemoveLicenses", "{\"AssociateId\": 326}")
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert!(!so.holds(ASSOCIATE, "SuperOffice", "user").await);
    let logoff = so
        .agent(
            "Associate/LogOffWindowsUsers",
            "{\"AssociateIds\": [326, 99999]}",
        )
        .await;
    assert_eq!(logoff.status, StatusCode::NO_CONTENT);

    // Credentials: none, wrong, a user's own scope, SOTicket in any casing, Bearer, XSRF.
    let none = so
        .post("/api/v1/Agents/License/GetUserLicenses", &[], "{}")
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[("authorization", "Basic dGplMDp3cm9uZw==")],
            "{}",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let garbage = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[("authorization", "Basic !!!")],
            "{}",
        )
        .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let ticket = so.ticket(88, "tje0", "Tje0").await;
    for scheme in ["SOTicket", "soticket", "SOTICKET", "Bearer"] {
        let r = so
            .agent_as(
                &format!("{scheme} {ticket}"),
                "License/GetUserLicenses",
                "{\"AssociateId\": 326}",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.text);
    }
    let cookie = format!("XSRF-TOKEN=abc123; SoTicket={ticket}");
    let xsrf = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[
                ("x-xsrf-token", "abc123"),
                ("cookie", &cookie),
                ("content-type", "application/json"),
            ],
            "{\"AssociateId\": 326}",
        )
        .await;
    assert_eq!(xsrf.status, StatusCode::OK, "{}", xsrf.text);
    let bad_xsrf = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[("x-xsrf-token", "other"), ("cookie", &cookie)],
            "{\"AssociateId\": 326}",
        )
        .await;
    assert_eq!(bad_xsrf.status, StatusCode::UNAUTHORIZED);
    let user_ticket = so.ticket(88, "other", "other-password").await;
    let own = format!("SOTicket {user_ticket}");
    let mine = so
        .agent_as(&own, "License/GetUserLicenses", "{\"AssociateId\": 327}")
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    let theirs = so
        .agent_as(&own, "License/GetUserLicenses", "{\"AssociateId\": 326}")
        .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let change = so
        .agent_as(&own, "User/RemoveLicenses", "{\"AssociateId\": 327}")
        .await;
    assert_eq!(change.status, StatusCode::FORBIDDEN);
    let odd_type = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[("authorization", SEED_BASIC), ("content-type", "image/png")],
            "xx",
        )
        .await;
    assert_eq!(odd_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // RESTful mirrors: License/{owner}/{associateId} vs License/{owner}/{module}.
    let auth = [("authorization", SEED_BASIC)];
    let links = so.get("/api/v1/License/saepe/326", &auth).await;
    assert_eq!(links.status, StatusCode::OK);
    assert!(links.json().is_array());
    let module = so
        .get(&format!("/api/v1/License/saepe/{}", MODULE_A), &auth)
        .await;
    assert_eq!(module.json()["ModuleName"], MODULE_A);
    let put = so
        .send(
            Request::put("/api/v1/License/saepe/326")
                .header("authorization", SEED_BASIC)
                .header("content-type", "application/json")
                .body(Body::from(format!("[\"{MODULE_B}\"]")))
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert!(so.holds(ASSOCIATE, "saepe", MODULE_B).await);
    let delete = so
        .send(
            Request::delete("/api/v1/License/saepe/326")
                .header("authorization", SEED_BASIC)
                .header("content-type", "application/json")
                .body(Body::from(format!("[\"{MODULE_B}\"]")))
                .unwrap(),
        )
        .await;
    assert_eq!(delete.status, StatusCode::OK);
    assert!(!so.holds(ASSOCIATE, "saepe", MODULE_B).await);
    let missing = so.get("/api/v1/License/nobody/unknown-module", &auth).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["Error"], true);
    assert_eq!(missing.json()["ErrorType"], "SoNotFoundException");
    let user_licenses = so.get("/api/v1/License/User/326", &auth).await;
    assert_eq!(user_licenses.status, StatusCode::OK);
    let bad_id = so.get("/api/v1/License/User/abc", &auth).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    let principal = so.get("/api/v1/User/currentPrincipal", &auth).await.json();
    assert_eq!(principal["AssociateId"], 326);
    assert_eq!(principal["UserName"], "tje0");
    // Routes are case-insensitive, as IIS is.
    let lower = so.get("/API/V1/license/saepe/326", &auth).await;
    assert_eq!(lower.status, StatusCode::OK);
    so.finish().await;
}

/// One SOAP call with a ticket in the `Header`, SOAP 1.1.
fn soap11(version: u8, ticket: &str, operation: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header>\
         <Credentials xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services{version}\"><Ticket>{ticket}</Ticket></Credentials>\
         </s:Header><s:Body><{operation} xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services{version}\">{body}</{operation}></s:Body></s:Envelope>"
    )
}

/// Replaces the volatile parts of a response (tickets) before snapshotting.
fn stable(text: &str, ticket: &str) -> String {
    text.replace(ticket, "7T:<ticket>")
}

async fn soap_third_party(db: TestDb) {
    let so = So::new(db).await;
    let ticket = so.ticket(88, "tje0", "Tje0").await;
    let body = format!(
        "<AssociateId>326</AssociateId><ModuleOwner>saepe</ModuleOwner><ModuleLicenseNames \
         xmlns:a=\"http://schemas.microsoft.com/2003/10/Serialization/Arrays\"><a:string>{MODULE_A}</a:string></ModuleLicenseNames>"
    );
    for version in [83u8, 86, 87, 88] {
        let reply = so
            .soap(
                version,
                "License",
                &soap11(version, &ticket, "UnassignThirdPartyLicenses", &body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/xml")
        );
        let doc = allot::xml::parse(&reply.text).unwrap();
        let link = doc
            .child("Body")
            .unwrap()
            .child("UnassignThirdPartyLicensesResponse")
            .unwrap()
            .child("Response")
            .unwrap()
            .child("ModuleLicenseLink")
            .unwrap();
        let names: Vec<&str> = link.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.contains(&"IsHidden"), version >= 87, "{version}");
        assert_eq!(names.contains(&"ExtraFlags"), version >= 88, "{version}");
        insta::assert_snapshot!(
            format!("soap_unassign_third_party_services{version}"),
            stable(&reply.text, &ticket)
        );
        // Re-assign for the next version's call.
        so.agent(
            "License/AssignThirdPartyLicenses",
            &format!("{{\"AssociateId\": 326, \"ModuleOwner\": \"saepe\", \"ModuleLicenseNames\": [\"{MODULE_A}\"]}}"),
        )
        .await;
    }
    // Before Services83 the operation does not exist: a fault.
    let old = so
        .soap(
            82,
            "License",
            &soap11(82, &ticket, "UnassignThirdPartyLicenses", &body),
        )
        .await;
    assert_eq!(old.status, StatusCode::BAD_REQUEST);
    assert!(old.text.contains("faultcode"), "{}", old.text);
    // GetUserLicenses exists in every version.
    let owners = so
        .soap(
            75,
            "License",
            &soap11(
                75,
                &ticket,
                "GetUserLicenses",
                "<AssociateId>326</AssociateId>",
            ),
        )
        .await;
    insta::assert_snapshot!(
        "soap_get_user_licenses_services75",
        stable(&owners.text, &ticket)
    );
    so.finish().await;
}

async fn remove_license_from_db(db: TestDb) {
    let so = So::new(db).await;
    let refused = so
        .agent(
            "License/RemoveLicenseFromDB",
            "{\"ModuleOwner\": \"SuperOffice\"}",
        )
        .await
        .json();
    assert_eq!(refused["Succeeded"], false);
    assert!(so.holds(ASSOCIATE, "SuperOffice", "user").await);
    let unknown = so
        .agent(
            "License/RemoveLicenseFromDB",
            "{\"ModuleOwner\": \"nobody\"}",
        )
        .await
        .json();
    assert_eq!(unknown["Succeeded"], false);
    let removed = so
        .agent(
            "License/RemoveLicenseFromDB",
            "{\"ModuleOwner\": \"saepe\"}",
        )
        .await
        .json();
    assert_eq!(removed["Succeeded"], true, "{removed}");
    let info = so
        .agent("License/GetLicenseFromDB", "{\"OwnerName\": \"saepe\"}")
        .await;
    assert_eq!(info.text, "null");
    let all = so
        .agent("License/GetLicenseForAllOwnersFromDB", "")
        .await
        .json();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["Current"]["OwnerName"], "SuperOffice");
    assert!(so.holds(ASSOCIATE, "SuperOffice", "web").await);
    so.finish().await;
}

#[tokio::test]
async fn soap_errors_are_netserver_shaped_and_hostile_input_is_refused() {
    let so = So::new(TestDb::sqlite()).await;
    let ticket = so.ticket(86, "tje0", "Tje0").await;
    // Missing and bad credentials: a normal response, Succeeded=false, ExceptionInfo.
    for envelope in [
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><RemoveLicenses xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services86\"><AssociateId>326</AssociateId></RemoveLicenses></s:Body></s:Envelope>".to_owned(),
        soap11(86, "7T:forged", "RemoveLicenses", "<AssociateId>326</AssociateId>"),
    ] {
        let reply = so.soap(86, "User", &envelope).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let doc = allot::xml::parse(&reply.text).unwrap();
        let header = doc.child("Header").unwrap();
        assert_eq!(header.child("Succeeded").unwrap().value(), "false");
        assert_eq!(
            header.child("ExceptionInfo").unwrap().child("ExceptionType").unwrap().value(),
            "SoSessionException"
        );
        insta::assert_snapshot!("soap_exception_info", reply.text);
    }
    assert!(
        so.holds(ASSOCIATE, "saepe", MODULE_A).await,
        "nothing changed"
    );
    // Unknown associate on a void method: ExceptionInfo.
    let unknown = so
        .soap(
            86,
            "User",
            &soap11(
                86,
                &ticket,
                "RemoveLicenses",
                "<AssociateId>999</AssociateId>",
            ),
        )
        .await;
    assert!(
        unknown.text.contains("SoNotFoundException"),
        "{}",
        unknown.text
    );
    // A wrong password at SoPrincipal is AuthenticationSucceeded=false, not a fault.
    let wrong = so
        .soap(
            86,
            "SoPrincipal",
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services86\"><UserName>tje0</UserName><Password>nope</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(
        wrong
            .text
            .contains("<tns:AuthenticationSucceeded>false</tns:AuthenticationSucceeded>"),
        "{}",
        wrong.text
    );
    insta::assert_snapshot!("soap_authenticate_failed", wrong.text);

    // Faults for envelopes that cannot be read.
    let deep = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{}{}</s:Body></s:Envelope>",
        "<a>".repeat(200),
        "</a>".repeat(200)
    );
    let cases: Vec<(&str, String)> = vec![
        ("malformed", "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>".into()),
        ("not an envelope", "<Envelope><Body/></Envelope>".into()),
        ("wrong envelope namespace", "<s:Envelope xmlns:s=\"urn:nope\"><s:Body/></s:Envelope>".into()),
        ("no body", "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"/>".into()),
        ("wrong operation namespace", soap11(86, &ticket, "RemoveLicenses", "").replace("Services86\"><AssociateId", "Services75\"><AssociateId").replace("<RemoveLicenses xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services86\">", "<RemoveLicenses xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services75\">")),
        ("unknown operation", soap11(86, &ticket, "DropDatabase", "")),
        ("entity bomb", "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>&lol2;</s:Body></s:Envelope>".into()),
        ("external entity", "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>&xxe;</s:Body></s:Envelope>".into()),
        ("deeply nested", deep),
        ("binary", "\u{0}\u{1}\u{2}".into()),
    ];
    for (what, envelope) in cases {
        let reply = so.soap(86, "User", &envelope).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.text
        );
        let doc =
            allot::xml::parse(&reply.text).unwrap_or_else(|e| panic!("{what}: fault not XML: {e}"));
        assert!(
            doc.child("Body").unwrap().child("Fault").is_some(),
            "{what}"
        );
        assert!(
            !reply.text.contains("root:"),
            "{what}: an entity was expanded"
        );
    }
    // SOAP 1.2 faults are SOAP 1.2.
    let fault12 = so
        .post(
            "/Remote/Services86/User.svc",
            &[("content-type", "application/soap+xml")],
            "<nope",
        )
        .await;
    assert!(
        fault12
            .text
            .contains("http://www.w3.org/2003/05/soap-envelope"),
        "{}",
        fault12.text
    );
    assert!(fault12.text.contains("s:Sender"));
    // Huge bodies are refused before they are read whole.
    let huge = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{}</s:Body></s:Envelope>",
        "x".repeat(2 * 1024 * 1024)
    );
    let too_big = so.soap(86, "User", &huge).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown services and versions.
    assert_eq!(
        so.get("/Remote/Services79/User.svc?wsdl", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        so.get("/Remote/Services86/Contact.svc?wsdl", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    so.finish().await;
}

#[tokio::test]
async fn online_tenants_need_a_registered_application_token() {
    let app_token = "f2398a3a7wer3759d4b220e9a9c94321";
    let so = So::with(TestDb::sqlite(), |s| {
        s.superoffice.online_tenants = vec!["default".into()];
        s.superoffice.app_token_hashes = vec![allot_ledger::rules::hash_token(app_token)];
    })
    .await;
    let body = "{\"AssociateId\": 326}";
    let without = so.agent("License/GetUserLicenses", body).await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    let with = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[
                ("authorization", SEED_BASIC),
                ("so-apptoken", app_token),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
    assert_eq!(with.status, StatusCode::OK, "{}", with.text);
    let wrong = so
        .post(
            "/api/v1/Agents/License/GetUserLicenses",
            &[
                ("authorization", SEED_BASIC),
                ("so-apptoken", "guess"),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // SOAP: the seed envelope's ApplicationToken is not registered here.
    let login = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><ApplicationToken xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services86\">TOKEN</ApplicationToken></s:Header><s:Body><AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services86\"><UserName>tje0</UserName><Password>Tje0</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>";
    let refused = so
        .soap(
            86,
            "SoPrincipal",
            &login.replace("TOKEN", "1234567-1234-9876"),
        )
        .await;
    assert!(
        refused
            .text
            .contains("<tns:Succeeded>false</tns:Succeeded>"),
        "{}",
        refused.text
    );
    let accepted = so
        .soap(86, "SoPrincipal", &login.replace("TOKEN", app_token))
        .await;
    assert!(
        accepted.text.contains("<tns:AuthenticationSucceeded>true"),
        "{}",
        accepted.text
    );
    so.finish().await;
}

#[tokio::test]
async fn wsdls_and_rest_shapes_are_snapshotted() {
    let so = So::new(TestDb::sqlite()).await;
    for (version, service) in [
        (75, "User"),
        (81, "Associate"),
        (86, "Associate"),
        (86, "SoPrincipal"),
        (83, "License"),
        (88, "License"),
    ] {
        let reply = so
            .get(
                &format!("/Remote/Services{version}/{service}.svc?wsdl"),
                &[("host", "allot.test")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.text.contains(&format!(
            "location=\"http://allot.test/Remote/Services{version}/{service}.svc\""
        )));
        insta::assert_snapshot!(format!("wsdl_services{version}_{service}"), reply.text);
    }
    // Under a tenant prefix the address keeps the prefix.
    so.ledger.create_tenant("acme", "test").await.unwrap();
    let prefixed = so
        .get("/acme/Remote/Services88/User.svc?wsdl", &[("host", "h")])
        .await;
    assert!(
        prefixed
            .text
            .contains("location=\"http://h/acme/Remote/Services88/User.svc\"")
    );

    for (name, path, body) in [
        (
            "rest_get_user_licenses",
            "License/GetUserLicenses",
            "{\"AssociateId\": 326}",
        ),
        (
            "rest_get_license_from_db",
            "License/GetLicenseFromDB",
            "{\"OwnerName\": \"saepe\"}",
        ),
        (
            "rest_get_module_license_from_db",
            "License/GetModuleLicenseFromDB",
            "{\"OwnerName\": \"SuperOffice\", \"ModuleName\": \"web\"}",
        ),
        (
            "rest_user_and_installation_status",
            "License/GetUserAndInstallationLicenceStatus",
            "{\"AssociateId\": 326}",
        ),
        (
            "rest_get_user_info",
            "User/GetUserInfo",
            "{\"UserName\": \"tje0\"}",
        ),
        (
            "rest_remove_license_superoffice",
            "License/RemoveLicenseFromDB",
            "{\"ModuleOwner\": \"SuperOffice\"}",
        ),
    ] {
        let reply = so.agent(path, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        // The raw text: key order is part of the wire format.
        reply.json();
        insta::assert_snapshot!(name, reply.text);
    }
    let xml = so
        .post(
            "/api/v1/Agents/License/GetThirdPartyLicenseAssignments",
            &[
                ("authorization", SEED_BASIC),
                ("accept", "text/xml"),
                ("content-type", "application/json"),
            ],
            "{\"AssociateId\": 326, \"ModuleOwner\": \"saepe\"}",
        )
        .await;
    insta::assert_snapshot!("rest_third_party_xml", xml.text);
    so.finish().await;
}

/// Prepares a store file as an installation would have it, then runs the real binary on it.
async fn prepared_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("allot.db").display());
    {
        let ledger = Ledger::open(&url).await.unwrap();
        let tenant = ledger.create_tenant("default", "test").await.unwrap();
        let hash = Passwords::new(1).hash(ADMIN_PASSWORD).await.unwrap();
        ledger
            .execute(
                &Context::new(tenant.id, "test"),
                Command::CreateLogin {
                    login: "admin".into(),
                    password_hash: hash,
                    role: Role::Admin,
                    user: None,
                },
            )
            .await
            .unwrap();
        populate(&ledger, tenant.id).await;
        ledger
            .execute(
                &Context::new(tenant.id, "test"),
                Command::LogOn {
                    user: UserRef::Id(OTHER),
                    client: ClientKind::Windows,
                    device: "PC-2".into(),
                    product: None,
                    lease_seconds: 3600,
                },
            )
            .await
            .unwrap();
        ledger.close().await;
    }
    let server = Server::start(&url, Some(ADMIN_PASSWORD)).await;
    (server, dir)
}

async fn open_ledger(dir: &tempfile::TempDir) -> (Ledger, TenantId) {
    let url = format!("sqlite://{}", dir.path().join("allot.db").display());
    let ledger = Ledger::open(&url).await.unwrap();
    let tenant = ledger.tenant("default").await.unwrap().unwrap().id;
    (ledger, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_zeep_drives_the_soap_services() {
    let (server, dir) = prepared_server().await;
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "superoffice_zeep.py",
            &[
                &url,
                "tje0",
                "Tje0",
                &ASSOCIATE.to_string(),
                &OTHER.to_string(),
            ],
        )
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["75"]["log_off"], "absent");
    assert_eq!(report["86"]["log_off"], "ok");
    assert_eq!(report["88"]["bad_ticket"], "SoSessionException");
    let fields: Vec<&str> = report["88"]["third_party_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"ExtraFlags") && fields.contains(&"IsHidden"),
        "{fields:?}"
    );
    let fields86 = report["86"]["third_party_fields"].to_string();
    assert!(!fields86.contains("IsHidden"), "{fields86}");
    // The ledger saw it: licenses removed, the Windows session ended.
    let (ledger, tenant) = open_ledger(&dir).await;
    let views = ledger
        .user_view(tenant, &UserRef::Id(ASSOCIATE))
        .await
        .unwrap();
    assert!(
        views.iter().all(|v| !v.assigned),
        "RemoveLicenses left licenses"
    );
    let live = ledger
        .live_sessions(tenant, Some(OTHER), Some(ClientKind::Windows), None, None)
        .await
        .unwrap();
    assert!(live.is_empty(), "LogOffWindowsUsers left {live:?}");
    assert!(ledger.check_invariants(tenant).await.unwrap().is_empty());
    ledger.close().await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_calls_the_rest_agents() {
    let (server, dir) = prepared_server().await;
    // A ticket from the SOAP service, for SOTicket authorization.
    let envelope = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services88\"><UserName>tje0</UserName><Password>Tje0</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>";
    let reply = reqwest::Client::new()
        .post(format!("{}/Remote/Services88/SoPrincipal.svc", server.url))
        .header("content-type", "text/xml")
        .body(envelope)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc = allot::xml::parse(&reply).unwrap();
    let ticket = doc
        .child("Body")
        .and_then(|b| b.child("AuthenticateResponse"))
        .and_then(|r| r.child("Credentials"))
        .and_then(|c| c.child("Ticket"))
        .map(|t| t.value().to_owned())
        .unwrap_or_else(|| panic!("no ticket in {reply}"));
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "superoffice_requests.py",
            &[&url, "tje0", "Tje0", &ticket, &ASSOCIATE.to_string()],
        )
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["assign_basic_json"][MODULE_A], true);
    assert_eq!(report["unassign_ticket_xml"][MODULE_A], "false");
    let (ledger, tenant) = open_ledger(&dir).await;
    let views = ledger
        .user_view(tenant, &UserRef::Id(ASSOCIATE))
        .await
        .unwrap();
    assert!(
        views.iter().all(|v| !v.assigned),
        "RemoveLicenses (REST) left licenses"
    );
    assert!(ledger.check_invariants(tenant).await.unwrap().is_empty());
    ledger.close().await;
    server.stop();
}

#[tokio::test]
async fn server_layer_answers_keep_the_dialect_shape() {
    let so = So::with(TestDb::sqlite(), |s| {
        s.rate_limit = 1;
        s.max_body = 64 * 1024;
    })
    .await;
    let peer: std::net::SocketAddr = "10.1.2.3:5555".parse().unwrap();
    let limited = |path: &str, content_type: &str| {
        let mut req = Request::post(path)
            .header("content-type", content_type)
            .body(Body::from("{}"))
            .unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    };
    // Spend the burst, then each dialect answers 429 in its own shape.
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            so.send(limited(
                "/api/v1/Agents/License/GetUserLicenses",
                "application/json",
            ))
            .await,
        );
    }
    let rest = last.unwrap();
    assert_eq!(rest.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(rest.json()["Message"].is_string(), "{}", rest.text);
    assert!(rest.headers.contains_key("retry-after"));
    let msp = so.send(limited("/api/Licenses", "application/json")).await;
    assert_eq!(msp.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(msp.json()["Message"].is_string(), "{}", msp.text);
    let soap = so
        .send(limited("/Remote/Services86/User.svc", "text/xml"))
        .await;
    assert_eq!(soap.status, StatusCode::TOO_MANY_REQUESTS);
    let fault = allot::xml::parse(&soap.text).unwrap();
    assert!(
        fault.child("Body").unwrap().child("Fault").is_some(),
        "{}",
        soap.text
    );
    // The native API keeps its own shape.
    let native = so.send(limited("/v1/products", "application/json")).await;
    assert_eq!(native.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        native.json()["error"]["code"].is_string(),
        "{}",
        native.text
    );

    // A declared length over the limit is refused before the body is read.
    let big = "x".repeat(100 * 1024);
    let early = so
        .send(
            Request::post("/Remote/Services86/User.svc")
                .header("content-type", "application/soap+xml")
                .header("content-length", big.len().to_string())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(early.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        early
            .text
            .contains("http://www.w3.org/2003/05/soap-envelope"),
        "{}",
        early.text
    );
    let early_rest = so
        .send(
            Request::post("/api/v1/Agents/User/RemoveLicenses")
                .header("content-type", "application/json")
                .header("content-length", big.len().to_string())
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(early_rest.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        early_rest.json()["Message"].is_string(),
        "{}",
        early_rest.text
    );
    so.finish().await;
}

/// Retiring a user ends every credential acting as it, in every dialect: its native token, the
/// SuperOffice ticket and MSP360 token of an admin login bound to it, its Basic and password
/// logins; unretiring opens the logins again but revives no old credential.
async fn retired_users_lose_every_credential(db: TestDb) {
    let so = So::new(db).await;
    let json_ct = [("content-type", "application/json")];
    let native_login = |login: &'static str, password: &'static str| {
        let body = serde_json::json!({ "tenant": "default", "login": login, "password": password });
        let so = &so;
        async move { so.post("/v1/auth/login", &json_ct, &body.to_string()).await }
    };
    let admin = native_login("admin", ADMIN_PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = format!("Bearer {admin}");
    let other = native_login("other", "other-password").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = format!("Bearer {other}");
    // tje0 is an admin login bound to associate 326.
    let ticket = format!("SOTicket {}", so.ticket(88, "tje0", "Tje0").await);
    let msp_login = r#"{"UserName": "tje0", "Password": "Tje0"}"#;
    let msp = so.post("/api/Provider/Login", &json_ct, msp_login).await;
    assert_eq!(msp.status, StatusCode::OK, "{}", msp.text);
    let msp = format!("Bearer {}", msp.json()["access_token"].as_str().unwrap());

    let statuses = |ticket: String, msp: String, other: String| {
        let so = &so;
        async move {
            let rest = so
                .agent_as(&ticket, "License/GetUserLicenses", "{\"AssociateId\": 327}")
                .await;
            let basic = so
                .agent_as(
                    SEED_BASIC,
                    "License/GetUserLicenses",
                    "{\"AssociateId\": 327}",
                )
                .await;
            let msp = so.get("/api/Licenses", &[("authorization", &msp)]).await;
            let native = so
                .get("/v1/users/327/licenses", &[("authorization", &other)])
                .await;
            [rest.status, basic.status, msp.status, native.status]
        }
    };
    let ok = [StatusCode::OK; 4];
    let refused = [StatusCode::UNAUTHORIZED; 4];
    assert_eq!(
        statuses(ticket.clone(), msp.clone(), other.clone()).await,
        ok
    );

    for user in [ASSOCIATE, OTHER] {
        let r = so
            .post(
                &format!("/v1/users/{user}/retire"),
                &[("authorization", &admin)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(
        statuses(ticket.clone(), msp.clone(), other.clone()).await,
        refused
    );
    // New logins are refused in every form, admin logins bound to the user included.
    assert_eq!(
        native_login("other", "other-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused_login = so.post("/api/Provider/Login", &json_ct, msp_login).await;
    assert_eq!(
        refused_login.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused_login.text
    );
    assert_eq!(refused_login.json()["error"], "invalid_grant");
    let envelope = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
         <AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services88\">\
         <UserName>tje0</UserName><Password>Tje0</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>";
    let soap = so.soap(88, "SoPrincipal", envelope).await;
    assert!(
        soap.text.contains(":AuthenticationSucceeded>false</"),
        "{}",
        soap.text
    );

    // Unretired, the users log in again; the old credentials stay dead.
    for user in [ASSOCIATE, OTHER] {
        let r = so
            .post(
                &format!("/v1/users/{user}/unretire"),
                &[("authorization", &admin)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(
        statuses(ticket, msp, other).await,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        ]
    );
    let fresh = format!("SOTicket {}", so.ticket(88, "tje0", "Tje0").await);
    let r = so
        .agent_as(&fresh, "License/GetUserLicenses", "{\"AssociateId\": 327}")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    so.finish().await;
}

/// 200 wrong passwords for one login from 64 concurrent tasks, in each credential form, run no
/// more argon2 checks than the throttle allows sequentially (five free failures and the one
/// that locks); every other attempt is answered 429 without a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_get_no_more_checks_than_the_throttle_allows() {
    use base64::Engine;
    type MakeRequest = fn(usize) -> Request<Body>;
    let forms: [(&str, MakeRequest); 4] = [
        ("native", |i| {
            let body = serde_json::json!({ "tenant": "default", "login": "other", "password": format!("wrong password {i}") });
            Request::post("/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        }),
        ("soap", |i| {
            let envelope = format!(
                "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
                 <AuthenticateUsernamePassword xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services88\">\
                 <UserName>other</UserName><Password>wrong{i}</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>"
            );
            Request::post("/Remote/Services88/SoPrincipal.svc")
                .header("content-type", "text/xml; charset=utf-8")
                .body(Body::from(envelope))
                .unwrap()
        }),
        ("rest-basic", |i| {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("other:wrong{i}"));
            Request::post("/api/v1/Agents/License/GetUserLicenses")
                .header("authorization", format!("Basic {basic}"))
                .header("content-type", "application/json")
                .body(Body::from("{\"AssociateId\": 327}"))
                .unwrap()
        }),
        ("msp360", |i| {
            let body = serde_json::json!({ "UserName": "other", "Password": format!("wrong{i}") });
            Request::post("/api/Provider/Login")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        }),
    ];
    for (form, request) in forms {
        let so = std::sync::Arc::new(So::new(TestDb::sqlite()).await);
        let before = so.state.auth.passwords.verifications();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (so, next) = (so.clone(), next.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= 200 {
                            return statuses;
                        }
                        let r = so.send(request(i)).await;
                        // SOAP answers its faults 200 with an ExceptionInfo header.
                        let throttled = r.status == StatusCode::TOO_MANY_REQUESTS
                            || r.text.to_lowercase().contains("too many failed");
                        statuses.push((r.status, throttled));
                    }
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.extend(t.await.unwrap());
        }
        let checks = so.state.auth.passwords.verifications() - before;
        assert_eq!(statuses.len(), 200);
        assert!(
            (1..=6).contains(&checks),
            "{form}: {checks} password checks for 200 concurrent wrong passwords"
        );
        assert!(
            statuses.iter().all(|(s, _)| !s.is_server_error()),
            "{statuses:?}"
        );
        let throttled = statuses.iter().filter(|(_, t)| *t).count();
        assert!(
            throttled >= 194,
            "{form}: {throttled} of 200 throttled: {statuses:?}"
        );
        eprintln!("{form}: {checks} checks, {throttled} of 200 answered 429");
        std::sync::Arc::into_inner(so).unwrap().finish().await;
    }
}

/// An envelope with 80,000 attributes on one element (869 KB; quadratic to parse before) is
/// refused before authentication with a SOAP fault, and the server keeps answering.
#[tokio::test]
async fn envelopes_with_too_many_attributes_are_refused_fast() {
    let so = So::with(TestDb::sqlite(), |s| s.max_body = 2 * 1024 * 1024).await;
    let attributes: String = (0..80_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let envelope = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
         <AuthenticateUsernamePassword{attributes} xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services88\">\
         <UserName>tje0</UserName><Password>Tje0</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>"
    );
    let started = std::time::Instant::now();
    let r = so.soap(88, "SoPrincipal", &envelope).await;
    eprintln!(
        "80k-attribute envelope answered {} in {:?}",
        r.status,
        started.elapsed()
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let fault = allot::xml::parse(&r.text).unwrap();
    let fault = fault.child("Body").unwrap().child("Fault").unwrap();
    assert!(r.text.contains("attributes"), "{}", r.text);
    assert!(fault.child("faultcode").is_some(), "{}", r.text);
    // The MSP360 XML binder refuses such a login body the same way.
    let attributes: String = (0..50_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let body =
        format!("<Login{attributes}><UserName>tje0</UserName><Password>Tje0</Password></Login>");
    let msp = so
        .post(
            "/api/Provider/Login",
            &[("content-type", "application/xml")],
            &body,
        )
        .await;
    assert_eq!(msp.status, StatusCode::BAD_REQUEST, "{}", msp.text);
    assert!(msp.text.contains("attributes"), "{}", msp.text);
    so.finish().await;
}

/// The WSDL's `soap:address` comes from the configured public URL, or from a `Host` that is a
/// plain host[:port]; a forged one falls back to `localhost`.
#[tokio::test]
async fn wsdl_addresses_come_from_the_public_url_or_a_plain_host() {
    async fn wsdl(so: &So, host: &str) -> String {
        let req = Request::get("/Remote/Services88/SoPrincipal.svc?wsdl")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        so.send(req).await.text
    }
    let so = So::new(TestDb::sqlite()).await;
    let good = wsdl(&so, "allot.example.com:8443").await;
    assert!(
        good.contains(
            "location=\"http://allot.example.com:8443/Remote/Services88/SoPrincipal.svc\""
        ),
        "{good}"
    );
    let forged = wsdl(&so, "evil.example/phish?x=").await;
    assert!(!forged.contains("evil"), "{forged}");
    assert!(
        forged.contains("location=\"http://localhost/Remote/Services88/SoPrincipal.svc\""),
        "{forged}"
    );
    so.finish().await;
    let so = So::with(TestDb::sqlite(), |s| {
        s.superoffice.public_url = Some("https://crm.example.com/".into())
    })
    .await;
    let configured = wsdl(&so, "evil.example").await;
    assert!(
        configured
            .contains("location=\"https://crm.example.com/Remote/Services88/SoPrincipal.svc\""),
        "{configured}"
    );
    so.finish().await;
}
