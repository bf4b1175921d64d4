//! Intake (A1-A4) and what became of each document: documents, payments
//! and disbursement events in, a document and its integration log (L1)
//! out.

use super::AppState;
use super::auth::Auth;
use super::input::{self, P, Page, PageQuery, Q, page};
use super::problem::Problem;
use crate::model::DisbursementStatus;
use crate::store::LogRow;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// What an intake request recorded (durable when answered).
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub documents: usize,
    pub payments: usize,
    /// New syncs queued.
    pub queued: usize,
    /// Changes merged into syncs already queued.
    pub merged: usize,
}

/// The items of a body that is one object or `{"<list>": [...]}`, each
/// with its tenant: the path's (an item naming another is refused).
fn items(body: Value, list: &str, tenant: &str) -> Result<Vec<Value>, Problem> {
    let (items, at): (Vec<Value>, Box<dyn Fn(usize) -> String>) = match body {
        Value::Object(mut o) if o.contains_key(list) => {
            if let Some(k) = o.keys().find(|k| *k != list) {
                return Err(Problem::invalid(
                    k,
                    format!("unknown field: a batch holds `{list}` only"),
                ));
            }
            match o.remove(list) {
                Some(Value::Array(a)) => {
                    let list = list.to_string();
                    (a, Box::new(move |i| format!("{list}[{i}]")))
                }
                _ => return Err(Problem::invalid(list, "must be an array")),
            }
        }
        Value::Object(o) => (vec![Value::Object(o)], Box::new(|_| "(body)".to_string())),
        _ => {
            return Err(Problem::invalid(
                "(body)",
                format!("one object, or {{\"{list}\": [...]}}"),
            ));
        }
    };
    if items.is_empty() {
        return Err(Problem::invalid(list, "holds nothing"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            let Some(o) = v.as_object_mut() else {
                return Err(Problem::invalid(&at(i), "must be an object"));
            };
            match o.get("tenant_id") {
                None => {
                    o.insert("tenant_id".into(), tenant.into());
                }
                Some(Value::String(t)) if t == tenant => {}
                Some(_) => {
                    return Err(Problem::invalid(
                        &format!("{}.tenant_id", at(i)),
                        format!("must be `{tenant}`, the path's tenant"),
                    ));
                }
            }
            Ok(v)
        })
        .collect()
}

async fn intake(
    s: AppState,
    auth: Auth,
    tenant: String,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    list: &'static str,
) -> Result<Response, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        s.engine.require_tenant(&tenant).await?;
        let body: Value = input::json(&headers, &bytes)?;
        let items = items(body, list, &tenant)?;
        let batch = serde_json::json!({ list: items }).to_string();
        let batch = crate::intake::parse_batch(&batch)
            .map_err(|e| Problem::fields(input::field_problems(&e.0)))?;
        let i = s.engine.import(batch).await?;
        Ok((
            StatusCode::OK,
            serde_json::json!({"documents": i.documents, "payments": i.payments,
                "queued": i.queued, "merged": i.merged}),
        ))
    })
    .await)
}

/// Records documents (A1, A2): one document, or `{"documents": [...]}`,
/// all or nothing. Answered once stored; an `Idempotency-Key` makes a
/// retry answer as the first did.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/documents", tag = "intake",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Object, description = "A document (README, Running it for tenants), or {\"documents\": [...]}; `tenant_id` may be left out"),
    responses((status = 200, body = Accepted), (status = "4XX", body = Problem)))]
pub async fn post_documents(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    intake(s, auth, tenant, headers, raw, "documents").await
}

/// Records payments (A3, A4): one payment, or `{"payments": [...]}`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/payments", tag = "intake",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Object, description = "A payment (README, Running it for tenants), or {\"payments\": [...]}; `tenant_id` may be left out"),
    responses((status = 200, body = Accepted), (status = "4XX", body = Problem)))]
pub async fn post_payments(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    intake(s, auth, tenant, headers, raw, "payments").await
}

/// A payment's disbursement moved on (A4).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisbursementEvent {
    pub document_id: String,
    pub payment_id: String,
    /// `initiated`, `funding_complete` or `failed`.
    #[schema(value_type = String)]
    pub disbursement_status: DisbursementStatus,
}

/// Records a disbursement event (A4): `funding_complete` syncs the
/// payment entry at once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/disbursement-events", tag = "intake",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = DisbursementEvent,
    responses((status = 200, body = Accepted), (status = "4XX", body = Problem)))]
pub async fn post_disbursement_event(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        let e: DisbursementEvent = input::json(&headers, &bytes)?;
        let i = s
            .engine
            .disbursement_event(
                &tenant,
                &e.document_id,
                &e.payment_id,
                e.disbursement_status,
            )
            .await?;
        Ok((
            StatusCode::OK,
            serde_json::json!({"documents": i.documents, "payments": i.payments,
                "queued": i.queued, "merged": i.merged}),
        ))
    })
    .await)
}

/// A document as recorded, with its payments.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    #[schema(value_type = Object)]
    pub document: Value,
    #[schema(value_type = Vec<Object>)]
    pub payments: Vec<Value>,
}

/// One document as recorded.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/documents/{document}", tag = "documents",
    params(("tenant" = String, Path), ("document" = String, Path)),
    responses((status = 200, body = DocumentView), (status = "4XX", body = Problem)))]
pub async fn document(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, document)): P<(String, String)>,
) -> Result<Json<DocumentView>, Problem> {
    auth.tenant(&tenant)?;
    let d = s.engine.document(&tenant, &document).await?;
    let payments = s.engine.payments_of(&tenant, &document).await?;
    Ok(Json(DocumentView {
        document: serde_json::to_value(d).unwrap_or_default(),
        payments: payments
            .into_iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect(),
    }))
}

/// Which log lines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only this connection's lines.
    pub connection: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A line of a document's integration log (L1): what was sent, what came
/// back, the outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    pub at: i64,
    pub connection_id: String,
    pub document_id: String,
    pub trigger: String,
    pub target: String,
    #[schema(value_type = Vec<Object>)]
    pub operations: Value,
    pub outcome: String,
    pub entry_id: Option<String>,
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub plugin_log: Value,
    /// The plugin version that ran the operations (P3): `{name, version,
    /// digest}`, the digest the first 12 hex digits of the component's
    /// SHA-256; absent when no call was made.
    #[schema(value_type = Option<Object>)]
    pub plugin: Option<crate::model::PluginVersion>,
}

impl From<LogRow> for LogLine {
    fn from(r: LogRow) -> LogLine {
        LogLine {
            at: r.at,
            connection_id: r.connection_id,
            document_id: r.document_id,
            trigger: r.trigger,
            target: r.target,
            operations: serde_json::to_value(r.operations).unwrap_or_default(),
            outcome: r.outcome,
            entry_id: r.entry_id,
            error: r.error,
            plugin_log: r.plugin_log,
            plugin: r.plugin,
        }
    }
}

/// The document's integration log (L1), oldest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/documents/{document}/log", tag = "documents",
    params(("tenant" = String, Path), ("document" = String, Path), LogQuery),
    responses((status = 200, body = Page<LogLine>), (status = "4XX", body = Problem)))]
pub async fn log(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, document)): P<(String, String)>,
    Q(q): Q<LogQuery>,
) -> Result<Json<Page<LogLine>>, Problem> {
    auth.tenant(&tenant)?;
    if let Some(c) = &q.connection {
        s.engine.tenant_connection(&tenant, c).await?;
    }
    let rows = s
        .engine
        .log_of(&tenant, &document, q.connection.as_deref())
        .await?;
    // Lines are only ever added: their place in the log is a stable key.
    let numbered: Vec<(usize, LogRow)> = rows.into_iter().enumerate().collect();
    let p = page(
        numbered,
        |(i, _)| format!("{i:012}"),
        &PageQuery {
            limit: q.limit,
            cursor: q.cursor,
        },
    )?;
    Ok(Json(Page {
        items: p.items.into_iter().map(|(_, r)| r.into()).collect(),
        next_cursor: p.next_cursor,
    }))
}
