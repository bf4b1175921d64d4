//! A strict check of requests and answers against an OpenAPI 3.0
//! description (Xero's official `xero_accounting.yaml`), for tests.
//!
//! # What is checked
//!
//! - The operation: method and path (relative to the server base,
//!   `/Invoices/…`; a leading `/api.xro/2.0` is also taken) must match one
//!   of the description's path templates; literal segments win over
//!   `{parameters}`. Path parameters' values are not checked (Xero takes an
//!   invoice number where the description says `{InvoiceID}`).
//! - Query parameters: every name must be a declared `in: query`
//!   parameter of the operation or its path item (`$ref`s to
//!   `#/components/parameters/…` resolved), with its type (integer,
//!   number, boolean), `enum`, `format: uuid` and dates; an array
//!   parameter's value is a comma-separated list, each item checked.
//! - Bodies: a request body against the operation's `application/json`
//!   request schema (a body where none is declared, or none where one is
//!   required, is a violation); an answer against the schema of its
//!   status, else `4XX`-style ranges, else `default` (responses and
//!   request bodies may be `$ref`s to `#/components/…`). A status the
//!   description gives no JSON schema is not checked.
//! - Schemas: `$ref`, `type`, `nullable`, `enum`, `items`, `properties`,
//!   `additionalProperties` (as a schema), `allOf` (properties are the
//!   union of the parts), `oneOf` (exactly one alternative),
//!   `anyOf` (at least one), `maxLength`, `format: uuid`, and dates:
//!   `format: date`/`date-time` or `x-is-msdate`/`x-is-msdate-time`.
//!   Xero takes `YYYY-MM-DD` (optionally `Thh:mm:ss[.fff][zone]`) in
//!   requests and answers `/Date(1539993600000+0000)/`; both forms pass
//!   in both directions, nothing else does. `readOnly` properties are not
//!   flagged in requests (Xero accepts and ignores them); `required` is
//!   not checked (an update names only what changes).
//!
//! # Strict properties and the examples' allow-list
//!
//! Xero's schemas leave `additionalProperties` open, so an ordinary
//! validator passes any invented field. Here every object property a
//! schema does not declare is a violation, with one exception taken from
//! the description itself: real answers carry a few undeclared
//! properties (`DateString` and `DueDateString` on an invoice, the
//! answer envelope's `Id`, `Status`, `ProviderName`, `DateTimeUTC`), and
//! the description's own examples show them. At load, every `example`
//! and `examples` of every operation's request body and responses is
//! walked alongside its schema; wherever an example object carries a
//! property its schema (the `$ref`-named component, or the inline schema
//! at that place) does not declare, that name is added to the schema's
//! allow-list. An undeclared property passes only if it is on the
//! allow-list of the schema of the object that carries it: `DateString`
//! passes on any `Invoice` because an `Invoice` in an example carries it,
//! and nowhere else.
//!
//! One more exception is Xero's documented behaviour: a validation
//! error's `Element` echoes the object sent, so in an answer an
//! `Element`'s undeclared properties are checked against the schema of
//! the items the request sends (`/Invoices` → `Invoice`).
//!
//! Schemas are compiled once at load into an arena with every `$ref`
//! resolved; a check walks the value once and builds a JSON path only
//! for a violation.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

/// A loaded, compiled description. `Send + Sync`.
pub struct OpenApi {
    doc: Value,
    nodes: Vec<Node>,
    ops: Vec<Op>,
    /// The server URL's path segments (`api.xro`, `2.0`).
    base: Vec<String>,
}

type Id = usize;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Object => "an object",
            Ty::Array => "an array",
            Ty::String => "a string",
            Ty::Number => "a number",
            Ty::Integer => "an integer",
            Ty::Boolean => "a boolean",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    None,
    Uuid,
    Date,
}

/// One compiled schema.
#[derive(Debug)]
struct Node {
    /// The component's name, or where an inline schema sits
    /// (`Invoice.LineItems[]`), for messages.
    label: String,
    ty: Option<Ty>,
    nullable: bool,
    enumeration: Option<Vec<Value>>,
    max_length: Option<u64>,
    format: Format,
    properties: HashMap<String, Id>,
    additional: Option<Id>,
    items: Option<Id>,
    all_of: Vec<Id>,
    one_of: Vec<Id>,
    any_of: Vec<Id>,
    /// Undeclared properties the description's examples show here.
    allowed: HashSet<String>,
}

impl Node {
    fn new(label: String) -> Node {
        Node {
            label,
            ty: None,
            nullable: false,
            enumeration: None,
            max_length: None,
            format: Format::None,
            properties: HashMap::new(),
            additional: None,
            items: None,
            all_of: Vec::new(),
            one_of: Vec::new(),
            any_of: Vec::new(),
            allowed: HashSet::new(),
        }
    }

    fn is_object(&self) -> bool {
        self.ty == Some(Ty::Object) || (self.ty.is_none() && !self.properties.is_empty())
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Literal(String),
    Param,
}

/// One operation.
#[derive(Debug)]
struct Op {
    method: String,
    template: String,
    segs: Vec<Seg>,
    params_in_path: usize,
    /// Where the operation sits in the document (a JSON pointer).
    pointer: String,
    /// Declared query parameters and their schemas.
    query: HashMap<String, Option<Id>>,
    /// The JSON request body's schema; `None` when no body is declared.
    request: Option<Id>,
    request_required: bool,
    /// A body of another media type is declared (not checked).
    request_other: bool,
    /// Per response key (`200`, `4XX`, `default`), the JSON schema.
    responses: HashMap<String, Option<Id>>,
    /// What a validation error's `Element` echoes: the request's items.
    echo: Option<Id>,
}

impl OpenApi {
    /// Reads and compiles the description at `path` (YAML or JSON).
    pub fn load(path: &Path) -> anyhow::Result<OpenApi> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let doc: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        if doc.get("paths").and_then(Value::as_object).is_none() {
            anyhow::bail!("{} is no OpenAPI description (no paths)", path.display());
        }
        Ok(OpenApi::from_document(doc))
    }

    /// Xero's description: `$LEDGERBRIDGE_REFERENCE/xero/xero_accounting.yaml`,
    /// else `shared/reference/xero/xero_accounting.yaml` beside the
    /// repository (found by walking up from this crate and the current
    /// directory).
    pub fn xero() -> anyhow::Result<OpenApi> {
        OpenApi::load(&crate::reference::file(
            &Path::new("xero").join("xero_accounting.yaml"),
        )?)
    }

    /// What is wrong with a request: `path` relative to the server base
    /// (`/Invoices/…`), `query` raw (percent-encoded, may be empty).
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Vec<String> {
        let what = format!("{} {path} request", method.to_ascii_uppercase());
        let op = match self.operation(method, path) {
            Ok(op) => op,
            Err(e) => return vec![format!("{what}: {e}")],
        };
        let mut out = Vec::new();
        self.check_query(op, query, &what, &mut out);
        match (body, op.request) {
            (Some(body), Some(schema)) => {
                let mut run = Run {
                    api: self,
                    what: &what,
                    echo: None,
                    out,
                };
                run.check(schema, body, &At::Root, false, 0);
                out = run.out;
            }
            (Some(_), None) if op.request_other => out.push(format!(
                "{what}: the operation takes a body of another media type, not JSON"
            )),
            (Some(_), None) => out.push(format!("{what}: the operation takes no body")),
            (None, Some(_)) if op.request_required => out.push(format!(
                "{what}: the operation requires a JSON body and none (or no valid JSON) was sent"
            )),
            (None, _) => {}
        }
        out
    }

    /// What is wrong with an answer of `status` to `method` `path`.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Vec<String> {
        let what = format!("{} {path} answer {status}", method.to_ascii_uppercase());
        let op = match self.operation(method, path) {
            Ok(op) => op,
            Err(e) => return vec![format!("{what}: {e}")],
        };
        let Some(schema) = OpenApi::response_schema(op, status) else {
            return Vec::new();
        };
        let mut run = Run {
            api: self,
            what: &what,
            echo: op.echo,
            out: Vec::new(),
        };
        run.check(schema, body, &At::Root, false, 0);
        run.out
    }

    /// The description's own examples of the answer of `status` to
    /// `method` `path` (empty when it has none).
    pub fn examples(&self, method: &str, path: &str, status: u16) -> Vec<&Value> {
        let Ok(op) = self.operation(method, path) else {
            return Vec::new();
        };
        let Some(responses) = self
            .doc
            .pointer(&op.pointer)
            .and_then(|o| o.get("responses"))
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        let key = [status.to_string(), format!("{}XX", status / 100)]
            .into_iter()
            .find(|k| responses.contains_key(k))
            .unwrap_or_else(|| "default".to_string());
        responses
            .get(&key)
            .map(|r| self.media_examples(self.resolve(r)))
            .unwrap_or_default()
    }

    fn response_schema(op: &Op, status: u16) -> Option<Id> {
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        [exact.as_str(), range.as_str(), "default"]
            .into_iter()
            .find_map(|k| op.responses.get(k))
            .copied()
            .flatten()
    }

    /// The operation for `method` `path`; literal segments win over
    /// templates.
    fn operation(&self, method: &str, path: &str) -> Result<&Op, String> {
        let mut want = segments(path);
        if !self.base.is_empty() && want.starts_with(&self.base) {
            want.drain(..self.base.len());
        }
        let fits = |op: &&Op| {
            op.segs.len() == want.len()
                && op.segs.iter().zip(&want).all(|(s, w)| match s {
                    Seg::Param => true,
                    Seg::Literal(l) => l == w,
                })
        };
        let method = method.to_ascii_uppercase();
        let best = self
            .ops
            .iter()
            .filter(fits)
            .filter(|op| op.method == method)
            .min_by_key(|op| op.params_in_path);
        if let Some(op) = best {
            return Ok(op);
        }
        let mut templates: Vec<&str> = self
            .ops
            .iter()
            .filter(fits)
            .map(|op| op.template.as_str())
            .collect();
        templates.dedup();
        if templates.is_empty() {
            Err("no such path in the description".to_string())
        } else {
            Err(format!(
                "the description has no {method} for {}",
                templates.join(" or ")
            ))
        }
    }

    fn check_query(&self, op: &Op, query: &str, what: &str, out: &mut Vec<String>) {
        let query = query.strip_prefix('?').unwrap_or(query);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k);
            let value = decode(v);
            let Some(schema) = op.query.get(&k) else {
                let hint = op
                    .query
                    .keys()
                    .find(|d| d.eq_ignore_ascii_case(&k))
                    .map(|d| format!(" (the description spells it `{d}`)"))
                    .unwrap_or_default();
                out.push(format!(
                    "{what}: query parameter `{k}` is not declared by {} {}{hint}",
                    op.method, op.template
                ));
                continue;
            };
            let Some(id) = *schema else { continue };
            let node = &self.nodes[id];
            let problem = match (node.ty, node.items) {
                (Some(Ty::Array), Some(items)) => value
                    .split(',')
                    .find_map(|item| self.query_scalar(items, item)),
                _ => self.query_scalar(id, &value),
            };
            if let Some(p) = problem {
                out.push(format!("{what}: query parameter `{k}`: {p}"));
            }
        }
    }

    /// What is wrong with one query value for the scalar schema `id`.
    fn query_scalar(&self, id: Id, raw: &str) -> Option<String> {
        let node = &self.nodes[id];
        let value = match node.ty {
            Some(Ty::Integer) => match raw.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Some(format!("`{raw}` is not an integer")),
            },
            Some(Ty::Number) => match raw
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).filter(|_| !raw.is_empty()))
            {
                Some(n) => Value::Number(n),
                None => return Some(format!("`{raw}` is not a number")),
            },
            Some(Ty::Boolean) => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Some(format!("`{raw}` is not true or false")),
            },
            _ => Value::String(raw.to_string()),
        };
        let mut run = Run {
            api: self,
            what: "",
            echo: None,
            out: Vec::new(),
        };
        run.check(id, &value, &At::Root, false, 0);
        // Messages read "…: $: <problem>"; keep the problem.
        run.out
            .into_iter()
            .next()
            .map(|m| m.trim_start_matches(": $: ").to_string())
    }

    /// `v`, or what its `$ref` names.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        resolve(&self.doc, v)
    }

    /// The examples of a media object's JSON content.
    fn media_examples<'a>(&'a self, holder: &'a Value) -> Vec<&'a Value> {
        media_examples_of(&self.doc, holder)
    }

    fn from_document(doc: Value) -> OpenApi {
        let base = doc
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .map(|u| {
                let after_scheme = u.split_once("://").map_or(u, |(_, r)| r);
                let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
                segments(path)
            })
            .unwrap_or_default();
        let mut c = Compiler {
            doc: &doc,
            nodes: Vec::new(),
            refs: HashMap::new(),
        };
        let mut ops = Vec::new();
        // Examples to learn from: (schema, example).
        let mut learn: Vec<(Id, &Value, Option<Id>)> = Vec::new();
        let paths = doc.get("paths").and_then(Value::as_object);
        for (template, item) in paths.into_iter().flatten() {
            let item = resolve(&doc, item);
            let segs: Vec<Seg> = segments(template)
                .into_iter()
                .map(|s| {
                    if s.starts_with('{') && s.ends_with('}') {
                        Seg::Param
                    } else {
                        Seg::Literal(s)
                    }
                })
                .collect();
            let params_in_path = segs.iter().filter(|s| matches!(s, Seg::Param)).count();
            let Some(methods) = item.as_object() else {
                continue;
            };
            for (method, raw) in methods {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
                ) {
                    continue;
                }
                let upper = method.to_ascii_uppercase();
                let label = format!("{upper} {template}");
                let mut query = HashMap::new();
                let declared = [item.get("parameters"), raw.get("parameters")];
                for p in declared.into_iter().flatten().filter_map(Value::as_array) {
                    for p in p {
                        let p = resolve(&doc, p);
                        if p.get("in").and_then(Value::as_str) != Some("query") {
                            continue;
                        }
                        let Some(name) = p.get("name").and_then(Value::as_str) else {
                            continue;
                        };
                        let schema = p
                            .get("schema")
                            .map(|s| c.compile(s, format!("{label} query {name}")));
                        query.insert(name.to_string(), schema);
                    }
                }
                let mut request = None;
                let mut request_required = false;
                let mut request_other = false;
                if let Some(rb) = raw.get("requestBody") {
                    let rb = resolve(&doc, rb);
                    request_required = rb.get("required").and_then(Value::as_bool) == Some(true);
                    if let Some(s) = rb.pointer("/content/application~1json/schema") {
                        let id = c.compile(s, format!("{label} request"));
                        request = Some(id);
                        learn.extend(
                            media_examples_of(&doc, rb)
                                .into_iter()
                                .map(|e| (id, e, None)),
                        );
                    } else {
                        request_other = rb.get("content").is_some();
                    }
                }
                // `/Invoices` → the request's `Invoices` items.
                let echo = request.and_then(|id| {
                    let first = segments(template).into_iter().next()?;
                    let arr = c.find_prop(id, &first, 0)?;
                    c.nodes[c.target(arr, 0)].items
                });
                let mut responses = HashMap::new();
                if let Some(rs) = raw.get("responses").and_then(Value::as_object) {
                    for (status, r) in rs {
                        let r = resolve(&doc, r);
                        let id = r
                            .pointer("/content/application~1json/schema")
                            .map(|s| c.compile(s, format!("{label} answer {status}")));
                        if let Some(id) = id {
                            learn.extend(
                                media_examples_of(&doc, r)
                                    .into_iter()
                                    .map(|e| (id, e, echo)),
                            );
                        }
                        responses.insert(status.to_ascii_uppercase(), id);
                    }
                }
                ops.push(Op {
                    method: upper,
                    template: template.clone(),
                    segs: segs.clone(),
                    params_in_path,
                    pointer: format!("/paths/{}/{method}", escape_pointer(template)),
                    query,
                    request,
                    request_required,
                    request_other,
                    responses,
                    echo,
                });
            }
        }
        let mut allowed: HashMap<Id, HashSet<String>> = HashMap::new();
        for (id, example, echo) in learn {
            c.learn(id, example, echo, &mut allowed, 0);
        }
        let Compiler { mut nodes, .. } = c;
        for (id, names) in allowed {
            nodes[id].allowed = names;
        }
        OpenApi {
            doc,
            nodes,
            ops,
            base,
        }
    }
}

fn media_examples_of<'a>(doc: &'a Value, holder: &'a Value) -> Vec<&'a Value> {
    let Some(media) = holder.pointer("/content/application~1json") else {
        return Vec::new();
    };
    let mut out: Vec<&Value> = media.get("example").into_iter().collect();
    if let Some(es) = media.get("examples").and_then(Value::as_object) {
        out.extend(es.values().filter_map(|e| resolve(doc, e).get("value")));
    }
    out
}

/// `v`, or what its (chain of) `$ref` names.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| doc.pointer(p)) {
                Some(t) => v = t,
                None => return v,
            },
            None => return v,
        }
    }
    v
}

/// Builds the schema arena.
struct Compiler<'d> {
    doc: &'d Value,
    nodes: Vec<Node>,
    /// `$ref` → its node.
    refs: HashMap<String, Id>,
}

impl Compiler<'_> {
    fn compile(&mut self, v: &Value, label: String) -> Id {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            return self.reference(r, 0);
        }
        let id = self.nodes.len();
        self.nodes.push(Node::new(label));
        self.fill(id, v);
        id
    }

    fn reference(&mut self, r: &str, depth: usize) -> Id {
        if let Some(&id) = self.refs.get(r) {
            return id;
        }
        let label = r.rsplit('/').next().unwrap_or(r).to_string();
        let target = r.strip_prefix('#').and_then(|p| self.doc.pointer(p));
        if let Some(inner) = target.and_then(|t| t.get("$ref")).and_then(Value::as_str)
            && depth < 16
        {
            let id = self.reference(inner, depth + 1);
            self.refs.insert(r.to_string(), id);
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node::new(label));
        self.refs.insert(r.to_string(), id);
        if let Some(t) = target {
            self.fill(id, t);
        }
        id
    }

    fn fill(&mut self, id: Id, v: &Value) {
        let label = self.nodes[id].label.clone();
        let flag = |k: &str| v.get(k).and_then(Value::as_bool) == Some(true);
        let ty = match v.get("type").and_then(Value::as_str) {
            Some("object") => Some(Ty::Object),
            Some("array") => Some(Ty::Array),
            Some("string") => Some(Ty::String),
            Some("number") => Some(Ty::Number),
            Some("integer") => Some(Ty::Integer),
            Some("boolean") => Some(Ty::Boolean),
            _ => None,
        };
        let format = match v.get("format").and_then(Value::as_str) {
            Some("uuid") => Format::Uuid,
            Some("date" | "date-time") => Format::Date,
            _ if flag("x-is-msdate") || flag("x-is-msdate-time") => Format::Date,
            _ => Format::None,
        };
        let mut properties = HashMap::new();
        for (k, p) in v
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            properties.insert(k.clone(), self.compile(p, format!("{label}.{k}")));
        }
        let additional = v
            .get("additionalProperties")
            .filter(|a| a.is_object())
            .map(|a| self.compile(a, format!("{label}.*")));
        let items = v
            .get("items")
            .map(|i| self.compile(i, format!("{label}[]")));
        let mut list = |key: &str| -> Vec<Id> {
            v.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| self.compile(s, label.clone()))
                .collect()
        };
        let all_of = list("allOf");
        let one_of = list("oneOf");
        let any_of = list("anyOf");
        let node = &mut self.nodes[id];
        node.ty = ty;
        node.nullable = flag("nullable");
        node.enumeration = v.get("enum").and_then(Value::as_array).cloned();
        node.max_length = v.get("maxLength").and_then(Value::as_u64);
        node.format = format;
        node.properties = properties;
        node.additional = additional;
        node.items = items;
        node.all_of = all_of;
        node.one_of = one_of;
        node.any_of = any_of;
    }

    /// A node standing for one schema (`allOf` of one part is that part).
    fn target(&self, id: Id, depth: usize) -> Id {
        let n = &self.nodes[id];
        if depth < 16 && n.ty.is_none() && n.properties.is_empty() && n.all_of.len() == 1 {
            self.target(n.all_of[0], depth + 1)
        } else {
            id
        }
    }

    fn find_prop(&self, id: Id, key: &str, depth: usize) -> Option<Id> {
        find_prop(&self.nodes, id, key, depth)
    }

    /// Records the undeclared properties `example` shows for `id`.
    fn learn(
        &self,
        id: Id,
        example: &Value,
        echo: Option<Id>,
        allowed: &mut HashMap<Id, HashSet<String>>,
        depth: usize,
    ) {
        if depth > 64 {
            return;
        }
        let node = &self.nodes[id];
        match example {
            Value::Object(obj) if object_like(&self.nodes, id, 0) => {
                for (k, v) in obj {
                    let echoed = || {
                        echo.filter(|_| node.label == "Element")
                            .and_then(|e| find_prop(&self.nodes, e, k, 0))
                    };
                    match find_prop(&self.nodes, id, k, 0)
                        .or(node.additional)
                        .or_else(echoed)
                    {
                        Some(p) => self.learn(p, v, echo, allowed, depth + 1),
                        None => {
                            allowed.entry(id).or_default().insert(k.clone());
                        }
                    }
                }
            }
            Value::Array(items) if node.ty == Some(Ty::Array) => {
                if let Some(s) = node.items {
                    for v in items {
                        self.learn(s, v, echo, allowed, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The schema of property `key` of `id` (its own, else its `allOf` parts').
fn find_prop(nodes: &[Node], id: Id, key: &str, depth: usize) -> Option<Id> {
    let n = &nodes[id];
    if let Some(&p) = n.properties.get(key) {
        return Some(p);
    }
    if depth > 16 {
        return None;
    }
    n.all_of
        .iter()
        .find_map(|&part| find_prop(nodes, part, key, depth + 1))
}

/// Whether `id`, or one of its `allOf` parts, describes an object.
fn object_like(nodes: &[Node], id: Id, depth: usize) -> bool {
    let n = &nodes[id];
    n.is_object()
        || (depth < 16
            && n.ty.is_none()
            && n.all_of.iter().any(|&p| object_like(nodes, p, depth + 1)))
}

/// Whether `key` is on the allow-list of `id` or one of its `allOf` parts.
fn allowed_extra(nodes: &[Node], id: Id, key: &str, depth: usize) -> bool {
    let n = &nodes[id];
    n.allowed.contains(key)
        || (depth < 16
            && n.all_of
                .iter()
                .any(|&p| allowed_extra(nodes, p, key, depth + 1)))
}

/// Where in the checked value: built into a string only for a message.
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str("$"),
            At::Key(up, k) => {
                let plain = !k.is_empty()
                    && k.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                if plain {
                    write!(f, "{up}.{k}")
                } else {
                    write!(f, "{up}[{}]", Value::from(*k))
                }
            }
            At::Index(up, i) => write!(f, "{up}[{i}]"),
        }
    }
}

/// One check.
struct Run<'a> {
    api: &'a OpenApi,
    what: &'a str,
    /// The schema a validation error's `Element` echoes.
    echo: Option<Id>,
    out: Vec<String>,
}

impl Run<'_> {
    fn fail(&mut self, at: &At, problem: fmt::Arguments) {
        self.out.push(format!("{}: {at}: {problem}", self.what));
    }

    /// Checks `v` against `id`; `parts_only` when `id` is an `allOf` part
    /// whose object's properties the whole checks.
    fn check(&mut self, id: Id, v: &Value, at: &At, parts_only: bool, depth: usize) {
        if depth > 64 {
            return;
        }
        let nodes = &self.api.nodes;
        let node = &nodes[id];
        if v.is_null() {
            let constrained = node.ty.is_some()
                || !node.all_of.is_empty()
                || !node.one_of.is_empty()
                || !node.any_of.is_empty();
            if constrained && !node.nullable {
                self.fail(at, format_args!("null where the schema does not allow it"));
            }
            return;
        }
        let owns_object = !parts_only && object_like(nodes, id, 0);
        for &part in &node.all_of {
            self.check(part, v, at, true, depth + 1);
        }
        for (alts, exactly_one) in [(&node.one_of, true), (&node.any_of, false)] {
            if alts.is_empty() {
                continue;
            }
            let mut passing = 0;
            let mut best: Option<Vec<String>> = None;
            for &alt in alts.iter() {
                let mut trial = Run {
                    api: self.api,
                    what: self.what,
                    echo: self.echo,
                    out: Vec::new(),
                };
                trial.check(alt, v, at, false, depth + 1);
                if trial.out.is_empty() {
                    passing += 1;
                } else if best.as_ref().is_none_or(|b| trial.out.len() < b.len()) {
                    best = Some(trial.out);
                }
            }
            if passing == 0 {
                self.out.extend(best.unwrap_or_default());
            } else if exactly_one && passing > 1 {
                self.fail(
                    at,
                    format_args!("matches {passing} of oneOf's alternatives, not exactly one"),
                );
            }
        }
        if let Some(ty) = node.ty {
            let ok = match ty {
                Ty::Object => v.is_object(),
                Ty::Array => v.is_array(),
                Ty::String => v.is_string(),
                Ty::Number => v.is_number(),
                Ty::Integer => v.is_i64() || v.is_u64(),
                Ty::Boolean => v.is_boolean(),
            };
            if !ok {
                self.fail(at, format_args!("expected {}, got {}", ty.name(), kind(v)));
                return;
            }
        }
        if let Some(e) = &node.enumeration
            && !e.contains(v)
        {
            let shown: Vec<String> = e.iter().take(12).map(Value::to_string).collect();
            let more = if e.len() > 12 { ", …" } else { "" };
            self.fail(
                at,
                format_args!(
                    "{} is not one of {}{more} ({})",
                    v,
                    shown.join(", "),
                    node.label
                ),
            );
        }
        match v {
            Value::String(s) => {
                if let Some(max) = node.max_length
                    && s.chars().count() as u64 > max
                {
                    self.fail(at, format_args!("longer than {max} characters"));
                }
                match node.format {
                    Format::Uuid if !is_uuid(s) => {
                        self.fail(at, format_args!("`{s}` is not a UUID"))
                    }
                    Format::Date if !is_date(s) => self.fail(
                        at,
                        format_args!("`{s}` is neither YYYY-MM-DD[Thh:mm:ss] nor /Date(ms+zone)/"),
                    ),
                    _ => {}
                }
            }
            Value::Array(items) => {
                if let Some(s) = node.items {
                    for (i, item) in items.iter().enumerate() {
                        self.check(s, item, &At::Index(at, i), false, depth + 1);
                    }
                }
            }
            Value::Object(obj) if owns_object => {
                for (k, val) in obj {
                    let here = At::Key(at, k);
                    if let Some(p) = find_prop(nodes, id, k, 0).or(node.additional) {
                        self.check(p, val, &here, false, depth + 1);
                    } else if let Some(p) = self
                        .echo
                        .filter(|_| node.label == "Element")
                        .and_then(|e| find_prop(nodes, e, k, 0))
                    {
                        // An error's element echoes the object sent.
                        self.check(p, val, &here, false, depth + 1);
                    } else if allowed_extra(nodes, id, k, 0) {
                        // Shown on this kind of object by the examples.
                    } else {
                        self.fail(
                            &here,
                            format_args!("property not declared by {}", node.label),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split(['?', '#'])
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
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

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DD`, optionally `Thh:mm[:ss[.fff]]` and a zone (`Z`,
/// `±hh:mm`), or `/Date(ms[±hhmm])/`.
fn is_date(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|x| x.strip_suffix(")/")) {
        let ms = inner.strip_prefix('-').unwrap_or(inner);
        let (ms, zone) = match ms.find(['+', '-']) {
            Some(i) => (&ms[..i], Some(&ms[i + 1..])),
            None => (ms, None),
        };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        return digits(ms) && zone.is_none_or(|z| z.len() == 4 && digits(z));
    }
    let (day, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if day.len() != 10 || chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err() {
        return false;
    }
    let Some(time) = time else { return true };
    let (clock, zone) = match time.find(['Z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, ""),
    };
    let clock_ok = ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"]
        .iter()
        .any(|f| chrono::NaiveTime::parse_from_str(clock, f).is_ok());
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || (zone.len() == 6 && chrono::NaiveTime::parse_from_str(&zone[1..], "%H:%M").is_ok());
    clock_ok && zone_ok
}

/// Percent-decoding, `+` as a space.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(x) => {
                    out.push(x);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in [
            "2026-01-15",
            "2026-01-15T10:20:30",
            "2026-01-15T10:20:30.123",
            "2026-01-15T10:20:30Z",
            "2026-01-15T10:20:30+13:00",
            "/Date(1539993600000+0000)/",
            "/Date(1539993600000)/",
            "/Date(-1000)/",
        ] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "15/01/2026",
            "2026-1-15",
            "2026-02-30",
            "2026-01-15 10:20",
            "2026-01-15Tnoon",
            "/Date()/",
            "/Date(12+00)/",
            "",
            "2026-01-15T",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn decoding_never_panics() {
        for s in ["%", "%4", "%zz", "a+b%20c", "%C3%A9", "%ff", "é%"] {
            let _ = decode(s);
        }
        assert_eq!(decode("a+b%20c"), "a b c");
        assert_eq!(decode("%C3%A9"), "é");
    }

    #[test]
    fn paths_print_as_json_paths() {
        let r = At::Root;
        let a = At::Key(&r, "Invoices");
        let b = At::Index(&a, 0);
        let c = At::Key(&b, "odd key");
        assert_eq!(c.to_string(), "$.Invoices[0][\"odd key\"]");
    }

    #[test]
    fn the_allow_list_comes_from_the_examples() {
        let api = OpenApi::xero().expect("Xero's OpenAPI file");
        let of = |name: &str| {
            api.nodes
                .iter()
                .find(|n| n.label == name)
                .map(|n| n.allowed.clone())
                .unwrap_or_default()
        };
        let invoice = of("Invoice");
        assert!(invoice.contains("DateString") && invoice.contains("DueDateString"));
        assert!(!invoice.contains("FooString"));
        assert!(of("Invoices").contains("DateTimeUTC"));
        if std::env::var("OPENAPI_DUMP").is_ok() {
            let mut all: Vec<(String, Vec<String>)> = api
                .nodes
                .iter()
                .filter(|n| !n.allowed.is_empty())
                .map(|n| {
                    let mut a: Vec<String> = n.allowed.iter().cloned().collect();
                    a.sort();
                    (n.label.clone(), a)
                })
                .collect();
            all.sort();
            for (n, a) in all {
                eprintln!("{n}: {}", a.join(", "));
            }
        }
    }
}
