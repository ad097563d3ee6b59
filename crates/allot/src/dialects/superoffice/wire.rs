//! NetServer's carriers as one ordered value type, rendered as JSON, as REST XML or inside SOAP.
//!
//! Field order matters on this wire (WCF's `xs:sequence`, and clients that compare payloads), so
//! carriers are built as ordered field lists instead of serde structs, and every renderer walks
//! them in that order. `$select` works on the same tree.

use std::fmt::Write as _;

use crate::xml::escape;

/// A NetServer value.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    /// A carrier: its DataContract type name and its fields in wire order.
    Obj(&'static str, Vec<(&'static str, Wire)>),
    /// An array: the DataContract name of its items (`int`, `string`, `ModuleLicenseLink`).
    Arr(&'static str, Vec<Wire>),
    /// A string-keyed dictionary (`FieldProperties`): JSON object, empty in XML.
    Map(Vec<(String, Wire)>),
}

impl Wire {
    pub fn str(s: impl Into<String>) -> Wire {
        Wire::Str(s.into())
    }

    /// The DataContract name of this value's type (the XML root for REST).
    pub fn type_name(&self) -> String {
        match self {
            Wire::Obj(name, _) => (*name).to_owned(),
            Wire::Arr(item, _) => format!("ArrayOf{item}"),
            Wire::Bool(_) => "boolean".into(),
            Wire::Int(_) => "int".into(),
            Wire::Str(_) => "string".into(),
            Wire::Null | Wire::Map(_) => "Object".into(),
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        write_json(self, &mut out);
        out
    }

    /// REST XML: an unqualified root named after the type, fields as child elements.
    pub fn to_rest_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        let root = self.type_name();
        if matches!(self, Wire::Null) {
            out.push_str(
                "<Object xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" i:nil=\"true\"/>",
            );
            return out;
        }
        write_xml_element(
            &root,
            self,
            " xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"",
            "",
            &mut out,
        );
        out
    }

    /// The content of a SOAP element holding this value: child elements qualified with
    /// `prefix` (the service namespace), array items of primitive type in the Arrays namespace.
    pub fn write_soap_content(&self, prefix: &str, out: &mut String) {
        match self {
            Wire::Null => {}
            Wire::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Wire::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Wire::Str(s) => out.push_str(&escape(s)),
            Wire::Obj(_, fields) => {
                for (name, value) in fields {
                    write_soap_element(prefix, name, value, out);
                }
            }
            Wire::Arr(item, items) => {
                let item_prefix = if is_primitive(item) { "a" } else { prefix };
                for value in items {
                    write_soap_element(item_prefix, item, value, out);
                }
            }
            // Dictionaries only travel as carrier metadata, which SOAP does not carry.
            Wire::Map(_) => {}
        }
    }

    /// Applies `$select`: the listed properties (case-insensitive, `/` for nested members) keep
    /// their values, every other property of a carrier becomes null. Arrays apply it to each
    /// item. An empty selection keeps everything.
    pub fn select(self, selection: &[Vec<String>]) -> Wire {
        if selection.is_empty() {
            return self;
        }
        match self {
            Wire::Arr(item, items) => Wire::Arr(
                item,
                items.into_iter().map(|w| w.select(selection)).collect(),
            ),
            Wire::Obj(name, fields) => Wire::Obj(
                name,
                fields
                    .into_iter()
                    .map(|(field, value)| {
                        let nested: Vec<Vec<String>> = selection
                            .iter()
                            .filter(|path| path[0].eq_ignore_ascii_case(field))
                            .map(|path| path[1..].to_vec())
                            .collect();
                        if nested.is_empty() {
                            (field, Wire::Null)
                        } else if nested.iter().any(|rest| rest.is_empty()) {
                            (field, value)
                        } else {
                            (field, value.select(&nested))
                        }
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Parses a `$select` value: comma-separated property paths, `/` between levels.
pub fn parse_select(text: &str) -> Vec<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split('/')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_primitive(type_name: &str) -> bool {
    matches!(type_name, "int" | "string" | "boolean" | "long")
}

fn write_json(value: &Wire, out: &mut String) {
    match value {
        Wire::Null => out.push_str("null"),
        Wire::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Wire::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Wire::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())),
        Wire::Obj(_, fields) => {
            out.push('{');
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{name}\":");
                write_json(v, out);
            }
            out.push('}');
        }
        Wire::Map(entries) => {
            out.push('{');
            for (i, (name, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into()));
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
        Wire::Arr(_, items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out);
            }
            out.push(']');
        }
    }
}

fn write_xml_element(name: &str, value: &Wire, attributes: &str, _ns: &str, out: &mut String) {
    match value {
        Wire::Null => {
            let _ = write!(out, "<{name}{attributes} i:nil=\"true\"/>");
        }
        Wire::Bool(_) | Wire::Int(_) | Wire::Str(_) => {
            let _ = write!(out, "<{name}{attributes}>");
            value.write_soap_content("", out);
            let _ = write!(out, "</{name}>");
        }
        Wire::Obj(_, fields) => {
            let _ = write!(out, "<{name}{attributes}>");
            for (field, v) in fields {
                write_xml_element(field, v, "", "", out);
            }
            let _ = write!(out, "</{name}>");
        }
        Wire::Arr(item, items) => {
            let _ = write!(out, "<{name}{attributes}>");
            for v in items {
                write_xml_element(item, v, "", "", out);
            }
            let _ = write!(out, "</{name}>");
        }
        Wire::Map(_) => {
            let _ = write!(out, "<{name}{attributes}/>");
        }
    }
}

fn write_soap_element(prefix: &str, name: &str, value: &Wire, out: &mut String) {
    let qualified = if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}:{name}")
    };
    match value {
        Wire::Null => {
            let _ = write!(out, "<{qualified} i:nil=\"true\"/>");
        }
        Wire::Map(_) => {}
        _ => {
            let _ = write!(out, "<{qualified}>");
            value.write_soap_content(prefix, out);
            let _ = write!(out, "</{qualified}>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Wire {
        Wire::Arr(
            "ModuleLicenseLink",
            vec![Wire::Obj(
                "ModuleLicenseLink",
                vec![
                    ("Name", Wire::str("web & <mobile>")),
                    ("Total", Wire::Int(3)),
                    (
                        "Category",
                        Wire::Obj(
                            "Category",
                            vec![("Id", Wire::Int(7)), ("Value", Wire::str("x"))],
                        ),
                    ),
                    ("FieldProperties", Wire::Map(vec![])),
                ],
            )],
        )
    }

    #[test]
    fn json_keeps_field_order() {
        assert_eq!(
            sample().to_json(),
            r#"[{"Name":"web & <mobile>","Total":3,"Category":{"Id":7,"Value":"x"},"FieldProperties":{}}]"#
        );
    }

    #[test]
    fn select_nulls_what_is_not_listed() {
        let selected = sample().select(&parse_select("name, category/id"));
        assert_eq!(
            selected.to_json(),
            r#"[{"Name":"web & <mobile>","Total":null,"Category":{"Id":7,"Value":null},"FieldProperties":null}]"#
        );
        assert_eq!(sample().select(&parse_select(" , ")), sample());
    }

    #[test]
    fn rest_xml_is_named_after_the_type_and_escaped() {
        let xml = sample().to_rest_xml();
        assert!(xml.contains("<ArrayOfModuleLicenseLink xmlns:i="), "{xml}");
        assert!(
            xml.contains("<Name>web &amp; &lt;mobile&gt;</Name>"),
            "{xml}"
        );
        crate::xml::parse(&xml).expect("well-formed");
        let null = Wire::Null.to_rest_xml();
        crate::xml::parse(&null).expect("well-formed");
    }
}
