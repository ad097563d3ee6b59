//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed by hand and evaluated
//! over a resource's SCIM JSON.
//!
//! No crate on crates.io fits: `scim-filter` keeps an attribute's URN private, parses no PATCH
//! path (`emails[type eq "work"].value`) and pulls chrono and rust_decimal along. The grammar is
//! small; [`parse_filter`] and [`parse_path`] take any text and answer an error, never panic
//! (a property test feeds them arbitrary strings).

use serde_json::Value;

/// `urn:...:User:name.givenName` → urn, `name`, `givenName`. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work"]`: some element of a multi-valued attribute matches.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH operation's target: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Filters nest at most this deep (a hostile filter cannot exhaust the stack).
const MAX_DEPTH: usize = 32;

pub fn parse_filter(text: &str) -> Result<Filter, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    let f = p.or_expr(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text"));
    }
    Ok(f)
}

pub fn parse_path(text: &str) -> Result<PatchPath, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    p.ws();
    let mut attr = p.attr_path()?;
    let mut filter = None;
    if p.eat("[") {
        if attr.sub.is_some() {
            return Err(p.err("a value filter follows an attribute, not a sub-attribute"));
        }
        filter = Some(p.or_expr(1)?);
        p.ws();
        if !p.eat("]") {
            return Err(p.err("expected ]"));
        }
        if p.eat(".") {
            attr.sub = Some(p.name()?);
        }
    }
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text"));
    }
    Ok(PatchPath { attr, filter })
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> ParseError {
        ParseError(format!("{what} at character {}", self.pos + 1))
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) {
        let trimmed = self.rest().trim_start_matches(' ');
        self.pos = self.s.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// A keyword (`and`, `not`, an operator) followed by a space, `(` or the end.
    fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest();
        let Some(head) = rest.get(..word.len()) else {
            return false;
        };
        let next = rest[word.len()..].chars().next();
        if head.eq_ignore_ascii_case(word) && matches!(next, None | Some(' ') | Some('(')) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let mut left = self.and_expr(depth)?;
        loop {
            let save = self.pos;
            self.ws();
            if self.keyword("or") {
                let right = self.and_expr(depth)?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let mut left = self.unary(depth)?;
        loop {
            let save = self.pos;
            self.ws();
            if self.keyword("and") {
                let right = self.unary(depth)?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("filter nested too deep"));
        }
        self.ws();
        if self.keyword("not") {
            self.ws();
            if !self.eat("(") {
                return Err(self.err("expected ( after not"));
            }
            let inner = self.group(depth)?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.eat("(") {
            return self.group(depth);
        }
        let path = self.attr_path()?;
        if self.eat("[") {
            if path.sub.is_some() {
                return Err(self.err("a value filter follows an attribute, not a sub-attribute"));
            }
            let inner = self.or_expr(depth + 1)?;
            self.ws();
            if !self.eat("]") {
                return Err(self.err("expected ]"));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        if !self.eat(" ") {
            return Err(self.err("expected an operator after the attribute"));
        }
        self.ws();
        if self.keyword("pr") {
            return Ok(Filter::Present(path));
        }
        let op = [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("co", Op::Co),
            ("sw", Op::Sw),
            ("ew", Op::Ew),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("le", Op::Le),
        ]
        .into_iter()
        .find(|(word, _)| self.keyword(word))
        .map(|(_, op)| op)
        .ok_or_else(|| self.err("unknown operator"))?;
        self.ws();
        let value = self.value()?;
        Ok(Filter::Compare(path, op, value))
    }

    fn group(&mut self, depth: usize) -> Result<Filter, ParseError> {
        let inner = self.or_expr(depth + 1)?;
        self.ws();
        if !self.eat(")") {
            return Err(self.err("expected )"));
        }
        Ok(inner)
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$'))
            .unwrap_or(rest.len());
        if len == 0 || !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$') {
            return Err(self.err("expected an attribute name"));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    fn attr_path(&mut self) -> Result<AttrPath, ParseError> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-$:.".contains(c)))
            .unwrap_or(rest.len());
        let word = &rest[..len];
        let (urn, local) = match word.get(..4) {
            Some(head) if head.eq_ignore_ascii_case("urn:") => match word.rfind(':') {
                Some(at) => (Some(word[..at].to_owned()), &word[at + 1..]),
                None => (None, word),
            },
            _ => (None, word),
        };
        let (attr, sub) = match local.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (local, None),
        };
        let valid = |n: &str| {
            n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-$".contains(c))
        };
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(self.err("expected an attribute path"));
        }
        self.pos += len;
        Ok(AttrPath {
            urn,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let rest = self.rest();
        if rest.starts_with('"') {
            // A JSON string: find its closing quote, skipping escapes, and let serde read it.
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        let text = &rest[..=i];
                        let v: Value = serde_json::from_str(text)
                            .map_err(|_| self.err("invalid string value"))?;
                        self.pos += i + 1;
                        return Ok(v);
                    }
                    _ => i += 1,
                }
            }
            return Err(self.err("unterminated string"));
        }
        let len = rest.find([' ', ')', ']']).unwrap_or(rest.len());
        let word = &rest[..len];
        let v = match word {
            w if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            w if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            w if w.eq_ignore_ascii_case("null") => Value::Null,
            w => match serde_json::from_str::<serde_json::Number>(w) {
                Ok(n) => Value::Number(n),
                Err(_) => {
                    return Err(self.err("expected a value (string, number, true, false, null)"));
                }
            },
        };
        self.pos += len;
        Ok(v)
    }
}

/// An object's member by name, compared case-insensitively (SCIM attribute names are).
pub fn member<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Attributes whose values compare case-sensitively (RFC 7643 `caseExact`).
fn case_exact(attr: &str) -> bool {
    ["id", "externalId", "value", "$ref"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(attr))
}

impl Filter {
    /// Whether the filter tests the top-level attribute `attr` anywhere.
    pub fn names(&self, attr: &str) -> bool {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => a.names(attr) || b.names(attr),
            Filter::Not(f) => f.names(attr),
            Filter::ValuePath(path, _) | Filter::Present(path) | Filter::Compare(path, _, _) => {
                path.attr.eq_ignore_ascii_case(attr)
            }
        }
    }

    /// Whether `resource` (SCIM JSON) matches.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(resource) && b.matches(resource),
            Filter::Or(a, b) => a.matches(resource) || b.matches(resource),
            Filter::Not(f) => !f.matches(resource),
            Filter::ValuePath(path, f) => match member(resource, &path.attr) {
                Some(Value::Array(items)) => items.iter().any(|element| f.matches(element)),
                Some(element) => f.matches(element),
                None => false,
            },
            Filter::Present(path) => values_at(resource, &path.attr, path.sub.as_deref())
                .iter()
                .any(|v| !v.is_null() && *v != &Value::String(String::new())),
            Filter::Compare(path, op, expected) => {
                let exact = case_exact(path.sub.as_deref().unwrap_or(&path.attr));
                values_at(resource, &path.attr, path.sub.as_deref())
                    .iter()
                    .any(|actual| compare(actual, *op, expected, exact))
            }
        }
    }
}

/// The values an attribute path names: one for a simple attribute, each element's for a
/// multi-valued one (a complex element without a sub-attribute answers its `value`).
fn values_at<'v>(resource: &'v Value, attr: &str, sub: Option<&str>) -> Vec<&'v Value> {
    let Some(top) = member(resource, attr) else {
        return Vec::new();
    };
    let elements: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    elements
        .into_iter()
        .filter_map(|element| match (sub, element) {
            (Some(sub), element) => member(element, sub),
            (None, Value::Object(_)) if top.is_array() => member(element, "value"),
            (None, element) => Some(element),
        })
        .collect()
}

fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (
                a.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
                _ => false,
            }
        }
        (a, e) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "userName": "Ann.Smith@example.com",
            "externalId": "00u1",
            "name": {"givenName": "Ann", "familyName": "Smith"},
            "emails": [{"value": "ann@example.com", "type": "work"}],
            "active": true,
        })
    }

    fn m(filter: &str) -> bool {
        parse_filter(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(&user())
    }

    #[test]
    fn operators_and_logic() {
        assert!(m(r#"userName eq "ann.smith@example.com""#));
        assert!(m(r#"USERNAME Eq "ANN.SMITH@EXAMPLE.COM""#));
        assert!(!m(r#"externalId eq "00U1""#), "externalId is caseExact");
        assert!(m(r#"userName sw "ann" and name.familyName co "mit""#));
        assert!(m(r#"userName ew "example.org" or active eq true"#));
        assert!(!m(r#"not (active eq true)"#));
        assert!(m(r#"emails[type eq "work" and value co "@example"]"#));
        assert!(m(r#"emails co "ann@""#));
        assert!(m(r#"emails.value eq "ann@example.com""#));
        assert!(m("name.givenName pr"));
        assert!(!m("displayName pr"));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "Ann""#
        ));
        assert!(m(r#"userName gt "a" and userName lt "b""#));
        // `and` binds tighter than `or`.
        assert!(m(
            r#"active eq false and userName eq "x" or active eq true"#
        ));
        assert!(!m(
            r#"active eq false and (userName eq "x" or active eq true)"#
        ));
    }

    #[test]
    fn paths() {
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(p.attr.attr, "members");
        assert!(p.filter.is_some());
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.sub.as_deref(), Some("value"));
        let p = parse_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(
            (p.attr.attr.as_str(), p.attr.sub.as_deref()),
            ("name", Some("givenName"))
        );
    }

    #[test]
    fn bad_filters_are_errors() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "a"#,
            r#"(userName eq "a""#,
            r#"userName eq "a" and"#,
            "emails[type eq \"a\"",
            &"(".repeat(100),
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(text in "\\PC{0,60}") {
            let _ = parse_filter(&text).map(|f| f.matches(&user()));
            let _ = parse_path(&text);
        }

        #[test]
        fn filter_shaped_text_never_panics(text in r#"[a-zA-Z.\[\]()" :]{0,60}"#) {
            let _ = parse_filter(&text).map(|f| f.matches(&user()));
            let _ = parse_path(&text);
        }
    }
}
