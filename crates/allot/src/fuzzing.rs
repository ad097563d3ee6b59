//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`; also built
//! for this crate's tests, which replay the committed corpora and the crashes once found).
//!
//! Each takes arbitrary bytes and drives one parser that reads outside bytes exactly as the
//! server does, before and after authentication, up to the point where the store is needed.
//! Inputs that need more than a body carry it in leading lines (a content type, a method), so
//! seeds stay readable and the fuzzer mutates those too. None of these may panic, hang or
//! grow out of proportion to the input; libFuzzer reports a panic as a crash and a slow input
//! as a timeout.

use crate::auth;
use crate::config::{ServeArgs, Settings};
use crate::dialects::msp360::wire as msp360;
use crate::dialects::superoffice::methods::{self, Args, METHODS};
use crate::dialects::superoffice::rest;
use crate::dialects::superoffice::soap;
use crate::dialects::superoffice::wire::{Wire, parse_select};
use crate::dialects::superoffice::{Version, carriers};
use crate::xml;

/// Splits off the first `n` lines (lossily as text); the rest is the body.
fn header_lines(data: &[u8], n: usize) -> (Vec<String>, &[u8]) {
    let mut lines = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        lines.push(String::from_utf8_lossy(&rest[..end]).trim().to_owned());
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    (lines, rest)
}

/// The hardened XML reader: any bytes, as the dialects hand it their bodies.
pub fn xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(root) = xml::parse(text) {
        // Reading what was parsed, as the binders do.
        walk(&root);
    }
}

fn walk(element: &xml::Element) {
    let _ = (element.value(), element.is_nil(), element.attribute("type"));
    let _ = element.child("Ticket");
    element.children.iter().for_each(walk);
}

/// A SOAP request: line 1 `ServicesNN/Service` (as in `/Remote/ServicesNN/Service.svc`), the
/// rest the envelope. Read as `soap::post` reads it: envelope, operation, headers, arguments.
pub fn soap(data: &[u8]) {
    let (lines, body) = header_lines(data, 1);
    let (version, service) = lines[0]
        .split_once('/')
        .unwrap_or(("Services88", "License"));
    let version = Version::parse(version).unwrap_or(Version::REST);
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let Ok(envelope) = xml::parse(text) else {
        return;
    };
    let _ = soap::request_headers(&envelope);
    if let Ok((_, operation, method)) = soap::operation_of(&envelope, version, service) {
        let _ = Args::from_xml(method, operation);
    }
}

/// A SuperOffice REST agent call: line 1 the `Content-Type`, line 2 `Agent/Method`, line 3 a
/// `$select` value, the rest the body. The body is read and bound as `rest::agent_call` does;
/// the selection is applied to a nested carrier and rendered both ways.
pub fn superoffice_rest(data: &[u8]) {
    let (lines, body) = header_lines(data, 3);
    let content_type = Some(lines[0].as_str()).filter(|c| !c.is_empty());
    let method = lines[1]
        .split_once('/')
        .and_then(|(agent, name)| methods::find(agent, name))
        .unwrap_or(&METHODS[data.len() % METHODS.len()]);
    if let Ok(body) = rest::parse_body(content_type, body) {
        let _ = rest::bind(method, &body);
    }
    let selection = parse_select(&lines[2]);
    let carrier = Wire::Arr(
        "ExtendedLicenseInfo",
        vec![carriers::user_and_installation_status("acme", &[])],
    );
    let selected = carrier.select(&selection);
    let _ = (selected.to_json(), selected.to_rest_xml());
    let _ = carriers::license_result(false, &lines[2])
        .select(&selection)
        .to_json();
}

/// An MSP360 body: line 1 the `Content-Type`, line 2 the XML root expected, the rest the body.
/// Read as `Call::body` reads it, then every member through each typed accessor.
pub fn msp360(data: &[u8]) {
    let (lines, body) = header_lines(data, 2);
    let content_type = Some(lines[0].as_str()).filter(|c| !c.is_empty());
    let Ok(Some(fields)) = msp360::parse_body(content_type, body, &lines[1]) else {
        return;
    };
    // The members the dialect reads, each through every accessor (a fixed number of look-ups,
    // as in the server: iterating over all of a body's keys would make the target quadratic).
    for key in MSP360_MEMBERS {
        let _ = fields.text(key);
        let _ = fields.given(key);
        let _ = fields.int(key);
        let _ = fields.boolean(key);
        let _ = fields.strings(key);
    }
    for (key, value) in fields.0.iter().take(8) {
        let _ = fields.text(key);
        let _ = fields.given(key);
        let _ = fields.int(key);
        let _ = fields.boolean(key);
        let _ = fields.strings(key);
        let _ = msp360::parse_user_mode(value);
        let _ = msp360::parse_pool_mode(value);
    }
}

/// Members the MSP360 routes read from bodies.
const MSP360_MEMBERS: [&str; 18] = [
    "UserName",
    "Password",
    "Email",
    "FirstName",
    "LastName",
    "Company",
    "CompanyId",
    "ComputerName",
    "OperatingSystem",
    "Enabled",
    "LicenseManagmentMode",
    "NotificationEmails",
    "LicenseID",
    "UserID",
    "ID",
    "Name",
    "LicenseSettings",
    "StorageLimit",
];

/// Credentials: line 1 an `Authorization` header value, line 2 a `Cookie` header value. Split,
/// decoded and hashed as the native API and both dialects do before asking the store.
pub fn credentials(data: &[u8]) {
    let (lines, _) = header_lines(data, 2);
    let authorization = &lines[0];
    if let Some((scheme, credentials)) = auth::split_authorization(authorization) {
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                if let Some((login, password)) = auth::decode_basic(credentials) {
                    let _ = allot_ledger::rules::name_key(&login);
                    let _ = password.chars().count() <= auth::MAX_PASSWORD;
                }
            }
            _ => {
                let _ = allot_ledger::rules::hash_token(auth::ticket_text(credentials));
            }
        }
    }
    if let Some(token) = auth::bearer_token(authorization) {
        let _ = allot_ledger::rules::hash_token(token);
    }
    for (name, value) in auth::cookie_pairs([lines[1].as_str()]) {
        if name.eq_ignore_ascii_case("SoTicket") {
            let _ = allot_ledger::rules::hash_token(auth::ticket_text(&value));
        }
    }
}

/// The configuration file: any text as the TOML `--config` names, over no flags.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_toml(&ServeArgs::default(), text) {
        // What start-up does next with it.
        let _ = format!("{settings:?}");
        let _ = settings.store_options();
        let _ = crate::config::redact_url(settings.db.expose());
    }
}

/// A SCIM request's expressions: line 1 a PATCH `path`, the rest a list `filter`. Both parsed
/// as `/scim/v2` parses them, and the filter evaluated over a user as the server renders one.
pub fn scim_filter(data: &[u8]) {
    use crate::scim::filter::{parse_filter, parse_path};
    let (lines, rest) = header_lines(data, 1);
    if let Ok(path) = parse_path(&lines[0])
        && let Some(filter) = path.filter
    {
        let _ = filter.matches(&SCIM_EMAIL);
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(filter) = parse_filter(text) {
        let _ = filter.matches(&SCIM_USER);
    }
}

static SCIM_USER: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "0b4a4e3e-4c53-4a4e-9d4e-1f2a3b4c5d6e",
        "externalId": "00u1abcd",
        "userName": "ann@example.com",
        "name": {"givenName": "Ann", "familyName": "Lee", "formatted": "Ann Lee"},
        "active": true,
        "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
        "groups": [{"value": "g1", "display": "Sales"}],
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00Z",
                 "lastModified": "2026-01-02T00:00:00Z"}
    })
});

static SCIM_EMAIL: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(
    || serde_json::json!({"value": "ann@example.com", "type": "work", "primary": true}),
);

/// An `allot import` file: line 1 `csv` or `jsonl`, the rest the file. Read into batch
/// operations and bad rows as the command reads a file, before anything is sent.
pub fn import(data: &[u8]) {
    let (lines, rest) = header_lines(data, 1);
    if lines[0] == "jsonl" {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = crate::cli::import::read_jsonl(text);
        }
    } else {
        let _ = crate::cli::import::read_csv(rest, "fuzz.csv");
    }
}

/// A fuzz target: any bytes in, nothing out but a panic or a hang when something is wrong.
pub type Target = fn(&[u8]);

/// Every target by its directory name under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 8] = [
    ("xml", xml),
    ("soap", soap),
    ("superoffice_rest", superoffice_rest),
    ("msp360", msp360),
    ("credentials", credentials),
    ("config", config),
    ("scim_filter", scim_filter),
    ("import", import),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every input of the committed corpora (seeds, and what fuzzing added) runs through its
    /// target without a panic, so a crash once found and fixed stays fixed.
    #[test]
    fn committed_corpora_replay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let inputs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.unwrap().path())
                .collect();
            assert!(!inputs.is_empty(), "no corpus for {name}");
            for input in inputs {
                target(&std::fs::read(&input).unwrap());
            }
        }
    }
}
