//! A strict check of requests and answers against an OpenAPI 3.0
//! description (Xero's official `xero_accounting.yaml`), for tests.
//!
//! Strict: Xero's schemas leave `additionalProperties` open, so an
//! ordinary validator passes any invented field. Here every property a
//! schema does not declare is a violation, unless the same kind of object
//! carries it in the description's own examples (real answers carry a few
//! undeclared properties, `DateString` on invoices and the answer
//! envelope's `Id`, `Status`, `ProviderName`, `DateTimeUTC`; the examples
//! are the official record of them). Also checked: the operation exists,
//! every query parameter is declared (with its enum and type), types,
//! enums, `maxLength`, UUIDs, and dates: Xero takes `YYYY-MM-DD` in
//! requests and answers `/Date(ms+0000)/` (`x-is-msdate`), so both forms
//! pass for a date field and nothing else does.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A loaded description.
pub struct OpenApi {
    doc: Value,
    /// `(segments, path item)` of every path.
    paths: Vec<(Vec<String>, Value)>,
    /// Per schema name, undeclared properties its examples show.
    allowed: HashMap<String, HashSet<String>>,
}

impl OpenApi {
    /// Reads and indexes the description at `path` (YAML or JSON).
    pub fn load(path: &Path) -> anyhow::Result<OpenApi> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let doc: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(p, item)| (segments(p), item.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut api = OpenApi {
            doc,
            paths,
            allowed: HashMap::new(),
        };
        api.learn_examples();
        Ok(api)
    }

    /// Xero's description: `$LEDGERBRIDGE_REFERENCE/xero/xero_accounting.yaml`,
    /// else `shared/reference/xero/xero_accounting.yaml` beside the
    /// repository (found by walking up from this crate and the current
    /// directory).
    pub fn xero() -> anyhow::Result<OpenApi> {
        let rel = Path::new("xero").join("xero_accounting.yaml");
        let mut tried: Vec<PathBuf> = Vec::new();
        if let Ok(dir) = std::env::var("LEDGERBRIDGE_REFERENCE") {
            tried.push(Path::new(&dir).join(&rel));
        }
        let starts = [
            PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::env::current_dir().unwrap_or_default(),
        ];
        for start in starts {
            for dir in start.ancestors() {
                tried.push(dir.join("shared").join("reference").join(&rel));
            }
        }
        match tried.iter().find(|p| p.is_file()) {
            Some(p) => OpenApi::load(p),
            None => anyhow::bail!(
                "Xero's OpenAPI file was not found; looked at {} (set LEDGERBRIDGE_REFERENCE to the folder holding xero/xero_accounting.yaml)",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// What is wrong with a request: `path` relative to the server base
    /// (`/Invoices/…`), `query` raw.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Vec<String> {
        let what = format!("{method} {path} request");
        let Some((item, op)) = self.operation(method, path) else {
            return vec![format!("{what}: no such operation in the description")];
        };
        let mut out = Vec::new();
        let params = self.parameters(item, op);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k);
            match params
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(&k))
            {
                None => out.push(format!("{what}: query parameter `{k}` is not declared")),
                Some(p) => {
                    let schema = p.get("schema").cloned().unwrap_or(Value::Null);
                    let value = decode(v);
                    let t = schema.get("type").and_then(Value::as_str);
                    let bad = match t {
                        Some("integer") => value.parse::<i64>().is_err(),
                        Some("boolean") => value != "true" && value != "false",
                        _ => false,
                    };
                    if bad {
                        out.push(format!(
                            "{what}: query parameter `{k}`=`{value}` is not a {}",
                            t.unwrap_or("")
                        ));
                    }
                    if let Some(e) = schema.get("enum").and_then(Value::as_array)
                        && !e.iter().any(|x| x.as_str() == Some(&value))
                    {
                        out.push(format!(
                            "{what}: query parameter `{k}`=`{value}` is not one of {e:?}"
                        ));
                    }
                }
            }
        }
        if let Some(body) = body {
            match op
                .pointer("/requestBody/content/application~1json/schema")
                .or_else(|| {
                    self.resolve(op.get("requestBody")?)
                        .pointer("/content/application~1json/schema")
                }) {
                Some(schema) => self.check(
                    schema,
                    body,
                    "$",
                    None,
                    &Ctx {
                        what: &what,
                        echo: None,
                    },
                    &mut out,
                    0,
                ),
                None => out.push(format!("{what}: the operation takes no JSON body")),
            }
        }
        out
    }

    /// What is wrong with an answer of `status`.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Vec<String> {
        let what = format!("{method} {path} answer {status}");
        let Some((_, op)) = self.operation(method, path) else {
            return vec![format!("{what}: no such operation in the description")];
        };
        let responses = op.get("responses");
        let response = responses
            .and_then(|r| r.get(status.to_string()))
            .or_else(|| responses.and_then(|r| r.get("default")));
        let Some(response) = response.map(|r| self.resolve(r)) else {
            return Vec::new();
        };
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            return Vec::new();
        };
        // What an error's elements echo: the kind of object the request
        // sends, the collection named by the path (`/Invoices` → Invoice).
        let collection = segments(path).into_iter().next().unwrap_or_default();
        let echo = op
            .pointer("/requestBody/content/application~1json/schema")
            .map(|s| self.resolve(s))
            .and_then(|s| s.pointer(&format!("/properties/{collection}/items")));
        let mut out = Vec::new();
        let ctx = Ctx { what: &what, echo };
        self.check(schema, body, "$", None, &ctx, &mut out, 0);
        out
    }

    /// The path item and operation for `method` `path`; literal segments
    /// win over templates.
    fn operation(&self, method: &str, path: &str) -> Option<(&Value, &Value)> {
        let want = segments(path);
        let method = method.to_ascii_lowercase();
        self.paths
            .iter()
            .filter(|(segs, _)| {
                segs.len() == want.len()
                    && segs
                        .iter()
                        .zip(&want)
                        .all(|(s, w)| s.starts_with('{') || s == w)
            })
            .min_by_key(|(segs, _)| segs.iter().filter(|s| s.starts_with('{')).count())
            .and_then(|(_, item)| Some((item, item.get(&method)?)))
    }

    fn parameters(&self, item: &Value, op: &Value) -> Vec<Value> {
        [item.get("parameters"), op.get("parameters")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| self.resolve(p).clone())
            .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
            .collect()
    }

    /// `v`, or what its `$ref` names.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        let mut v = v;
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                    Some(t) => v = t,
                    None => return v,
                },
                None => return v,
            }
        }
        v
    }

    /// The schema name a `$ref` names.
    fn ref_name(v: &Value) -> Option<String> {
        v.get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(str::to_string)
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        name: Option<&str>,
        ctx: &Ctx,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        let what = ctx.what;
        if depth > 40 {
            return;
        }
        let owned;
        let name = match Self::ref_name(schema) {
            Some(n) => {
                owned = n;
                Some(owned.as_str())
            }
            None => name,
        };
        let schema = self.resolve(schema);
        if value.is_null() {
            if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
                out.push(format!(
                    "{what}: {at}: null where the schema does not allow it"
                ));
            }
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, value, at, name, ctx, out, depth + 1);
            }
            return;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                let mut best: Option<Vec<String>> = None;
                for s in alts {
                    let mut o = Vec::new();
                    self.check(s, value, at, name, ctx, &mut o, depth + 1);
                    if o.is_empty() {
                        return;
                    }
                    if best.as_ref().is_none_or(|b| o.len() < b.len()) {
                        best = Some(o);
                    }
                }
                out.extend(best.unwrap_or_default());
                return;
            }
        }
        let t = schema
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| schema.get("properties").map(|_| "object"));
        match t {
            Some("object") => {
                let Some(obj) = value.as_object() else {
                    out.push(format!(
                        "{what}: {at}: expected an object, got {}",
                        kind(value)
                    ));
                    return;
                };
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties").filter(|a| a.is_object());
                for (k, v) in obj {
                    let here = format!("{at}.{k}");
                    match props.and_then(|p| p.get(k)) {
                        Some(p) => self.check(p, v, &here, None, ctx, out, depth + 1),
                        None if extra.is_some() => self.check(
                            extra.unwrap_or(&Value::Null),
                            v,
                            &here,
                            None,
                            ctx,
                            out,
                            depth + 1,
                        ),
                        // An error's element echoes the object sent (ERP_FACTS):
                        // its other properties are the sent kind's.
                        None if name == Some("Element")
                            && ctx.echo.is_some_and(|e| {
                                self.resolve(e)
                                    .pointer(&format!("/properties/{k}"))
                                    .is_some()
                            }) =>
                        {
                            let e = self.resolve(ctx.echo.unwrap_or(&Value::Null));
                            let p = e
                                .pointer(&format!("/properties/{k}"))
                                .unwrap_or(&Value::Null);
                            self.check(p, v, &here, None, ctx, out, depth + 1)
                        }
                        None => {
                            let allowed = name
                                .and_then(|n| self.allowed.get(n))
                                .is_some_and(|a| a.contains(k));
                            if !allowed {
                                out.push(format!(
                                    "{what}: {here}: property not declared by {}",
                                    name.unwrap_or("the schema")
                                ));
                            }
                        }
                    }
                }
            }
            Some("array") => {
                let Some(items) = value.as_array() else {
                    out.push(format!(
                        "{what}: {at}: expected an array, got {}",
                        kind(value)
                    ));
                    return;
                };
                if let Some(s) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(s, v, &format!("{at}[{i}]"), None, ctx, out, depth + 1);
                    }
                }
            }
            Some("string") => {
                let Some(s) = value.as_str() else {
                    out.push(format!(
                        "{what}: {at}: expected a string, got {}",
                        kind(value)
                    ));
                    return;
                };
                if let Some(e) = schema.get("enum").and_then(Value::as_array)
                    && !e.iter().any(|x| x.as_str() == Some(s))
                {
                    out.push(format!(
                        "{what}: {at}: `{s}` is not one of the schema's values"
                    ));
                }
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                    && s.chars().count() as u64 > max
                {
                    out.push(format!("{what}: {at}: longer than {max} characters"));
                }
                let msdate = ["x-is-msdate", "x-is-msdate-time"]
                    .iter()
                    .any(|k| schema.get(*k).and_then(Value::as_bool) == Some(true));
                let format = schema.get("format").and_then(Value::as_str);
                let dated = msdate || matches!(format, Some("date" | "date-time"));
                match format {
                    Some("uuid") if uuid::Uuid::parse_str(s).is_err() => {
                        out.push(format!("{what}: {at}: `{s}` is not a UUID"))
                    }
                    _ if dated && !is_date(s) => out.push(format!(
                        "{what}: {at}: `{s}` is neither YYYY-MM-DD[Thh:mm:ss] nor /Date(ms)/"
                    )),
                    _ => {}
                }
            }
            Some(t @ ("number" | "integer" | "boolean")) => {
                let ok = match t {
                    "number" => value.is_number(),
                    "integer" => value.is_i64() || value.is_u64(),
                    _ => value.is_boolean(),
                };
                if !ok {
                    out.push(format!("{what}: {at}: expected a {t}, got {}", kind(value)));
                }
            }
            _ => {}
        }
    }

    /// Records, per schema, the undeclared properties the description's
    /// own examples show.
    fn learn_examples(&mut self) {
        let mut pairs: Vec<(Value, Value)> = Vec::new();
        for (_, item) in &self.paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for op in ops.values() {
                let mut media: Vec<&Value> = Vec::new();
                if let Some(rb) = op.get("requestBody") {
                    media.extend(self.resolve(rb).pointer("/content/application~1json"));
                }
                if let Some(rs) = op.get("responses").and_then(Value::as_object) {
                    for r in rs.values() {
                        media.extend(self.resolve(r).pointer("/content/application~1json"));
                    }
                }
                for m in media {
                    let Some(schema) = m.get("schema") else {
                        continue;
                    };
                    if let Some(e) = m.get("example") {
                        pairs.push((schema.clone(), e.clone()));
                    }
                    if let Some(es) = m.get("examples").and_then(Value::as_object) {
                        for e in es.values() {
                            if let Some(v) = self.resolve(e).get("value") {
                                pairs.push((schema.clone(), v.clone()));
                            }
                        }
                    }
                }
            }
        }
        let mut allowed = HashMap::new();
        for (schema, example) in pairs {
            self.learn(&schema, &example, None, &mut allowed, 0);
        }
        self.allowed = allowed;
    }

    fn learn(
        &self,
        schema: &Value,
        example: &Value,
        name: Option<&str>,
        allowed: &mut HashMap<String, HashSet<String>>,
        depth: usize,
    ) {
        if depth > 40 {
            return;
        }
        let owned;
        let name = match Self::ref_name(schema) {
            Some(n) => {
                owned = n;
                Some(owned.as_str())
            }
            None => name,
        };
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.learn(s, example, name, allowed, depth + 1);
            }
            return;
        }
        match example {
            Value::Object(obj) => {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in obj {
                    match props.and_then(|p| p.get(k)) {
                        Some(p) => self.learn(p, v, None, allowed, depth + 1),
                        None => {
                            if let Some(n) = name {
                                allowed.entry(n.to_string()).or_default().insert(k.clone());
                            }
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = schema.get("items") {
                    for v in items {
                        self.learn(s, v, None, allowed, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// One check's context: what is checked, for messages, and the schema
/// an error element echoes.
struct Ctx<'a> {
    what: &'a str,
    echo: Option<&'a Value>,
}

fn segments(path: &str) -> Vec<String> {
    path.split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
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

/// `YYYY-MM-DD`, optionally with a time, or `/Date(ms[+zone])/`.
fn is_date(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|x| x.strip_suffix(")/")) {
        let digits = inner.trim_start_matches('-');
        let end = digits.find(['+', '-']).unwrap_or(digits.len());
        return !digits[..end].is_empty() && digits[..end].bytes().all(|b| b.is_ascii_digit());
    }
    let day = s.get(..10).unwrap_or("");
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok()
        && (s.len() == 10 || s.as_bytes().get(10) == Some(&b'T'))
}

/// Percent-decoding, `+` as a space.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                Ok(x) => {
                    out.push(x);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
