//! MSP360 wire formats: content negotiation, the output model (written as JSON or as
//! DataContract XML), request-body parsing (JSON, form-encoded, XML) with ASP.NET's leniency
//! (case-insensitive keys, unknown keys ignored, numbers as strings), and the enum and date
//! spellings.

use serde::ser::{SerializeMap, SerializeSeq};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::xml::{self, XmlWriter};
use allot_ledger::{LicenseMode, PoolMode};

/// The DataContract namespace of the API's models.
pub const MODELS_NS: &str = "http://schemas.datacontract.org/2004/07/MBSAPImvc.Engine.Models";
/// The DataContract namespace of controller binding models (the login body).
pub const CONTROLLERS_NS: &str = "http://schemas.datacontract.org/2004/07/MBSAPImvc.Controllers";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const SERIALIZATION_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/";
const ARRAYS_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";

/// What the client gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// Picks the response format from `Accept`: XML only when an XML type is preferred; JSON
/// otherwise (also when the header is absent, `*/*` or something odd, as PowerShell's module
/// sends no Accept at all).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Json;
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/json" | "text/json" | "*/*" | "application/*" => Format::Json,
            "application/xml" | "text/xml" => Format::Xml,
            m if m.ends_with("+json") => Format::Json,
            m if m.ends_with("+xml") => Format::Xml,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f).unwrap_or(Format::Json)
}

// ---------------------------------------------------------------------------------------------
// Output

/// A response value, written in field order as JSON and as DataContract XML.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    /// An enum: its number in JSON, its member name in XML.
    Enum(i64, &'static str),
    /// A list; `item` names each element in XML (`string` for a list of strings).
    List {
        item: &'static str,
        items: Vec<Out>,
    },
    /// An object; `name` is its XML element name at the root or inside a list.
    Obj {
        name: &'static str,
        fields: Vec<(&'static str, Out)>,
    },
}

impl Out {
    pub fn opt_str(value: Option<&str>) -> Out {
        match value {
            Some(s) => Out::Str(s.to_owned()),
            None => Out::Null,
        }
    }
}

impl serde::Serialize for Out {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Null => s.serialize_none(),
            Out::Bool(b) => s.serialize_bool(*b),
            Out::Int(i) => s.serialize_i64(*i),
            Out::Str(t) => s.serialize_str(t),
            Out::Enum(n, _) => s.serialize_i64(*n),
            Out::List { items, .. } => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Out::Obj { fields, .. } => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// JSON text of a value.
pub fn to_json(out: &Out) -> String {
    serde_json::to_string(out).unwrap_or_else(|_| "null".to_owned())
}

/// DataContract XML of a value. `null_name` names the root element of a null (a `null`
/// answer to `GET /api/Licenses/{id}` is `<LicensesModels i:nil="true"/>`).
pub fn to_xml(out: &Out, null_name: &str) -> String {
    let mut w = XmlWriter::new();
    match out {
        // ASP.NET writes its `HttpError` without a namespace.
        Out::Obj { name, fields } if *name == "Error" => {
            w.open(name, &[]);
            write_fields(&mut w, fields);
            w.close(name);
        }
        Out::Obj { name, fields } => {
            w.open(name, &[("xmlns:i", XSI_NS), ("xmlns", MODELS_NS)]);
            write_fields(&mut w, fields);
            w.close(name);
        }
        Out::List { item, items } => {
            let root = format!("ArrayOf{item}");
            w.open(&root, &[("xmlns:i", XSI_NS), ("xmlns", MODELS_NS)]);
            for value in items {
                write_item(&mut w, item, value);
            }
            w.close(&root);
        }
        Out::Null => {
            w.empty(
                null_name,
                &[("i:nil", "true"), ("xmlns:i", XSI_NS), ("xmlns", MODELS_NS)],
            );
        }
        Out::Str(text) => {
            w.open("string", &[("xmlns", SERIALIZATION_NS)])
                .raw(&xml::escape(text))
                .close("string");
        }
        Out::Bool(_) | Out::Int(_) | Out::Enum(..) => {
            let (name, text) = scalar(out);
            w.open(name, &[("xmlns", SERIALIZATION_NS)])
                .raw(&xml::escape(&text))
                .close(name);
        }
    }
    w.finish()
}

fn scalar(out: &Out) -> (&'static str, String) {
    match out {
        Out::Bool(b) => ("boolean", b.to_string()),
        Out::Int(i) => ("long", i.to_string()),
        Out::Enum(_, name) => ("string", (*name).to_owned()),
        Out::Str(s) => ("string", s.clone()),
        _ => ("string", String::new()),
    }
}

/// DataContract writes members in ordinal order of their names.
fn write_fields(w: &mut XmlWriter, fields: &[(&'static str, Out)]) {
    let mut sorted: Vec<&(&'static str, Out)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in sorted {
        write_member(w, name, value);
    }
}

fn write_member(w: &mut XmlWriter, name: &str, value: &Out) {
    match value {
        Out::Null => {
            w.empty(name, &[("i:nil", "true")]);
        }
        Out::Obj { fields, .. } => {
            w.open(name, &[]);
            write_fields(w, fields);
            w.close(name);
        }
        Out::List { item, items } if *item == "string" => {
            w.open(name, &[("xmlns:a", ARRAYS_NS)]);
            for value in items {
                let (_, text) = scalar(value);
                w.text("a:string", &text);
            }
            w.close(name);
        }
        Out::List { item, items } => {
            w.open(name, &[]);
            for value in items {
                write_item(w, item, value);
            }
            w.close(name);
        }
        other => {
            let (_, text) = scalar(other);
            w.text(name, &text);
        }
    }
}

fn write_item(w: &mut XmlWriter, item: &str, value: &Out) {
    write_member(w, item, value);
}

// ---------------------------------------------------------------------------------------------
// Dates

/// `2018-02-09T00:00:00`: ISO 8601 in UTC without an offset, as the API writes `DateExpired`.
pub fn iso_local(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

/// `Sat, 28 Apr 2018 13:50:43 GMT`: RFC 1123, as the token endpoint writes `.issued`.
pub fn rfc1123(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Enums

/// `LicenseManagmentMode` (UserModeType): 0 Manual, 1 Automatic, 2 CompanySettings.
pub fn user_mode_out(mode: LicenseMode) -> Out {
    match mode {
        LicenseMode::Manual => Out::Enum(0, "Manual"),
        LicenseMode::Automatic => Out::Enum(1, "Automatic"),
        LicenseMode::Company => Out::Enum(2, "CompanySettings"),
    }
}

/// `LicenseSettings` (LicensingMode): 0 Custom, 1 Global Pool, 2 Company Pool.
pub fn pool_mode_out(mode: PoolMode) -> Out {
    match mode {
        PoolMode::Custom => Out::Enum(0, "CustomUsersSettings"),
        PoolMode::Global => Out::Enum(1, "GlobalLicensesPool"),
        PoolMode::Company => Out::Enum(2, "CompanyLicensesPool"),
    }
}

/// Reads a user mode given as a number, a numeric string or a member name; `None` for an empty
/// string (PowerShell sends `""` when the mode is not being changed).
pub fn parse_user_mode(value: &Value) -> Result<Option<LicenseMode>, String> {
    let bad = || "LicenseManagmentMode must be 0 (Manual), 1 (Automatic) or 2 (CompanySettings)";
    let text = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.clone(),
        Value::Text(t) => t.trim().to_owned(),
        _ => return Err(bad().to_owned()),
    };
    Ok(Some(match text.to_ascii_lowercase().as_str() {
        "" => return Ok(None),
        "0" | "manual" => LicenseMode::Manual,
        "1" | "automatic" => LicenseMode::Automatic,
        "2" | "companysettings" | "company" => LicenseMode::Company,
        _ => return Err(bad().to_owned()),
    }))
}

/// Reads a company's `LicenseSettings` (number, numeric string or member name).
pub fn parse_pool_mode(value: &Value) -> Result<Option<PoolMode>, String> {
    let bad = || "LicenseSettings must be 0 (Custom), 1 (Global Pool) or 2 (Company Pool)";
    let text = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.clone(),
        Value::Text(t) => t.trim().to_owned(),
        _ => return Err(bad().to_owned()),
    };
    Ok(Some(match text.to_ascii_lowercase().as_str() {
        "" => return Ok(None),
        "0" | "customuserssettings" | "custom" => PoolMode::Custom,
        "1" | "globallicensespool" | "global" => PoolMode::Global,
        "2" | "companylicensespool" | "company" => PoolMode::Company,
        _ => return Err(bad().to_owned()),
    }))
}

// ---------------------------------------------------------------------------------------------
// Input

/// One value of a request body, whichever encoding it came in.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Bool(bool),
    /// A JSON number, as written.
    Number(String),
    List(Vec<Value>),
    Object(Fields),
}

/// A request body's members; keys are matched case-insensitively, unknown keys ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, Value)>);

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// 415: a media type the API does not read.
    Unsupported(String),
    /// 400: the body is not what its media type says, or not the expected shape.
    Malformed(String),
}

impl Fields {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// The first of several spellings present.
    pub fn get_any(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// A string member: numbers and booleans are taken as their text; null or absent is `None`.
    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t.clone())),
            Some(Value::Number(n)) => Ok(Some(n.clone())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    }

    /// A string member that means something only when not blank (empty = not given).
    pub fn given(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self
            .text(key)?
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()))
    }

    /// An integer member, as a JSON number or a numeric string (PowerShell sends strings).
    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        let bad = || format!("{key} must be an integer");
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) | Some(Value::Text(n)) => {
                let n = n.trim();
                if n.is_empty() {
                    return Ok(None);
                }
                n.parse::<i64>().map(Some).map_err(|_| bad())
            }
            Some(_) => Err(bad()),
        }
    }

    /// A boolean member: JSON true/false, or the text `true`/`false` in any case.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, String> {
        let bad = || format!("{key} must be true or false");
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Text(t)) | Some(Value::Number(t)) => {
                match t.trim().to_ascii_lowercase().as_str() {
                    "" => Ok(None),
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    _ => Err(bad()),
                }
            }
            Some(_) => Err(bad()),
        }
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let bad = || format!("{key} must be a list of strings");
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Text(t)) => Ok(Some(vec![t.clone()])),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Text(t) => Ok(t.clone()),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }
}

/// Parses a request body by its `Content-Type`. `Ok(None)`: no body. `xml_root` is the local
/// name the XML root element must end with (`LicenseOperation`, `LoginUserBindingModel`).
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
    xml_root: &str,
) -> Result<Option<Fields>, BodyFault> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(BodyFault::Malformed("the body is not UTF-8 text".into()));
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media.as_str() {
        "application/json" | "text/json" => parse_json_or_form(text),
        m if m.ends_with("+json") => parse_json_or_form(text),
        "application/x-www-form-urlencoded" => Ok(Some(parse_form(text))),
        "application/xml" | "text/xml" => parse_xml(text, xml_root).map(Some),
        // No type: go by what the body looks like.
        "" => {
            let start = text.trim_start();
            if start.starts_with('<') {
                parse_xml(text, xml_root).map(Some)
            } else {
                parse_json_or_form(text)
            }
        }
        other => Err(BodyFault::Unsupported(other.to_owned())),
    }
}

/// JSON, falling back to form encoding: PowerShell's `Invoke-RestMethod` form-encodes a
/// hashtable body even when told the content type is JSON.
fn parse_json_or_form(text: &str) -> Result<Option<Fields>, BodyFault> {
    let start = text.trim_start();
    let looks_like_form =
        !start.starts_with(['{', '[', '"']) && start.contains('=') && !start.contains(['{', '}']);
    if looks_like_form {
        return Ok(Some(parse_form(text)));
    }
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| BodyFault::Malformed(format!("the body is not valid JSON: {e}")))?;
    match json {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(_) => match from_json(json) {
            Value::Object(fields) => Ok(Some(fields)),
            _ => Ok(None),
        },
        _ => Err(BodyFault::Malformed(
            "the body must be a JSON object".into(),
        )),
    }
}

fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Number(n.to_string()),
        serde_json::Value::String(s) => Value::Text(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Object(Fields(
            map.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        )),
    }
}

/// `a=1&b=2`; a key given more than once (in any case) becomes a list. Keys are found through
/// a map, so a body of many distinct keys costs linear time, not quadratic (before
/// authentication: `Provider/Login` reads form bodies).
fn parse_form(text: &str) -> Fields {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text.trim()).unwrap_or_default();
    let mut fields = Fields::default();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (k, v) in pairs {
        match seen.get(&k.to_ascii_lowercase()) {
            Some(&at) => match &mut fields.0[at].1 {
                Value::List(items) => items.push(Value::Text(v)),
                existing => {
                    let first = std::mem::replace(existing, Value::Null);
                    *existing = Value::List(vec![first, Value::Text(v)]);
                }
            },
            None => {
                seen.insert(k.to_ascii_lowercase(), fields.0.len());
                fields.0.push((k, Value::Text(v)));
            }
        }
    }
    fields
}

/// A DataContract document: the root's child elements are the members; an element with
/// children is a list of their texts (`NotificationEmails`), `i:nil="true"` is null.
fn parse_xml(text: &str, root: &str) -> Result<Fields, BodyFault> {
    let doc = xml::parse(text)
        .map_err(|e| BodyFault::Malformed(format!("the body is not valid XML: {e}")))?;
    let name = doc.name.to_ascii_lowercase();
    let expected = root.to_ascii_lowercase();
    if name != expected && !name.ends_with(&format!(".{expected}")) {
        return Err(BodyFault::Malformed(format!(
            "expected a <{root}> document, not <{}>",
            doc.name
        )));
    }
    let members = doc
        .children
        .iter()
        .map(|child| {
            let value = if child.is_nil() {
                Value::Null
            } else if child.children.is_empty() {
                Value::Text(child.value().to_owned())
            } else {
                Value::List(
                    child
                        .children
                        .iter()
                        .map(|c| Value::Text(c.value().to_owned()))
                        .collect(),
                )
            };
            (child.name.clone(), value)
        })
        .collect();
    Ok(Fields(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Fields {
        parse_body(Some("application/json"), text.as_bytes(), "X")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn user_modes_in_every_spelling() {
        for (input, want) in [
            (r#"{"LicenseManagmentMode": 0}"#, Some(LicenseMode::Manual)),
            (
                r#"{"licensemanagmentmode": "1"}"#,
                Some(LicenseMode::Automatic),
            ),
            (
                r#"{"LicenseManagmentMode": " 2 "}"#,
                Some(LicenseMode::Company),
            ),
            (
                r#"{"LicenseManagmentMode": "Automatic"}"#,
                Some(LicenseMode::Automatic),
            ),
            (
                r#"{"LicenseManagmentMode": "CompanySettings"}"#,
                Some(LicenseMode::Company),
            ),
            (r#"{"LicenseManagmentMode": ""}"#, None),
            (r#"{"LicenseManagmentMode": null}"#, None),
        ] {
            let f = json(input);
            let v = f.get("LicenseManagmentMode").unwrap();
            assert_eq!(parse_user_mode(v).unwrap(), want, "{input}");
        }
        // The correctly spelled key is read too.
        let f = json(r#"{"LicenseManagementMode": 1}"#);
        let v = f
            .get_any(&["LicenseManagmentMode", "LicenseManagementMode"])
            .unwrap();
        assert_eq!(parse_user_mode(v).unwrap(), Some(LicenseMode::Automatic));
        for bad in [
            r#"{"m": 3}"#,
            r#"{"m": "-1"}"#,
            r#"{"m": "Sometimes"}"#,
            r#"{"m": [0]}"#,
            r#"{"m": true}"#,
        ] {
            assert!(
                parse_user_mode(json(bad).get("m").unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn license_settings_as_numbers_numeric_strings_and_names() {
        for (input, want) in [
            (r#"{"LicenseSettings": 0}"#, PoolMode::Custom),
            (r#"{"LicenseSettings": "1"}"#, PoolMode::Global),
            (r#"{"LicenseSettings": "2"}"#, PoolMode::Company),
            (
                r#"{"LicenseSettings": "GlobalLicensesPool"}"#,
                PoolMode::Global,
            ),
        ] {
            let f = json(input);
            assert_eq!(
                parse_pool_mode(f.get("licensesettings").unwrap()).unwrap(),
                Some(want),
                "{input}"
            );
        }
        assert!(parse_pool_mode(&Value::Number("7".into())).is_err());
        assert!(parse_pool_mode(&Value::Number("1.5".into())).is_err());
    }

    #[test]
    fn numbers_booleans_and_strings_are_lenient() {
        let f = json(r#"{"StorageLimit": "-1", "Enabled": "True", "Name": 42, "N": 1.5}"#);
        assert_eq!(f.int("storagelimit").unwrap(), Some(-1));
        assert_eq!(f.boolean("enabled").unwrap(), Some(true));
        assert_eq!(f.text("name").unwrap().as_deref(), Some("42"));
        assert!(f.int("N").is_err());
        assert_eq!(f.int("missing").unwrap(), None);
        assert_eq!(f.given("missing").unwrap(), None);
        let f = json(r#"{"Email": "  ", "Emails": ["a", "b"], "Enabled": "maybe"}"#);
        assert_eq!(f.given("Email").unwrap(), None);
        assert_eq!(f.strings("emails").unwrap().unwrap(), vec!["a", "b"]);
        assert!(f.boolean("Enabled").is_err());
    }

    #[test]
    fn form_bodies_and_the_powershell_fallback() {
        let form = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"LicenseID=abc&UserID=d%20e",
            "LicenseOperation",
        )
        .unwrap()
        .unwrap();
        assert_eq!(form.text("licenseid").unwrap().as_deref(), Some("abc"));
        assert_eq!(form.text("UserID").unwrap().as_deref(), Some("d e"));
        // A hashtable posted with a JSON content type arrives form-encoded.
        let fallback = parse_body(
            Some("application/json; charset=utf-8"),
            b"UserName=admin&Password=x",
            "X",
        )
        .unwrap()
        .unwrap();
        assert_eq!(fallback.text("username").unwrap().as_deref(), Some("admin"));
        // Repeated keys make a list.
        let repeated = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"e=a&E=b&e=c",
            "X",
        )
        .unwrap()
        .unwrap();
        assert_eq!(repeated.strings("e").unwrap().unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn xml_bodies_by_root_name() {
        let doc = r#"<LicenseOperation xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/MBSAPImvc.Engine.Models">
            <LicenseID>l-1</LicenseID><UserID i:nil="true"/></LicenseOperation>"#;
        let f = parse_body(Some("text/xml"), doc.as_bytes(), "LicenseOperation")
            .unwrap()
            .unwrap();
        assert_eq!(f.text("LicenseID").unwrap().as_deref(), Some("l-1"));
        assert_eq!(f.text("UserID").unwrap(), None);
        let login = r#"<ProviderController.LoginUserBindingModel xmlns="http://schemas.datacontract.org/2004/07/MBSAPImvc.Controllers"><Password>p</Password><UserName>u</UserName></ProviderController.LoginUserBindingModel>"#;
        let f = parse_body(None, login.as_bytes(), "LoginUserBindingModel")
            .unwrap()
            .unwrap();
        assert_eq!(f.text("username").unwrap().as_deref(), Some("u"));
        assert!(matches!(
            parse_body(Some("application/xml"), b"<Other/>", "LicenseOperation"),
            Err(BodyFault::Malformed(_))
        ));
        assert!(matches!(
            parse_body(
                Some("application/xml"),
                b"<LicenseOperation>",
                "LicenseOperation"
            ),
            Err(BodyFault::Malformed(_))
        ));
    }

    #[test]
    fn bad_bodies_and_media_types() {
        assert!(matches!(
            parse_body(Some("application/json"), b"{\"a\":", "X"),
            Err(BodyFault::Malformed(_))
        ));
        assert!(matches!(
            parse_body(Some("application/json"), b"[1, 2]", "X"),
            Err(BodyFault::Malformed(_))
        ));
        assert!(matches!(
            parse_body(Some("application/json"), b"\xff\xfe", "X"),
            Err(BodyFault::Malformed(_))
        ));
        assert_eq!(
            parse_body(Some("text/plain"), b"hello", "X"),
            Err(BodyFault::Unsupported("text/plain".into()))
        );
        assert_eq!(parse_body(Some("text/plain"), b"  ", "X"), Ok(None));
        assert_eq!(parse_body(Some("application/json"), b"null", "X"), Ok(None));
    }

    /// Found by the `msp360` fuzz target's timeouts: 100,000 distinct form keys took minutes
    /// (each key was looked for among all before it). Now linear.
    #[test]
    fn form_bodies_with_many_distinct_keys_parse_in_linear_time() {
        let body: String =
            (0..100_000).map(|i| format!("k{i}=v&")).collect::<String>() + "K1=again";
        let started = std::time::Instant::now();
        let fields = parse_body(
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
            "X",
        )
        .unwrap()
        .unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(fields.0.len(), 100_000);
        assert_eq!(
            fields.get("k1"),
            Some(&Value::List(vec![
                Value::Text("v".into()),
                Value::Text("again".into())
            ]))
        );
    }

    #[test]
    fn accept_picks_xml_only_when_asked() {
        assert_eq!(negotiate(None), Format::Json);
        assert_eq!(negotiate(Some("*/*")), Format::Json);
        assert_eq!(negotiate(Some("image/png")), Format::Json);
        assert_eq!(negotiate(Some("application/xml")), Format::Xml);
        assert_eq!(
            negotiate(Some("text/xml, application/json;q=0.5")),
            Format::Xml
        );
        assert_eq!(
            negotiate(Some("text/xml;q=0.2, application/json")),
            Format::Json
        );
        assert_eq!(negotiate(Some("text/xml;q=0")), Format::Json);
    }

    #[test]
    fn dates_as_the_api_writes_them() {
        let t = time::macros::datetime!(2018-04-28 13:50:43.25 UTC);
        assert_eq!(iso_local(t), "2018-04-28T13:50:43");
        assert_eq!(rfc1123(t), "Sat, 28 Apr 2018 13:50:43 GMT");
        let shifted = time::macros::datetime!(2018-04-28 15:50:43 +02:00);
        assert_eq!(iso_local(shifted), "2018-04-28T13:50:43");
    }

    #[test]
    fn output_in_json_and_datacontract_xml() {
        let out = Out::Obj {
            name: "UsersModels",
            fields: vec![
                ("ID", Out::Str("u&1".into())),
                ("Company", Out::Null),
                ("LicenseManagmentMode", user_mode_out(LicenseMode::Company)),
                (
                    "NotificationEmails",
                    Out::List {
                        item: "string",
                        items: vec![Out::Str("a@b".into())],
                    },
                ),
            ],
        };
        assert_eq!(
            to_json(&out),
            r#"{"ID":"u&1","Company":null,"LicenseManagmentMode":2,"NotificationEmails":["a@b"]}"#
        );
        let text = to_xml(&out, "UsersModels");
        let doc = xml::parse(&text).unwrap();
        assert_eq!(doc.namespace.as_deref(), Some(MODELS_NS));
        let names: Vec<&str> = doc.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Company",
                "ID",
                "LicenseManagmentMode",
                "NotificationEmails"
            ]
        );
        assert!(doc.child("Company").unwrap().is_nil());
        assert_eq!(doc.child("ID").unwrap().value(), "u&1");
        assert_eq!(
            doc.child("LicenseManagmentMode").unwrap().value(),
            "CompanySettings"
        );
        let null = to_xml(&Out::Null, "LicensesModels");
        assert!(xml::parse(&null).unwrap().is_nil());
        let id = xml::parse(&to_xml(&Out::Str("x".into()), "")).unwrap();
        assert_eq!((id.name.as_str(), id.value()), ("string", "x"));
    }
}
