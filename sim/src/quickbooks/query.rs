//! QuickBooks' query language, as far as the API documents it:
//! `SELECT * | COUNT(*) FROM Entity [WHERE cond [AND cond]...]
//! [ORDERBY field [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS n]`, where a
//! condition is `field (= | != | < | <= | > | >=) value`, `field IN (v, ...)`
//! or `field LIKE 'pat%'`. There is no `OR` and no parentheses (QuickBooks
//! has none either). Keywords are case-insensitive; strings are in single
//! quotes, a backslash taking the next character as it is (`\'` a quote,
//! `\\` a backslash). Values compare as text, except ids and amounts (`Id`,
//! `TotalAmt`, `Balance`), which compare as numbers. A reference field (`VendorRef`) compares
//! its `value`. Only an entity's queryable fields may be named (4001
//! otherwise, as QuickBooks answers).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
}

#[derive(Debug, Clone)]
struct Cond {
    field: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub entity: String,
    pub count: bool,
    conds: Vec<Cond>,
    order: Option<(String, bool)>,
    /// 1-based.
    pub start: usize,
    pub max: usize,
}

/// Why a query is refused: QuickBooks' code and detail.
#[derive(Debug, Clone)]
pub struct QueryError {
    pub code: &'static str,
    pub detail: String,
}

fn parse_error(detail: impl Into<String>) -> QueryError {
    QueryError {
        code: "4000",
        detail: format!("QueryParserError: {}", detail.into()),
    }
}

/// The fields a query may name, by entity.
fn queryable(entity: &str) -> Option<&'static [&'static str]> {
    Some(match entity {
        "Bill" => &[
            "Id",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "VendorRef",
            "APAccountRef",
            "TotalAmt",
            "Balance",
            "MetaData.CreateTime",
            "MetaData.LastUpdatedTime",
        ],
        "BillPayment" => &[
            "Id",
            "DocNumber",
            "TxnDate",
            "VendorRef",
            "PayType",
            "TotalAmt",
            "MetaData.CreateTime",
            "MetaData.LastUpdatedTime",
        ],
        "Vendor" => &[
            "Id",
            "DisplayName",
            "Active",
            "MetaData.CreateTime",
            "MetaData.LastUpdatedTime",
        ],
        "Account" => &["Id", "Name", "AccountType", "Active"],
        "Class" => &["Id", "Name", "Active"],
        "TaxCode" => &["Id", "Name", "Active"],
        "Preferences" => &[],
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

fn tokens(text: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(parse_error("a string is not closed")),
                    // A backslash takes the next character as it is
                    // (`\'` a quote, `\\` a backslash).
                    Some('\\') => match chars.get(i + 1) {
                        Some(ch) => {
                            s.push(*ch);
                            i += 2;
                        }
                        None => return Err(parse_error("a string is not closed")),
                    },
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if "<>!=".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["<=", ">=", "!="].contains(&two.as_str()) {
                out.push(Tok::Sym(two));
                i += 2;
            } else {
                out.push(Tok::Sym(c.to_string()));
                i += 1;
            }
        } else if "(),*".contains(c) {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else if c.is_alphanumeric() || "._-:+".contains(c) {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "._-:+".contains(chars[i])) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(parse_error(format!("unexpected character '{c}'")));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, k: &str) -> Result<(), QueryError> {
        if self.keyword(k) {
            Ok(())
        } else {
            Err(parse_error(format!("expected {k}")))
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if self.peek() == Some(&Tok::Sym(s.into())) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, what: &str) -> Result<String, QueryError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => Err(parse_error(format!("expected {what}"))),
        }
    }

    fn value(&mut self) -> Result<String, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) | Some(Tok::Word(s)) => Ok(s),
            _ => Err(parse_error("expected a value")),
        }
    }

    fn number(&mut self, what: &str) -> Result<usize, QueryError> {
        self.word(what)?
            .parse()
            .map_err(|_| parse_error(format!("{what} must be a number")))
    }
}

/// Parses a query (QuickBooks' 4000/4001 errors for what it refuses).
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        toks: tokens(text)?,
        at: 0,
    };
    p.expect_keyword("select")?;
    let count = if p.sym("*") {
        false
    } else if p.keyword("count") {
        if !(p.sym("(") && p.sym("*") && p.sym(")")) {
            return Err(parse_error("expected COUNT(*)"));
        }
        true
    } else {
        // A list of fields: read, and answered whole (as `*`).
        loop {
            p.word("a field")?;
            if !p.sym(",") {
                break;
            }
        }
        false
    };
    p.expect_keyword("from")?;
    let entity = p.word("an entity")?;
    let fields = queryable(&entity).ok_or_else(|| QueryError {
        code: "4001",
        detail: format!("Invalid query: the entity {entity} cannot be queried"),
    })?;
    let field_of = |p: &mut Parser| -> Result<String, QueryError> {
        let f = p.word("a field")?;
        match fields.iter().find(|x| x.eq_ignore_ascii_case(&f)) {
            Some(x) => Ok(x.to_string()),
            None => Err(QueryError {
                code: "4001",
                detail: format!("Invalid query: property '{f}' is not queryable on {entity}"),
            }),
        }
    };
    let mut conds = Vec::new();
    if p.keyword("where") {
        loop {
            let field = field_of(&mut p)?;
            let op = match p.next() {
                Some(Tok::Sym(s)) => match s.as_str() {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    _ => return Err(parse_error(format!("unknown operator {s}"))),
                },
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Op::In,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
                _ => return Err(parse_error("expected an operator")),
            };
            let values = if op == Op::In {
                if !p.sym("(") {
                    return Err(parse_error("expected ( after IN"));
                }
                let mut v = vec![p.value()?];
                while p.sym(",") {
                    v.push(p.value()?);
                }
                if !p.sym(")") {
                    return Err(parse_error("expected ) closing IN"));
                }
                v
            } else {
                vec![p.value()?]
            };
            conds.push(Cond { field, op, values });
            if p.keyword("or") {
                return Err(parse_error("OR is not supported"));
            }
            if !p.keyword("and") {
                break;
            }
        }
    }
    let mut order = None;
    if p.keyword("orderby") || (p.keyword("order") && p.keyword("by")) {
        let f = field_of(&mut p)?;
        let desc = if p.keyword("desc") {
            true
        } else {
            p.keyword("asc");
            false
        };
        order = Some((f, desc));
    }
    let mut start = 1;
    let mut max = 100;
    loop {
        if p.keyword("startposition") {
            start = p.number("STARTPOSITION")?.max(1);
        } else if p.keyword("maxresults") {
            max = p.number("MAXRESULTS")?;
            if max > 1000 {
                return Err(parse_error("MAXRESULTS may be at most 1000"));
            }
        } else {
            break;
        }
    }
    if let Some(t) = p.peek() {
        return Err(parse_error(format!("unexpected {t:?}")));
    }
    Ok(Query {
        entity,
        count,
        conds,
        order,
        start,
        max,
    })
}

/// A field's value: a path into the entity, a reference's `value`.
fn field(v: &Value, path: &str) -> Option<String> {
    let mut at = v;
    for part in path.split('.') {
        at = at.get(part)?;
    }
    if let Some(r) = at.get("value") {
        at = r;
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Fields whose values compare as numbers; the rest compare as text
/// (`DocNumber = '1001'` does not find `01001`).
const NUMERIC: &[&str] = &["Id", "TotalAmt", "Balance"];

fn compare(field: &str, a: &str, b: &str) -> std::cmp::Ordering {
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    if NUMERIC.contains(&field)
        && let (Some(x), Some(y)) = (number(a), number(b))
    {
        return x.total_cmp(&y);
    }
    a.cmp(b)
}

fn like(text: &str, pattern: &str) -> bool {
    let t = text.to_lowercase();
    let p = pattern.to_lowercase();
    match (p.strip_prefix('%'), p.strip_suffix('%')) {
        (Some(rest), _) if rest.ends_with('%') => t.contains(&rest[..rest.len() - 1]),
        (Some(rest), _) => t.ends_with(rest),
        (None, Some(rest)) => t.starts_with(rest),
        (None, None) => t == p,
    }
}

impl Query {
    fn matches(&self, v: &Value) -> bool {
        self.conds.iter().all(|c| {
            let Some(x) = field(v, &c.field) else {
                return false;
            };
            let first = c.values.first().map(String::as_str).unwrap_or("");
            use std::cmp::Ordering::*;
            let compare = |a: &str, b: &str| compare(&c.field, a, b);
            match c.op {
                Op::Eq => compare(&x, first) == Equal,
                Op::Ne => compare(&x, first) != Equal,
                Op::Lt => compare(&x, first) == Less,
                Op::Le => compare(&x, first) != Greater,
                Op::Gt => compare(&x, first) == Greater,
                Op::Ge => compare(&x, first) != Less,
                Op::In => c.values.iter().any(|y| compare(&x, y) == Equal),
                Op::Like => like(&x, first),
            }
        })
    }

    /// The answer's `QueryResponse` for `all` (the entity's records).
    pub fn answer(&self, all: Vec<Value>) -> Value {
        let mut found: Vec<Value> = all.into_iter().filter(|v| self.matches(v)).collect();
        if self.count {
            return serde_json::json!({"totalCount": found.len()});
        }
        if let Some((f, desc)) = &self.order {
            found.sort_by(|a, b| {
                let o = compare(
                    f,
                    &field(a, f).unwrap_or_default(),
                    &field(b, f).unwrap_or_default(),
                );
                if *desc { o.reverse() } else { o }
            });
        }
        let page: Vec<Value> = found
            .into_iter()
            .skip(self.start - 1)
            .take(self.max)
            .collect();
        if page.is_empty() {
            return serde_json::json!({});
        }
        let mut m = serde_json::Map::new();
        let n = page.len();
        m.insert(self.entity.clone(), Value::Array(page));
        m.insert("startPosition".into(), self.start.into());
        m.insert("maxResults".into(), n.into());
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_filters_as_quickbooks_does() {
        let bills = vec![
            json!({"Id": "1", "DocNumber": "A-1", "TxnDate": "2026-11-01", "VendorRef": {"value": "56"}}),
            json!({"Id": "2", "DocNumber": "O'Neil", "TxnDate": "2026-11-05", "VendorRef": {"value": "57"}}),
            json!({"Id": "10", "DocNumber": "A-2", "TxnDate": "2026-11-09", "VendorRef": {"value": "56"}}),
        ];
        let ids = |q: &str| -> Vec<String> {
            let a = parse(q).unwrap().answer(bills.clone());
            a.get("Bill")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|b| b["Id"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(ids("select * from Bill where DocNumber = 'A-1'"), ["1"]);
        assert_eq!(
            ids("SELECT * FROM Bill WHERE DocNumber IN ('A-2', 'O\\'Neil') ORDERBY Id"),
            ["2", "10"]
        );
        assert_eq!(
            ids("select * from Bill where VendorRef = '56' and TxnDate > '2026-11-02'"),
            ["10"]
        );
        assert_eq!(
            ids("select * from Bill where DocNumber like 'A-%' orderby Id desc"),
            ["10", "1"]
        );
        assert_eq!(
            ids("select * from Bill startposition 2 maxresults 1"),
            ["2"]
        );
        assert_eq!(
            ids("select * from Bill where DocNumber = 'none'"),
            Vec::<String>::new()
        );
        assert_eq!(
            parse("select count(*) from Bill")
                .unwrap()
                .answer(bills.clone())["totalCount"],
            3
        );
        assert_eq!(
            parse("select * from Bill where PrivateNote = 'x'")
                .unwrap_err()
                .code,
            "4001"
        );
        assert_eq!(
            parse("select * from Bill where DocNumber = 'a' or Id = '1'")
                .unwrap_err()
                .code,
            "4000"
        );
        assert_eq!(
            parse("select * from Bill where DocNumber = 'a")
                .unwrap_err()
                .code,
            "4000"
        );
        assert_eq!(parse("select * from Invoice").unwrap_err().code, "4001");
        // Text compares as text: a number with a leading zero is another
        // number, and `NaN` is no wildcard.
        let checks = vec![
            json!({"Id": "1", "DocNumber": "01001"}),
            json!({"Id": "2", "DocNumber": "C:\\pay\\"}),
        ];
        let docs = |q: &str| -> usize {
            parse(q).unwrap().answer(checks.clone())["BillPayment"]
                .as_array()
                .map_or(0, Vec::len)
        };
        assert_eq!(
            docs("select * from BillPayment where DocNumber = '1001'"),
            0
        );
        assert_eq!(docs("select * from BillPayment where DocNumber = 'NaN'"), 0);
        assert_eq!(docs("select * from BillPayment where Id = 'NaN'"), 0);
        assert_eq!(
            docs("select * from BillPayment where DocNumber = '01001'"),
            1
        );
        // A backslash escapes the next character, a backslash too.
        assert_eq!(
            docs(r"select * from BillPayment where DocNumber = 'C:\\pay\\'"),
            1
        );
        assert_eq!(
            parse(r"select * from Bill where DocNumber = 'ends\'")
                .unwrap_err()
                .code,
            "4000"
        );
        assert_eq!(
            parse("select * from Bill maxresults 1001")
                .unwrap_err()
                .code,
            "4000"
        );
    }
}
