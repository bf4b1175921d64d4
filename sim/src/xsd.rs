//! Checks QuickBooks Online JSON against Intuit's XML schemas.
//!
//! QuickBooks' JSON wire format uses the element and attribute names of
//! `Finance.xsd`, `IntuitBaseTypes.xsd` and `IntuitRestServiceDef.xsd`
//! (`shared/reference/quickbooks/`): an element is a JSON key, repeated
//! elements are arrays, attributes are keys beside the elements, and a
//! complex type with simple content (`ReferenceType`) keeps its text in
//! `value`. The simulator checks every request it receives and every
//! answer it gives against these names, so neither the connector nor the
//! simulator can drift into a field QuickBooks does not have.
//!
//! The check is about names and shapes, not full XML Schema validation:
//! every key must be an element or attribute of its type (inherited ones
//! included, `IntuitObject` standing for each member of its substitution
//! group); an array only where the element repeats; an object only for a
//! complex type; leaves of the right JSON kind (numbers for `xs:decimal`
//! and `xs:int`, booleans, strings in `YYYY-MM-DD` for `xs:date`, full
//! timestamps for `xs:dateTime`), enumerated strings among their values, a
//! list (an array, even of one) wherever the element repeats, and one
//! alternative only of a choice that occurs once. Order and `minOccurs` are not
//! checked: JSON has no order and QuickBooks fills read-only fields itself.
//! Types from the two schemas Intuit's files include but the reference set
//! does not hold (`IntuitNamesTypes.xsd` with `Vendor`, `Report.xsd`) cannot
//! be checked: their content passes unchecked ([`Xsd::defines`] tells).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use roxmltree::{Document, Node};
use serde_json::Value;

const XS: &str = "http://www.w3.org/2001/XMLSchema";
/// Deeper than any QuickBooks entity; bounds the walk on hostile input.
const MAX_DEPTH: usize = 32;

/// The schemas, indexed by name.
#[derive(Debug, Default)]
pub struct Xsd {
    /// Global element → its type.
    elements: HashMap<String, String>,
    /// Head of a substitution group → its members.
    substitutes: HashMap<String, Vec<String>>,
    complex: HashMap<String, Complex>,
    simple: HashMap<String, Simple>,
    /// Named model groups (`xs:group`), flattened.
    groups: HashMap<String, Vec<Child>>,
}

#[derive(Debug, Default)]
struct Complex {
    /// `complexContent/extension/@base`: children and attributes inherited.
    base: Option<String>,
    children: Vec<Child>,
    /// Group references, resolved when looked up (groups may come later).
    group_refs: Vec<(String, bool)>,
    attributes: HashMap<String, String>,
    /// `simpleContent/extension/@base`: the text, `value` in JSON.
    simple_content: Option<String>,
    /// `xs:any`: any content allowed.
    any: bool,
    /// Each `xs:choice` that occurs once: its alternatives, each with the
    /// elements it holds. One object may hold elements of one only.
    choices: Vec<Vec<Vec<Child>>>,
}

#[derive(Debug, Clone)]
enum Child {
    Element {
        name: String,
        ty: String,
        many: bool,
    },
    Ref {
        element: String,
        many: bool,
    },
}

#[derive(Debug, Default)]
struct Simple {
    base: String,
    enums: Vec<String>,
}

impl Xsd {
    /// Intuit's schemas from `shared/reference/quickbooks/`.
    pub fn quickbooks() -> Result<Xsd> {
        let finance = crate::reference::file(Path::new("quickbooks/Finance.xsd"))?;
        let dir = finance
            .parent()
            .context("Finance.xsd has no parent directory")?;
        Xsd::load(dir)
    }

    /// Every `*.xsd` file of `dir`.
    pub fn load(dir: &Path) -> Result<Xsd> {
        let mut xsd = Xsd::default();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "xsd"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no .xsd file in {}", dir.display());
        }
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            xsd.add(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
        }
        Ok(xsd)
    }

    /// Adds one schema document's definitions.
    pub fn add(&mut self, text: &str) -> Result<()> {
        let doc = Document::parse(text)?;
        let schema = doc.root_element();
        for node in xs_children(schema) {
            let name = node.attribute("name").unwrap_or_default().to_string();
            match node.tag_name().name() {
                "element" => {
                    let ty = match node.attribute("type") {
                        Some(t) => local(t).to_string(),
                        None => self.anonymous(node, &name),
                    };
                    if let Some(head) = node.attribute("substitutionGroup") {
                        self.substitutes
                            .entry(local(head).to_string())
                            .or_default()
                            .push(name.clone());
                    }
                    self.elements.insert(name, ty);
                }
                "complexType" => self.complex_type(node, name),
                "simpleType" => self.simple_type(node, name),
                "group" => {
                    let mut children = Vec::new();
                    let mut refs = Vec::new();
                    // A group's choices are not checked (Intuit's groups
                    // are sequences).
                    let mut choices = Vec::new();
                    self.particles(node, &name, false, &mut children, &mut refs, &mut choices);
                    // Groups inside groups are not used by Intuit's schemas.
                    self.groups.insert(name, children);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `name` is a global element (`Bill`, `IntuitResponse`, …).
    pub fn has_element(&self, name: &str) -> bool {
        self.elements.contains_key(name)
    }

    /// Whether type `ty` is defined in the loaded schemas (`Vendor` is not:
    /// it lives in `IntuitNamesTypes.xsd`, which the reference set lacks).
    pub fn defines(&self, ty: &str) -> bool {
        self.complex.contains_key(ty) || self.simple.contains_key(ty)
    }

    /// Whether complex type `ty` (or a type it extends) has child element
    /// or attribute `name`.
    pub fn has_child(&self, ty: &str, name: &str) -> bool {
        self.child(ty, name).is_some() || self.attribute(ty, name).is_some()
    }

    /// Checks a JSON document whose root is global element `element`; one
    /// line per violation, each with its JSON path.
    pub fn check(&self, element: &str, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        match self.elements.get(element) {
            Some(ty) => self.value(ty, value, element, 0, &mut out),
            None => out.push(format!("{element}: no such element in the schemas")),
        }
        out
    }

    /// Checks a JSON value against type `ty` (complex or simple).
    pub fn check_type(&self, ty: &str, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.value(ty, value, ty, 0, &mut out);
        out
    }

    fn value(&self, ty: &str, value: &Value, at: &str, depth: usize, out: &mut Vec<String>) {
        if depth > MAX_DEPTH {
            out.push(format!("{at}: nested deeper than {MAX_DEPTH}"));
            return;
        }
        if value.is_null() {
            out.push(format!("{at}: null (leave the element out instead)"));
            return;
        }
        if self.complex.contains_key(ty) {
            let Value::Object(map) = value else {
                out.push(format!(
                    "{at}: {} where type {ty} needs an object",
                    kind(value)
                ));
                return;
            };
            if self.chain(ty).any(|c| c.any) {
                return;
            }
            for choice in self.chain(ty).flat_map(|c| &c.choices) {
                let taken: Vec<&str> = choice
                    .iter()
                    .filter_map(|alt| {
                        map.keys()
                            .find(|k| alt.iter().any(|c| self.names(c, k)))
                            .map(String::as_str)
                    })
                    .collect();
                if taken.len() > 1 {
                    out.push(format!(
                        "{at}: {} are alternatives of one choice in {ty}: one only",
                        taken.join(" and ")
                    ));
                }
            }
            for (key, v) in map {
                let path = format!("{at}.{key}");
                if let Some((child_ty, many)) = self.child(ty, key) {
                    match v {
                        Value::Array(items) if many => {
                            for (i, item) in items.iter().enumerate() {
                                self.value(
                                    &child_ty,
                                    item,
                                    &format!("{path}[{i}]"),
                                    depth + 1,
                                    out,
                                );
                            }
                        }
                        Value::Array(_) => {
                            out.push(format!("{path}: an array where {ty} allows one {key}"))
                        }
                        _ if many => out.push(format!(
                            "{path}: {} where {ty} takes a list of {key} (an array, even of one)",
                            kind(v)
                        )),
                        _ => self.value(&child_ty, v, &path, depth + 1, out),
                    }
                } else if let Some(attr_ty) = self.attribute(ty, key) {
                    self.leaf(&attr_ty, v, &path, out);
                } else if key == "value"
                    && let Some(text_ty) = self.chain(ty).find_map(|c| c.simple_content.clone())
                {
                    self.leaf(&text_ty, v, &path, out);
                } else {
                    out.push(format!("{path}: {ty} has no element or attribute {key}"));
                }
            }
        } else {
            self.leaf(ty, value, at, out);
        }
    }

    fn leaf(&self, ty: &str, value: &Value, at: &str, out: &mut Vec<String>) {
        if value.is_null() {
            out.push(format!("{at}: null (leave the element out instead)"));
            return;
        }
        if let Some(simple) = self.simple.get(ty) {
            if !simple.enums.is_empty()
                && let Value::String(s) = value
                && !simple.enums.iter().any(|e| e == s)
            {
                out.push(format!(
                    "{at}: {s:?} is not one of {ty}'s values ({})",
                    simple.enums.join(", ")
                ));
                return;
            }
            return self.leaf(&simple.base, value, at, out);
        }
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
        let (fits, need) = match ty {
            "decimal" | "double" | "float" => (value.is_number(), "a number"),
            "int" | "integer" | "long" | "short" | "byte" | "nonNegativeInteger"
            | "positiveInteger" | "unsignedInt" | "unsignedLong" | "unsignedShort" => {
                (value.is_i64() || value.is_u64(), "a whole number")
            }
            "boolean" => (value.is_boolean(), "true or false"),
            "date" => (value.as_str().is_some_and(date), "a date YYYY-MM-DD"),
            "dateTime" => (
                value.as_str().is_some_and(|s| {
                    chrono::DateTime::parse_from_rfc3339(s).is_ok()
                        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                }),
                "a date and time YYYY-MM-DDThh:mm:ss[.sss][zone]",
            ),
            "string" | "normalizedString" | "token" | "anyURI" | "time" | "ID" | "IDREF"
            | "base64Binary" | "hexBinary" | "gYear" | "duration" => {
                (value.is_string(), "a string")
            }
            _ if self.complex.contains_key(ty) => (false, "a text value, not a complex type"),
            // Defined in a schema the reference set lacks: unchecked.
            _ => (true, ""),
        };
        if !fits {
            out.push(format!("{at}: {} where {ty} needs {need}", kind(value)));
        }
    }

    /// The type's own definition, then each base's.
    fn chain<'a>(&'a self, ty: &str) -> impl Iterator<Item = &'a Complex> + 'a {
        let mut next = self.complex.get(ty);
        let mut seen = 0;
        std::iter::from_fn(move || {
            let c = next?;
            seen += 1;
            // A cycle of bases would be a broken schema; stop instead of looping.
            next = if seen > MAX_DEPTH {
                None
            } else {
                c.base.as_deref().and_then(|b| self.complex.get(b))
            };
            Some(c)
        })
    }

    /// Whether `child` is JSON key `name`: the element itself, or for a
    /// reference to a substitution group's head, one of its members.
    fn names(&self, child: &Child, name: &str) -> bool {
        match child {
            Child::Element { name: n, .. } => n == name,
            Child::Ref { element, .. } => {
                element == name
                    || self
                        .substitutes
                        .get(element)
                        .is_some_and(|members| members.iter().any(|m| m == name))
            }
        }
    }

    /// Type and repetition of child element `name` of complex type `ty`.
    fn child(&self, ty: &str, name: &str) -> Option<(String, bool)> {
        for c in self.chain(ty) {
            let grouped = c.group_refs.iter().flat_map(|(g, many)| {
                self.groups
                    .get(g)
                    .into_iter()
                    .flatten()
                    .map(move |child| (child, *many))
            });
            let own = c.children.iter().map(|child| (child, false));
            for (child, group_many) in own.chain(grouped) {
                match child {
                    Child::Element { name: n, ty, many } if n == name => {
                        return Some((ty.clone(), *many || group_many));
                    }
                    Child::Ref { element, many } => {
                        let many = *many || group_many;
                        if element == name {
                            return self.elements.get(name).map(|t| (t.clone(), many));
                        }
                        if self
                            .substitutes
                            .get(element)
                            .is_some_and(|members| members.iter().any(|m| m == name))
                        {
                            return self.elements.get(name).map(|t| (t.clone(), many));
                        }
                    }
                    Child::Element { .. } => {}
                }
            }
        }
        None
    }

    fn attribute(&self, ty: &str, name: &str) -> Option<String> {
        self.chain(ty).find_map(|c| c.attributes.get(name).cloned())
    }

    fn complex_type(&mut self, node: Node, name: String) {
        let mut c = Complex::default();
        let mut children = Vec::new();
        let mut refs = Vec::new();
        for part in xs_children(node) {
            match part.tag_name().name() {
                "complexContent" | "simpleContent" => {
                    for ext in xs_children(part) {
                        let base = ext.attribute("base").map(|b| local(b).to_string());
                        if part.tag_name().name() == "simpleContent" {
                            c.simple_content = base;
                        } else if ext.tag_name().name() == "extension" {
                            c.base = base;
                        }
                        self.particles(ext, &name, false, &mut children, &mut refs, &mut c.choices);
                        self.attributes(ext, &name, &mut c.attributes);
                        if xs_children(ext).any(|n| n.tag_name().name() == "any") {
                            c.any = true;
                        }
                    }
                }
                _ => {}
            }
        }
        self.particles(node, &name, false, &mut children, &mut refs, &mut c.choices);
        self.attributes(node, &name, &mut c.attributes);
        c.any |= has_any(node);
        c.children = children;
        c.group_refs = refs;
        self.complex.insert(name, c);
    }

    /// Flattens sequences, choices and alls under `node` into `children`.
    fn particles(
        &mut self,
        node: Node,
        owner: &str,
        many: bool,
        children: &mut Vec<Child>,
        refs: &mut Vec<(String, bool)>,
        choices: &mut Vec<Vec<Vec<Child>>>,
    ) {
        for part in xs_children(node) {
            self.particle(part, owner, many, children, refs, choices);
        }
    }

    /// One particle: its elements into `children`; a choice that occurs
    /// once also into `choices`, by alternative.
    fn particle(
        &mut self,
        part: Node,
        owner: &str,
        many: bool,
        children: &mut Vec<Child>,
        refs: &mut Vec<(String, bool)>,
        choices: &mut Vec<Vec<Vec<Child>>>,
    ) {
        let many = many || repeats(part);
        match part.tag_name().name() {
            "choice" if !many => {
                let mut alternatives = Vec::new();
                for alt in xs_children(part) {
                    let mut held = Vec::new();
                    self.particle(alt, owner, many, &mut held, refs, choices);
                    children.extend(held.iter().cloned());
                    alternatives.push(held);
                }
                if alternatives.len() > 1 {
                    choices.push(alternatives);
                }
            }
            "sequence" | "choice" | "all" => {
                self.particles(part, owner, many, children, refs, choices)
            }
            "group" => {
                if let Some(r) = part.attribute("ref") {
                    refs.push((local(r).to_string(), many));
                }
            }
            "element" => {
                if let Some(r) = part.attribute("ref") {
                    children.push(Child::Ref {
                        element: local(r).to_string(),
                        many,
                    });
                } else {
                    let name = part.attribute("name").unwrap_or_default().to_string();
                    let ty = match part.attribute("type") {
                        Some(t) => local(t).to_string(),
                        None => self.anonymous(part, &format!("{owner}/{name}")),
                    };
                    children.push(Child::Element { name, ty, many });
                }
            }
            _ => {}
        }
    }

    fn attributes(&mut self, node: Node, owner: &str, into: &mut HashMap<String, String>) {
        for a in xs_children(node).filter(|n| n.tag_name().name() == "attribute") {
            let Some(name) = a.attribute("name") else {
                continue;
            };
            let ty = match a.attribute("type") {
                Some(t) => local(t).to_string(),
                None => self.anonymous(a, &format!("{owner}/@{name}")),
            };
            into.insert(name.to_string(), ty);
        }
    }

    /// Registers an element's or attribute's inline type under `name`;
    /// `string` when it has none (an untyped leaf).
    fn anonymous(&mut self, node: Node, name: &str) -> String {
        for inner in xs_children(node) {
            match inner.tag_name().name() {
                "complexType" => {
                    self.complex_type(inner, name.to_string());
                    return name.to_string();
                }
                "simpleType" => {
                    self.simple_type(inner, name.to_string());
                    return name.to_string();
                }
                _ => {}
            }
        }
        "string".to_string()
    }

    fn simple_type(&mut self, node: Node, name: String) {
        let mut s = Simple {
            base: "string".to_string(),
            enums: Vec::new(),
        };
        for r in xs_children(node).filter(|n| n.tag_name().name() == "restriction") {
            if let Some(b) = r.attribute("base") {
                s.base = local(b).to_string();
            }
            s.enums = xs_children(r)
                .filter(|n| n.tag_name().name() == "enumeration")
                .filter_map(|n| n.attribute("value").map(str::to_string))
                .collect();
        }
        self.simple.insert(name, s);
    }
}

fn xs_children<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(|n| n.is_element() && n.tag_name().namespace() == Some(XS))
}

fn has_any(node: Node) -> bool {
    xs_children(node).any(|n| match n.tag_name().name() {
        "any" => true,
        "sequence" | "choice" | "all" => has_any(n),
        _ => false,
    })
}

fn repeats(node: Node) -> bool {
    match node.attribute("maxOccurs") {
        Some("unbounded") => true,
        Some(n) => n.parse::<u32>().is_ok_and(|n| n > 1),
        None => false,
    }
}

/// `xs:string` → `string`; Intuit's own types carry no prefix.
fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
