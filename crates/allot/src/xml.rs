//! Hardened XML reading and small helpers for writing it, shared by the SOAP and XML dialects.
//!
//! Reading builds a namespace-resolved element tree. It refuses anything a wire client has no
//! business sending: DTDs (so no entity declarations, hence no entity expansion attacks), unknown
//! entity references, more than [`MAX_DEPTH`] levels of nesting or [`MAX_NODES`] elements, more
//! than [`MAX_ATTRIBUTES`] attributes on one element or [`MAX_NAMES`] attributes in all (checking
//! duplicates in linear time: quick-xml's own check compares every pair). Input size is bounded
//! before it gets here (the server's body limit). It never panics on any input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
pub const MAX_NODES: usize = 100_000;
/// Most attributes (namespace declarations included) on one element.
pub const MAX_ATTRIBUTES: usize = 256;
/// Most attributes in one document.
pub const MAX_NAMES: usize = 100_000;

/// One element: its namespace URI (if bound), local name, attributes by local name, child
/// elements and the text directly inside it (concatenated, whitespace kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub namespace: Option<String>,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The first child with this local name, compared case-insensitively (DataContract and
    /// NetServer clients differ in casing more often than in anything else).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn attribute(&self, local_name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == local_name)
            .map(|(_, v)| v.as_str())
    }

    /// `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        self.attribute("nil").is_some_and(|v| v.trim() == "true")
    }

    /// The trimmed text content.
    pub fn value(&self) -> &str {
        self.text.trim()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the document is not well-formed XML: {0}")]
    Malformed(String),
    #[error("document type declarations are not accepted")]
    Dtd,
    #[error("unknown entity reference &{0};")]
    Entity(String),
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_NODES} elements")]
    TooLarge,
    #[error("more than {MAX_ATTRIBUTES} attributes on one element or {MAX_NAMES} in all")]
    TooManyAttributes,
    #[error("the document has no root element")]
    Empty,
}

/// Parses a whole document into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    // A UTF-8 byte-order mark is legal before the declaration (NetServer's Java notes add one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // XML 1.0 forbids C0 controls other than tab, newline and carriage return anywhere.
    if text
        .chars()
        .any(|c| c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(XmlError::Malformed(
            "control characters are not allowed".into(),
        ));
    }
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut nodes = 0usize;
    let mut names = 0usize;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let namespace = match ns {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(XmlError::Malformed(format!(
                    "undeclared namespace prefix {:?}",
                    String::from_utf8_lossy(&prefix)
                )));
            }
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("a second root element".into()));
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(XmlError::TooLarge);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let mut element = Element {
                    namespace,
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Default::default()
                };
                seen.clear();
                for attribute in start.attributes().with_checks(false) {
                    let attribute = attribute.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    names += 1;
                    if seen.len() >= MAX_ATTRIBUTES || names > MAX_NAMES {
                        return Err(XmlError::TooManyAttributes);
                    }
                    if !seen.insert(attribute.key.as_ref().to_vec()) {
                        return Err(XmlError::Malformed(format!(
                            "duplicate attribute {:?}",
                            String::from_utf8_lossy(attribute.key.as_ref())
                        )));
                    }
                    let key =
                        String::from_utf8_lossy(attribute.key.local_name().as_ref()).into_owned();
                    let value = attribute
                        .unescape_value()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?
                        .into_owned();
                    element.attributes.push((key, value));
                }
                if matches!(event, Event::Empty(_)) {
                    close(element, &mut stack, &mut root);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                close(element, &mut stack, &mut root);
            }
            Event::Text(text) => {
                let decoded = text
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                append_text(&mut stack, &decoded)?;
            }
            Event::CData(data) => {
                let decoded = data
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                append_text(&mut stack, &decoded)?;
            }
            Event::GeneralRef(reference) => {
                let resolved: Cow<'_, str> = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => {
                        let name = reference
                            .decode()
                            .map_err(|e| XmlError::Malformed(e.to_string()))?;
                        Cow::Borrowed(match name.as_ref() {
                            "lt" => "<",
                            "gt" => ">",
                            "amp" => "&",
                            "apos" => "'",
                            "quot" => "\"",
                            other => return Err(XmlError::Entity(other.to_owned())),
                        })
                    }
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                append_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unexpected end of document".into()));
    }
    root.ok_or(XmlError::Empty)
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => parent.text.push_str(text),
        // Only whitespace may stand outside the root element.
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Malformed("text outside the root element".into())),
    }
    Ok(())
}

/// Escapes text for element content and attribute values.
pub fn escape(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// A small string builder for XML output: elements are written in the order the code writes
/// them, which is what `xs:sequence` schemas and DataContract readers require.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        XmlWriter {
            out: String::with_capacity(1024),
        }
    }

    pub fn declaration(&mut self) -> &mut Self {
        self.out
            .push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        self
    }

    /// `<name attr="v" ...>`; attribute values are escaped.
    pub fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attributes {
            let _ = write!(self.out, " {k}=\"{}\"", escape(v));
        }
        self.out.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name/>` with attributes.
    pub fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attributes {
            let _ = write!(self.out, " {k}=\"{}\"", escape(v));
        }
        self.out.push_str("/>");
        self
    }

    /// `<name>text</name>` with the text escaped.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>{}</{name}>", escape(text));
        self
    }

    /// Already well-formed XML, inserted as is.
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.out.push_str(xml);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_and_entities() {
        let doc = parse(
            "<?xml version=\"1.0\"?><a:Root xmlns:a=\"urn:a\" xmlns=\"urn:d\">\
             <Child x=\"1 &amp; 2\">fish &amp; chips &#65;</Child><a:Empty/></a:Root>",
        )
        .unwrap();
        assert_eq!(doc.namespace.as_deref(), Some("urn:a"));
        assert_eq!(doc.name, "Root");
        let child = doc.child("child").unwrap();
        assert_eq!(child.namespace.as_deref(), Some("urn:d"));
        assert_eq!(child.value(), "fish & chips A");
        assert_eq!(child.attribute("x"), Some("1 & 2"));
        assert_eq!(
            doc.child("Empty").unwrap().namespace.as_deref(),
            Some("urn:a")
        );
    }

    #[test]
    fn refuses_dtds_entities_depth_and_garbage() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]><r>&lol;</r>";
        assert_eq!(parse(bomb), Err(XmlError::Dtd));
        assert_eq!(parse("<r>&lol;</r>"), Err(XmlError::Entity("lol".into())));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
        for bad in [
            "",
            "<",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<p:a/>",
            "<a x='1' x='2'/>",
            "\u{feff}",
            "<a>\u{0}</a>",
            "<a></a>trailing",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse("\u{feff}<a/>").is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any input at all: an element tree or an error, never a panic.
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        /// Valid documents cut and spliced at random places, where parser bugs live.
        #[test]
        fn never_panics_on_mangled_envelopes(cut in 0usize..400, splice in "[<>&;:/=\"'!?\\[\\]a-zA-Z0-9 ]{0,12}") {
            let doc = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                xmlns:u=\"urn:u\"><s:Header><u:Credentials><u:Ticket>7T:a&amp;b</u:Ticket></u:Credentials>\
                </s:Header><s:Body><u:Op a=\"1\"><u:Ids><u:int>1</u:int></u:Ids><![CDATA[x<y]]></u:Op></s:Body></s:Envelope>";
            let cut = cut.min(doc.len());
            let cut = (0..=cut).rev().find(|i| doc.is_char_boundary(*i)).unwrap_or(0);
            let mangled = format!("{}{}{}", &doc[..cut], splice, &doc[cut..]);
            let _ = parse(&mangled);
            let _ = parse(&doc[..cut]);
        }
    }

    #[test]
    fn attributes_are_capped_and_duplicates_refused() {
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=\"v\"")).collect::<String>();
        let fine = parse(&format!("<r{}/>", attrs(MAX_ATTRIBUTES))).unwrap();
        assert_eq!(fine.attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(
            parse(&format!("<r{}/>", attrs(MAX_ATTRIBUTES + 1))),
            Err(XmlError::TooManyAttributes)
        );
        // 80k attributes on one element (the hostile envelope) are refused.
        let started = std::time::Instant::now();
        assert_eq!(
            parse(&format!("<r{}/>", attrs(80_000))),
            Err(XmlError::TooManyAttributes)
        );
        eprintln!("80k attributes refused in {:?}", started.elapsed());
        // Many elements of few attributes each add up to the document's cap.
        let many = format!("<r>{}</r>", format!("<e{}/>", attrs(200)).repeat(501));
        assert_eq!(parse(&many), Err(XmlError::TooManyAttributes));
        let dup = parse("<r a=\"1\" b=\"2\" a=\"3\"/>").unwrap_err();
        assert!(matches!(dup, XmlError::Malformed(m) if m.contains("duplicate")));
        // Same local name under different prefixes is not a duplicate.
        parse("<r xmlns:x=\"urn:x\" xmlns:y=\"urn:y\" x:a=\"1\" y:a=\"2\"/>").unwrap();
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new();
        w.open("a", &[("k", "\"<>")]).text("b", "x & y").close("a");
        assert_eq!(w.finish(), "<a k=\"&quot;&lt;&gt;\"><b>x &amp; y</b></a>");
    }
}
