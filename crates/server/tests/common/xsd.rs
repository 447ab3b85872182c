//! Validates an XML document against an XML Schema, for the constructs the
//! CAP 1.2 schema uses: global and local elements, `ref`, `sequence` with
//! `minOccurs`/`maxOccurs`, `any` by namespace, simple types restricted by
//! `enumeration` and `pattern`, and the built-in types it names. A construct
//! outside that set fails loudly rather than passing unchecked.

use std::collections::HashMap;

use regex::Regex;
use roxmltree::{Document, Node};

const XS: &str = "http://www.w3.org/2001/XMLSchema";

pub struct Schema<'a> {
    target: String,
    globals: HashMap<String, Node<'a, 'a>>,
}

impl<'a> Schema<'a> {
    pub fn new(doc: &'a Document<'a>) -> Schema<'a> {
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "schema");
        let target = root.attribute("targetNamespace").unwrap_or("").to_string();
        let globals = root
            .children()
            .filter(|n| is_xs(n, "element"))
            .map(|n| (n.attribute("name").unwrap().to_string(), n))
            .collect();
        Schema { target, globals }
    }

    /// Every violation, each with the path of the element.
    pub fn validate(&self, xml: &str) -> Result<(), Vec<String>> {
        let doc = Document::parse(xml).map_err(|e| vec![format!("not well-formed XML: {e}")])?;
        let root = doc.root_element();
        let mut errors = Vec::new();
        match self.globals.get(root.tag_name().name()) {
            Some(decl) => self.element(
                root,
                *decl,
                &format!("/{}", root.tag_name().name()),
                &mut errors,
            ),
            None => errors.push(format!(
                "root element <{}> is not declared",
                root.tag_name().name()
            )),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn element(&self, node: Node, decl: Node<'a, 'a>, path: &str, errors: &mut Vec<String>) {
        if node.tag_name().namespace() != Some(self.target.as_str()) {
            errors.push(format!(
                "{path}: namespace {:?}, expected {}",
                node.tag_name().namespace(),
                self.target
            ));
        }
        let text: String = node
            .children()
            .filter(|c| c.is_text())
            .map(|c| c.text().unwrap_or(""))
            .collect();
        if let Some(complex) = decl.children().find(|n| is_xs(n, "complexType")) {
            if !text.trim().is_empty() {
                errors.push(format!(
                    "{path}: text {text:?} in an element with element content"
                ));
            }
            let sequence = complex
                .children()
                .find(|n| is_xs(n, "sequence"))
                .unwrap_or_else(|| panic!("{path}: complexType without sequence is not supported"));
            self.sequence(node, sequence, path, errors);
            return;
        }
        if let Some(child) = node.children().find(|c| c.is_element()) {
            errors.push(format!(
                "{path}: unexpected element <{}> in a simple element",
                child.tag_name().name()
            ));
        }
        if let Some(simple) = decl.children().find(|n| is_xs(n, "simpleType")) {
            let restriction = simple
                .children()
                .find(|n| is_xs(n, "restriction"))
                .unwrap_or_else(|| {
                    panic!("{path}: simpleType without restriction is not supported")
                });
            builtin(restriction.attribute("base").unwrap(), &text, path, errors);
            let enumeration: Vec<&str> = restriction
                .children()
                .filter(|n| is_xs(n, "enumeration"))
                .map(|n| n.attribute("value").unwrap())
                .collect();
            if !enumeration.is_empty() && !enumeration.contains(&text.as_str()) {
                errors.push(format!("{path}: {text:?} is not one of {enumeration:?}"));
            }
            for pattern in restriction.children().filter(|n| is_xs(n, "pattern")) {
                let re =
                    Regex::new(&format!("^(?:{})$", pattern.attribute("value").unwrap())).unwrap();
                if !re.is_match(&text) {
                    errors.push(format!(
                        "{path}: {text:?} does not match the pattern {}",
                        re.as_str()
                    ));
                }
            }
            return;
        }
        builtin(
            decl.attribute("type").unwrap_or("xs:anyType"),
            &text,
            path,
            errors,
        );
    }

    fn sequence(&self, node: Node, sequence: Node<'a, 'a>, path: &str, errors: &mut Vec<String>) {
        let children: Vec<Node> = node.children().filter(|c| c.is_element()).collect();
        let mut next = 0;
        for particle in sequence.children().filter(|n| n.is_element()) {
            let min: usize = particle
                .attribute("minOccurs")
                .map_or(1, |v| v.parse().unwrap());
            let max: usize = match particle.attribute("maxOccurs") {
                Some("unbounded") => usize::MAX,
                Some(v) => v.parse().unwrap(),
                None => 1,
            };
            let mut count = 0;
            if is_xs(&particle, "any") {
                let namespace = particle.attribute("namespace").unwrap();
                while count < max
                    && next < children.len()
                    && children[next].tag_name().namespace() == Some(namespace)
                {
                    next += 1;
                    count += 1;
                }
            } else {
                assert!(
                    is_xs(&particle, "element"),
                    "{path}: unsupported particle {:?}",
                    particle.tag_name()
                );
                let (name, decl) = match particle.attribute("ref") {
                    Some(reference) => {
                        let name = reference.rsplit(':').next().unwrap();
                        (
                            name,
                            *self.globals.get(name).expect("ref to a global element"),
                        )
                    }
                    None => (particle.attribute("name").unwrap(), particle),
                };
                while count < max
                    && next < children.len()
                    && children[next].tag_name().name() == name
                {
                    let child_path = format!("{path}/{name}[{}]", count + 1);
                    self.element(children[next], decl, &child_path, errors);
                    next += 1;
                    count += 1;
                }
                if count < min {
                    let found = children.get(next).map_or("the end".to_string(), |c| {
                        format!("<{}>", c.tag_name().name())
                    });
                    errors.push(format!(
                        "{path}: expected <{name}> (at least {min}), found {found}"
                    ));
                }
            }
        }
        for extra in &children[next..] {
            errors.push(format!(
                "{path}: <{}> is not allowed here",
                extra.tag_name().name()
            ));
        }
    }
}

fn is_xs(node: &Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(XS)
}

/// The lexical space of the built-in types the CAP schema uses.
fn builtin(kind: &str, text: &str, path: &str, errors: &mut Vec<String>) {
    let pattern = match kind {
        "xs:string" | "xs:anyType" => return,
        "xs:anyURI" => r"\S*",
        "xs:decimal" => r"[+-]?(\d+(\.\d*)?|\.\d+)",
        "xs:integer" => r"[+-]?\d+",
        "xs:language" => r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*",
        "xs:dateTime" => r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?",
        other => panic!("{path}: built-in type {other} is not supported"),
    };
    if !Regex::new(&format!("^(?:{pattern})$"))
        .unwrap()
        .is_match(text.trim())
    {
        errors.push(format!("{path}: {text:?} is not a valid {kind}"));
    }
}

/// The CAP 1.2 schema shipped with the tests.
pub fn cap_schema_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/CAP-v1.2.xsd"
    ))
    .unwrap()
}
