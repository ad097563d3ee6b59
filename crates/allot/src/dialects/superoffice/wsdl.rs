//! WSDL documents for the SOAP services, one per version and service, in the shape NetServer's
//! WCF services publish: wrapped document/literal, a SOAP 1.1 `BasicHttpBinding`, NetServer's
//! headers as `soap:header` parts and no `wsdl:fault`s.
//!
//! The carrier types are derived from the very builders that produce the responses (run on
//! sample data), so the schema and the wire cannot drift apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Version;
use super::carriers::{self, Catalog};
use super::methods::{METHODS, Method, Param, Returns};
use super::soap::ARRAYS;
use super::wire::Wire;
use allot_ledger::{LicenseMode, PoolStatus, Product, ProductKind, Role, User, UserProductView};

/// The WSDL of `service` in `version`, with `address` as the endpoint.
pub fn document(version: Version, service: &str, address: &str) -> String {
    let ns = version.namespace();
    let ops: Vec<&Method> = METHODS
        .iter()
        .filter(|m| m.agent == service && m.in_soap(version))
        .collect();
    let mut types = TypeSet::default();
    for op in &ops {
        if let Some(sample) = sample(op, version) {
            types.collect(&sample);
        }
    }
    let mut w = String::with_capacity(16 * 1024);
    let _ = write!(
        w,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<wsdl:definitions name=\"Wcf{service}Service\" targetNamespace=\"{ns}\" xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" \
xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
xmlns:tns=\"{ns}\" xmlns:q1=\"{ARRAYS}\" xmlns:wsaw=\"http://www.w3.org/2006/05/addressing/wsdl\">\
<wsdl:types>\
<xs:schema elementFormDefault=\"qualified\" targetNamespace=\"{ARRAYS}\">\
<xs:complexType name=\"ArrayOfint\"><xs:sequence><xs:element minOccurs=\"0\" maxOccurs=\"unbounded\" name=\"int\" type=\"xs:int\"/></xs:sequence></xs:complexType>\
<xs:complexType name=\"ArrayOfstring\"><xs:sequence><xs:element minOccurs=\"0\" maxOccurs=\"unbounded\" name=\"string\" nillable=\"true\" type=\"xs:string\"/></xs:sequence></xs:complexType>\
</xs:schema>\
<xs:schema elementFormDefault=\"qualified\" targetNamespace=\"{ns}\">\
<xs:import namespace=\"{ARRAYS}\"/>"
    );
    // Operation wrappers.
    for op in &ops {
        let _ = write!(
            w,
            "<xs:element name=\"{}\"><xs:complexType><xs:sequence>",
            op.name
        );
        for (name, kind) in op.params {
            let nillable = matches!(kind, Param::Str | Param::IntArray | Param::StrArray);
            let _ = write!(
                w,
                "<xs:element minOccurs=\"0\" name=\"{name}\"{} type=\"{}\"/>",
                if nillable { " nillable=\"true\"" } else { "" },
                kind.xsd()
            );
        }
        w.push_str("</xs:sequence></xs:complexType></xs:element>");
        if op.agent == "SoPrincipal" {
            w.push_str(
                "<xs:element name=\"AuthenticateResponse\"><xs:complexType><xs:sequence>\
                 <xs:element minOccurs=\"0\" name=\"Response\" nillable=\"true\" type=\"tns:SoPrincipalCarrier\"/>\
                 <xs:element minOccurs=\"0\" name=\"Credentials\" nillable=\"true\" type=\"tns:SoCredentials\"/>\
                 <xs:element minOccurs=\"0\" name=\"AuthenticationSucceeded\" type=\"xs:boolean\"/>\
                 </xs:sequence></xs:complexType></xs:element>",
            );
            continue;
        }
        let _ = write!(
            w,
            "<xs:element name=\"{}Response\"><xs:complexType>",
            op.name
        );
        match op.returns {
            Returns::Void => w.push_str("<xs:sequence/>"),
            Returns::One(t) => {
                let _ = write!(
                    w,
                    "<xs:sequence><xs:element minOccurs=\"0\" name=\"Response\" nillable=\"true\" type=\"tns:{t}\"/></xs:sequence>"
                );
            }
            Returns::Many(t) => {
                let _ = write!(
                    w,
                    "<xs:sequence><xs:element minOccurs=\"0\" name=\"Response\" nillable=\"true\" type=\"tns:ArrayOf{t}\"/></xs:sequence>"
                );
            }
        }
        w.push_str("</xs:complexType></xs:element>");
    }
    // Header elements and their types.
    w.push_str(
        "<xs:element name=\"ApplicationToken\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element name=\"Credentials\" nillable=\"true\" type=\"tns:SoCredentials\"/>\
         <xs:complexType name=\"SoCredentials\"><xs:sequence><xs:element minOccurs=\"0\" name=\"Ticket\" nillable=\"true\" type=\"xs:string\"/></xs:sequence></xs:complexType>\
         <xs:element name=\"TimeZone\" nillable=\"true\" type=\"tns:SoTimeZone\"/>\
         <xs:complexType name=\"SoTimeZone\"><xs:sequence><xs:element minOccurs=\"0\" name=\"SoTimeZoneId\" type=\"xs:int\"/><xs:element minOccurs=\"0\" name=\"SoTimeZoneLocationCode\" nillable=\"true\" type=\"xs:string\"/></xs:sequence></xs:complexType>\
         <xs:element name=\"ExceptionInfo\" nillable=\"true\" type=\"tns:SoExceptionInfo\"/>\
         <xs:complexType name=\"SoExceptionInfo\"><xs:sequence>\
         <xs:element minOccurs=\"0\" name=\"Message\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element minOccurs=\"0\" name=\"StackTrace\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element minOccurs=\"0\" name=\"FriendlyText\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element minOccurs=\"0\" name=\"ExceptionType\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element minOccurs=\"0\" name=\"Source\" nillable=\"true\" type=\"xs:string\"/>\
         <xs:element minOccurs=\"0\" name=\"InnerException\" nillable=\"true\" type=\"tns:SoExceptionInfo\"/>\
         <xs:element minOccurs=\"0\" name=\"Parameters\" nillable=\"true\" type=\"tns:SoExceptionInfoParameters\"/>\
         </xs:sequence></xs:complexType>\
         <xs:complexType name=\"SoExceptionInfoParameters\"><xs:sequence><xs:element minOccurs=\"0\" maxOccurs=\"unbounded\" name=\"SoExceptionInfoParametersKeyValuePair\" type=\"tns:KeyValue\"/></xs:sequence></xs:complexType>\
         <xs:complexType name=\"KeyValue\"><xs:sequence><xs:element minOccurs=\"0\" name=\"Key\" nillable=\"true\" type=\"xs:string\"/><xs:element minOccurs=\"0\" name=\"Value\" nillable=\"true\" type=\"xs:string\"/></xs:sequence></xs:complexType>\
         <xs:element name=\"ExtraInfo\" nillable=\"true\" type=\"tns:SoExtraInfo\"/>\
         <xs:complexType name=\"SoExtraInfo\"><xs:sequence><xs:element minOccurs=\"0\" maxOccurs=\"unbounded\" name=\"ExtraInfoNameValuePair\" type=\"tns:KeyValue\"/></xs:sequence></xs:complexType>\
         <xs:element name=\"Succeeded\" type=\"xs:boolean\"/>",
    );
    types.write(&mut w);
    w.push_str("</xs:schema></wsdl:types>");
    // Messages.
    for op in &ops {
        let name = op.name;
        let response = if op.agent == "SoPrincipal" {
            "AuthenticateResponse".to_owned()
        } else {
            format!("{name}Response")
        };
        let _ = write!(
            w,
            "<wsdl:message name=\"{name}Request\"><wsdl:part name=\"parameters\" element=\"tns:{name}\"/></wsdl:message>\
             <wsdl:message name=\"{name}Request_Headers\"><wsdl:part name=\"ApplicationToken\" element=\"tns:ApplicationToken\"/>"
        );
        if op.agent != "SoPrincipal" {
            w.push_str(
                "<wsdl:part name=\"Credentials\" element=\"tns:Credentials\"/><wsdl:part name=\"TimeZone\" element=\"tns:TimeZone\"/>",
            );
        }
        let _ = write!(
            w,
            "</wsdl:message><wsdl:message name=\"{name}Response\"><wsdl:part name=\"parameters\" element=\"tns:{response}\"/></wsdl:message>\
             <wsdl:message name=\"{name}Response_Headers\"><wsdl:part name=\"ExceptionInfo\" element=\"tns:ExceptionInfo\"/>\
             <wsdl:part name=\"ExtraInfo\" element=\"tns:ExtraInfo\"/><wsdl:part name=\"Succeeded\" element=\"tns:Succeeded\"/>\
             <wsdl:part name=\"TimeZone\" element=\"tns:TimeZone\"/></wsdl:message>"
        );
    }
    // Port type.
    let _ = write!(w, "<wsdl:portType name=\"{service}\">");
    for op in &ops {
        let name = op.name;
        let _ = write!(
            w,
            "<wsdl:operation name=\"{name}\"><wsdl:input wsaw:Action=\"{ns}/{service}/{name}\" name=\"{name}Request\" message=\"tns:{name}Request\"/>\
             <wsdl:output wsaw:Action=\"{ns}/{service}/{name}Response\" name=\"{name}Response\" message=\"tns:{name}Response\"/></wsdl:operation>"
        );
    }
    w.push_str("</wsdl:portType>");
    // Binding.
    let _ = write!(
        w,
        "<wsdl:binding name=\"BasicHttpBinding_{service}\" type=\"tns:{service}\"><soap:binding transport=\"http://schemas.xmlsoap.org/soap/http\"/>"
    );
    for op in &ops {
        let name = op.name;
        let _ = write!(
            w,
            "<wsdl:operation name=\"{name}\"><soap:operation soapAction=\"{ns}/{service}/{name}\" style=\"document\"/>\
             <wsdl:input name=\"{name}Request\"><soap:header message=\"tns:{name}Request_Headers\" part=\"ApplicationToken\" use=\"literal\"/>"
        );
        if op.agent != "SoPrincipal" {
            let _ = write!(
                w,
                "<soap:header message=\"tns:{name}Request_Headers\" part=\"Credentials\" use=\"literal\"/>\
                 <soap:header message=\"tns:{name}Request_Headers\" part=\"TimeZone\" use=\"literal\"/>"
            );
        }
        let _ = write!(
            w,
            "<soap:body use=\"literal\"/></wsdl:input><wsdl:output name=\"{name}Response\">\
             <soap:header message=\"tns:{name}Response_Headers\" part=\"ExceptionInfo\" use=\"literal\"/>\
             <soap:header message=\"tns:{name}Response_Headers\" part=\"ExtraInfo\" use=\"literal\"/>\
             <soap:header message=\"tns:{name}Response_Headers\" part=\"Succeeded\" use=\"literal\"/>\
             <soap:header message=\"tns:{name}Response_Headers\" part=\"TimeZone\" use=\"literal\"/>\
             <soap:body use=\"literal\"/></wsdl:output></wsdl:operation>"
        );
    }
    let _ = write!(
        w,
        "</wsdl:binding><wsdl:service name=\"Wcf{service}Service\"><wsdl:port name=\"BasicHttpBinding_{service}\" binding=\"tns:BasicHttpBinding_{service}\">\
         <soap:address location=\"{}\"/></wsdl:port></wsdl:service></wsdl:definitions>",
        crate::xml::escape(address)
    );
    w
}

/// Complex types found in sample carriers, by name, each as its ordered element list.
#[derive(Default)]
struct TypeSet {
    types: BTreeMap<String, Vec<(String, String, bool)>>,
}

impl TypeSet {
    /// The schema type of a value, registering complex types on the way.
    fn type_of(&mut self, value: &Wire) -> String {
        match value {
            Wire::Bool(_) => "xs:boolean".into(),
            Wire::Int(_) => "xs:int".into(),
            Wire::Str(_) => "xs:string".into(),
            Wire::Null | Wire::Map(_) => "xs:anyType".into(),
            Wire::Obj(..) | Wire::Arr(..) => {
                self.collect(value);
                match value {
                    Wire::Arr(item, _) if matches!(*item, "int" | "string") => {
                        format!("q1:ArrayOf{item}")
                    }
                    _ => format!("tns:{}", value.type_name()),
                }
            }
        }
    }

    fn collect(&mut self, value: &Wire) {
        match value {
            Wire::Obj(name, fields) => {
                if self.types.contains_key(*name) {
                    return;
                }
                // Reserve the name first: carriers may nest themselves.
                self.types.insert((*name).to_owned(), Vec::new());
                let mut elements = Vec::new();
                for (field, v) in fields {
                    if matches!(v, Wire::Map(_)) {
                        continue; // dictionaries are REST-only carrier metadata
                    }
                    let t = self.type_of(v);
                    let nillable = !matches!(v, Wire::Bool(_) | Wire::Int(_));
                    elements.push(((*field).to_owned(), t, nillable));
                }
                self.types.insert((*name).to_owned(), elements);
            }
            Wire::Arr(item, items) => {
                if matches!(*item, "int" | "string") {
                    return;
                }
                let name = value.type_name();
                if self.types.contains_key(&name) {
                    return;
                }
                self.types.insert(name.clone(), Vec::new());
                let item_type = items
                    .first()
                    .map(|first| self.type_of(first))
                    .unwrap_or_else(|| format!("tns:{item}"));
                self.types
                    .insert(name, vec![(format!("{item}*"), item_type, true)]);
            }
            _ => {}
        }
    }

    fn write(&self, w: &mut String) {
        for (name, elements) in &self.types {
            let _ = write!(w, "<xs:complexType name=\"{name}\"><xs:sequence>");
            for (field, t, nillable) in elements {
                let (field, many) = match field.strip_suffix('*') {
                    Some(f) => (f, " maxOccurs=\"unbounded\""),
                    None => (field.as_str(), ""),
                };
                let _ = write!(
                    w,
                    "<xs:element minOccurs=\"0\"{many} name=\"{field}\"{} type=\"{t}\"/>",
                    if *nillable { " nillable=\"true\"" } else { "" }
                );
            }
            w.push_str("</xs:sequence></xs:complexType>");
        }
    }
}

fn sample_product(id: i64, unrestricted: bool) -> Product {
    Product {
        id,
        owner: "owner".into(),
        name: format!("module{id}"),
        description: String::new(),
        tooltip: String::new(),
        kind: ProductKind::User,
        unrestricted,
        hidden: false,
        sort_order: 0,
        extra_flags: 0,
        plan_members: Vec::new(),
        prerequisite: None,
        expires_at: None,
        trial: false,
        seat_price_per_30_days: None,
    }
}

fn sample_view(id: i64, unrestricted: bool) -> UserProductView {
    UserProductView {
        product: sample_product(id, unrestricted),
        status: PoolStatus {
            product: id,
            owner: "owner".into(),
            name: format!("module{id}"),
            kind: ProductKind::User,
            unrestricted,
            total: 1,
            in_use: 1,
            free: 0,
        },
        assigned: true,
        can_assign: false,
        reasons: vec!["direct".into()],
        groups: Vec::new(),
    }
}

/// A carrier of the type `op` answers in `version`, built by the real builders.
fn sample(op: &Method, version: Version) -> Option<Wire> {
    let views = vec![sample_view(1, false), sample_view(2, true)];
    let products: Vec<Product> = views.iter().map(|v| v.product.clone()).collect();
    let catalog = Catalog::new(&products);
    let user = User {
        id: 1,
        uuid: uuid::Uuid::nil(),
        login: "sample".into(),
        first_name: String::new(),
        last_name: String::new(),
        email: String::new(),
        company: None,
        license_mode: LicenseMode::Manual,
        retired: false,
        disabled: false,
        user_type: "internal".into(),
        external_id: None,
        display_name: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        modified_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    Some(match op.name {
        "GetUserLicenses" => carriers::license_owners(&views, &catalog, version),
        "GetThirdPartyLicenseAssignments"
        | "AssignThirdPartyLicenses"
        | "UnassignThirdPartyLicenses" => {
            let refs: Vec<&UserProductView> = views.iter().collect();
            carriers::module_license_links(&refs, &catalog, version)
        }
        "GetLicenseFromDB" | "GetLicenseForAllOwnersFromDB" => {
            let lines: Vec<(&Product, &PoolStatus)> =
                views.iter().map(|v| (&v.product, &v.status)).collect();
            let info = carriers::extended_license_info("t", "owner", &lines, &catalog);
            if op.name == "GetLicenseFromDB" {
                info
            } else {
                Wire::Arr("ExtendedLicenseInfo", vec![info])
            }
        }
        "GetModuleLicenseFromDB" => {
            carriers::module_license(&views[0].product, &views[0].status, &catalog)
        }
        "GetUserAndInstallationLicenceStatus" => {
            carriers::user_and_installation_status("t", &views)
        }
        "RemoveLicenseFromDB" => carriers::license_result(true, ""),
        "GetUserInfo" => carriers::user_info(&user, &views),
        "AuthenticateUsernamePassword" => {
            carriers::principal_carrier("sample", Role::Admin, Some(&user), &views, &catalog, false)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wsdl_is_well_formed_and_lists_its_version_operations() {
        for v in Version::SOAP {
            for service in super::super::soap::SERVICES {
                let doc = document(Version(v), service, "http://h/Remote/x.svc");
                let root = crate::xml::parse(&doc).unwrap_or_else(|e| panic!("{v} {service}: {e}"));
                assert_eq!(root.name, "definitions");
            }
        }
        let v75 = document(Version(75), "Associate", "a");
        assert!(!v75.contains("LogOffWindowsUsers"));
        let v81 = document(Version(81), "Associate", "a");
        assert!(v81.contains("\"LogOffWindowsUsers\""));
        let link = |v: u8| {
            let doc = document(Version(v), "License", "a");
            let start = doc
                .find("<xs:complexType name=\"ModuleLicenseLink\">")
                .unwrap();
            let end = start + doc[start..].find("</xs:complexType>").unwrap();
            doc[start..end].to_owned()
        };
        assert!(!link(86).contains("IsHidden") && !link(86).contains("ExtraFlags"));
        assert!(link(87).contains("IsHidden") && !link(87).contains("ExtraFlags"));
        assert!(link(88).contains("IsHidden") && link(88).contains("ExtraFlags"));
    }
}
