//! SCIM PATCH (RFC 7644 §3.5.2) over a resource's JSON, in the shapes identity providers send:
//! Okta's `replace` with a value object and no path, Entra ID's `"op": "Replace"` (any case),
//! `"path": "active"` with `"value": "False"`, and `members[value eq "..."]` path filters.

use serde_json::{Map, Value};

use super::ScimError;
use super::filter::{self, Filter, PatchPath};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug)]
pub struct Operation {
    pub kind: Kind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// The operations of a PatchOp body, checked before any is applied.
pub fn operations(body: &Value, schema: &str) -> Result<Vec<Operation>, ScimError> {
    let schemas = filter::member(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v.as_str() == Some(schema))) {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body names the schema {schema}"),
        ));
    }
    let Some(Value::Array(items)) = filter::member(body, "Operations") else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "a PATCH body has an Operations array",
        ));
    };
    items
        .iter()
        .map(|item| {
            let op = filter::member(item, "op")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = match op.to_ascii_lowercase().as_str() {
                "add" => Kind::Add,
                "replace" => Kind::Replace,
                "remove" => Kind::Remove,
                _ => {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        format!("unknown op {op:?}"),
                    ));
                }
            };
            let path = match filter::member(item, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(
                    filter::parse_path(p)
                        .map_err(|e| ScimError::bad("invalidPath", format!("path {p:?}: {e}")))?,
                ),
                Some(_) => return Err(ScimError::bad("invalidPath", "path must be a string")),
            };
            let value = filter::member(item, "value").cloned();
            match (kind, &path, &value) {
                (Kind::Remove, None, _) => Err(ScimError::bad("noTarget", "remove needs a path")),
                (Kind::Add | Kind::Replace, _, None) => Err(ScimError::bad(
                    "invalidValue",
                    format!("{op} needs a value"),
                )),
                (Kind::Add | Kind::Replace, None, Some(v)) if !v.is_object() => Err(
                    ScimError::bad("invalidValue", "without a path, the value is an object"),
                ),
                _ => Ok(Operation { kind, path, value }),
            }
        })
        .collect()
}

/// The key an object already uses for `name` (any case), or `name`.
fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn object_mut<'v>(
    value: &'v mut Value,
    what: &str,
) -> Result<&'v mut Map<String, Value>, ScimError> {
    if value.is_null() {
        *value = Value::Object(Map::new());
    }
    value
        .as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidPath", format!("{what} is not complex")))
}

/// Sets (replace) or merges (add: arrays append, objects merge) `value` at `key`.
fn put(object: &mut Map<String, Value>, name: &str, value: Value, kind: Kind) {
    let key = key_of(object, name);
    match (kind, object.get_mut(&key), value) {
        (Kind::Add, Some(Value::Array(existing)), Value::Array(new)) => {
            for item in new {
                if !existing.contains(&item) {
                    existing.push(item);
                }
            }
        }
        (Kind::Add, Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                let k = key_of(existing, &k);
                existing.insert(k, v);
            }
        }
        (_, _, value) => {
            object.insert(key, value);
        }
    }
}

pub fn apply(resource: &mut Value, op: &Operation, core_schema: &str) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        // No path: each member of the value is an attribute (or, for Entra and Okta, a dotted
        // path such as "name.givenName", or the core schema's URN holding attributes).
        let Some(Value::Object(members)) = &op.value else {
            return Err(ScimError::bad(
                "invalidValue",
                "without a path, the value is an object",
            ));
        };
        for (name, value) in members {
            if name.eq_ignore_ascii_case(core_schema) {
                let nested = Operation {
                    kind: op.kind,
                    path: None,
                    value: Some(value.clone()),
                };
                apply(resource, &nested, core_schema)?;
                continue;
            }
            let path = filter::parse_path(name)
                .map_err(|e| ScimError::bad("invalidPath", format!("{name:?}: {e}")))?;
            let nested = Operation {
                kind: op.kind,
                path: Some(path),
                value: Some(value.clone()),
            };
            apply(resource, &nested, core_schema)?;
        }
        return Ok(());
    };
    if let Some(urn) = &path.attr.urn
        && !urn.eq_ignore_ascii_case(core_schema)
    {
        return Err(ScimError::bad(
            "invalidPath",
            format!("unknown schema {urn}"),
        ));
    }
    let root = object_mut(resource, "the resource")?;
    let attr = key_of(root, &path.attr.attr);
    match (&path.filter, &path.attr.sub) {
        (None, None) => match op.kind {
            Kind::Remove => {
                root.remove(&attr);
            }
            kind => put(root, &attr, op.value.clone().unwrap_or(Value::Null), kind),
        },
        (None, Some(sub)) => {
            let parent = root.entry(attr.clone()).or_insert(Value::Null);
            let parent = object_mut(parent, &attr)?;
            match op.kind {
                Kind::Remove => {
                    let sub = key_of(parent, sub);
                    parent.remove(&sub);
                }
                kind => put(parent, sub, op.value.clone().unwrap_or(Value::Null), kind),
            }
            if parent.is_empty() {
                root.remove(&attr);
            }
        }
        (Some(filter), sub) => {
            apply_filtered(root, &attr, filter, sub.as_deref(), op)?;
        }
    }
    Ok(())
}

/// `attr[filter]` or `attr[filter].sub` on a multi-valued attribute.
fn apply_filtered(
    root: &mut Map<String, Value>,
    attr: &str,
    filter: &Filter,
    sub: Option<&str>,
    op: &Operation,
) -> Result<(), ScimError> {
    let list = root
        .entry(attr.to_owned())
        .or_insert(Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Value::Array(items) = list else {
        return Err(ScimError::bad(
            "invalidPath",
            format!("{attr} is not multi-valued"),
        ));
    };
    let matching: Vec<usize> = (0..items.len())
        .filter(|&i| filter.matches(&items[i]))
        .collect();
    match (op.kind, sub) {
        (Kind::Remove, None) => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matching.contains(&index);
                index += 1;
                keep
            });
        }
        (Kind::Remove, Some(sub)) => {
            for &i in &matching {
                if let Some(object) = items[i].as_object_mut() {
                    let key = key_of(object, sub);
                    object.remove(&key);
                }
            }
        }
        (kind, sub) => {
            let value = op.value.clone().unwrap_or(Value::Null);
            if matching.is_empty() {
                // Entra sets `emails[type eq "work"].value` on a user with no such e-mail: the
                // element is made from the filter's equality.
                let Filter::Compare(key, filter::Op::Eq, expected) = filter else {
                    return Err(ScimError::bad(
                        "noTarget",
                        format!("no {attr} value matches the filter"),
                    ));
                };
                let mut element = Map::new();
                element.insert(key.attr.clone(), expected.clone());
                match (sub, value) {
                    (Some(sub), value) => {
                        element.insert(sub.to_owned(), value);
                    }
                    (None, Value::Object(fields)) => element.extend(fields),
                    (None, _) => {
                        return Err(ScimError::bad(
                            "invalidValue",
                            "the value must be an object",
                        ));
                    }
                }
                items.push(Value::Object(element));
            } else {
                for &i in &matching {
                    match (sub, &value) {
                        (Some(sub), value) => {
                            let object = object_mut(&mut items[i], attr)?;
                            put(object, sub, value.clone(), kind);
                        }
                        (None, value) => items[i] = value.clone(),
                    }
                }
            }
        }
    }
    if items.is_empty() {
        root.remove(attr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn patched(mut resource: Value, body: Value) -> Value {
        let ops = operations(&body, "urn:ietf:params:scim:api:messages:2.0:PatchOp").unwrap();
        for op in &ops {
            apply(&mut resource, op, CORE).unwrap();
        }
        resource
    }

    fn body(ops: Value) -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
    }

    #[test]
    fn okta_replace_with_a_value_object() {
        let out = patched(
            json!({"userName": "a", "active": true}),
            body(json!([{"op": "replace", "value": {"active": false}}])),
        );
        assert_eq!(out["active"], json!(false));
    }

    #[test]
    fn entra_shapes() {
        let out = patched(
            json!({"userName": "a", "active": true, "name": {"givenName": "A"}}),
            body(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "B"},
                {"op": "Add", "value": {"name.givenName": "C", "displayName": "C B"}},
            ])),
        );
        assert_eq!(out["active"], json!("False"));
        assert_eq!(
            out["emails"],
            json!([{"type": "work", "value": "a@example.com"}])
        );
        assert_eq!(out["name"], json!({"givenName": "C", "familyName": "B"}));
        assert_eq!(out["displayName"], json!("C B"));
        let out = patched(
            json!({"members": [{"value": "1"}, {"value": "2"}]}),
            body(json!([
                {"op": "Remove", "path": "members[value eq \"1\"]"},
                {"op": "Add", "path": "members", "value": [{"value": "3"}]},
            ])),
        );
        assert_eq!(out["members"], json!([{"value": "2"}, {"value": "3"}]));
    }

    #[test]
    fn bad_operations_are_scim_errors() {
        for ops in [
            json!([{"op": "move", "path": "a"}]),
            json!([{"op": "remove"}]),
            json!([{"op": "add", "path": "a"}]),
            json!([{"op": "add", "value": 3}]),
            json!([{"op": "add", "path": "a[", "value": 3}]),
        ] {
            let r = operations(
                &body(ops.clone()),
                "urn:ietf:params:scim:api:messages:2.0:PatchOp",
            );
            assert!(r.is_err(), "{ops}");
        }
        assert!(
            operations(
                &json!({"Operations": []}),
                "urn:ietf:params:scim:api:messages:2.0:PatchOp"
            )
            .is_err()
        );
    }
}
