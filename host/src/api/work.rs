//! Syncs and what needs a person: sync one document (M1), bulk re-syncs
//! as runs to poll (M2, M4), Requires attention (L2), Failed to export
//! (L3, C3), funding accounts (C1), booked locks (B3) and each
//! connection's queue and budget.

use super::AppState;
use super::auth::Auth;
use super::input::{self, P, Page, PageQuery, Q, key, page};
use super::problem::Problem;
use crate::model::Target;
use crate::store::{AttentionItem, AttentionKind, FailedExport, FundingAccount, RunSummary};
use crate::sync::Selection;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

fn target(t: Option<&str>) -> Result<Target, Problem> {
    match t.unwrap_or("bill") {
        "bill" => Ok(Target::Bill),
        "payment" => Ok(Target::Payment),
        other => Err(Problem::invalid(
            "target",
            format!("`{}` is not bill or payment", other.escape_debug()),
        )),
    }
}

/// The body of a sync of one document; all optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// `bill` (default) or `payment`.
    pub target: Option<String>,
    /// Send it even when nothing changed since the last sync.
    #[serde(default)]
    pub force: bool,
}

/// A run queued: poll `GET /v1/tenants/{tenant}/runs/{run}` until
/// `pending` and `waiting` are 0.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    pub run_id: String,
    /// Syncs in the run (a document may have a bill and a payment sync):
    /// the run's `summary.total`.
    pub total: usize,
}

/// The syncs run `run` holds, as its summary counts them.
async fn syncs_in(s: &AppState, run: &str) -> Result<usize, Problem> {
    Ok(s.engine.run_summary(run).await?.total)
}

/// Syncs one document now (M1), as a run of one to poll.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/connections/{connection}/documents/{document}/sync", tag = "syncs",
    params(("tenant" = String, Path), ("connection" = String, Path), ("document" = String, Path)),
    request_body(content = SyncRequest, description = "Optional"),
    responses((status = 202, body = RunStarted), (status = "4XX", body = Problem)))]
pub async fn sync_document(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection, document)): P<(String, String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunStarted>), Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    let r: SyncRequest = input::optional_json(&headers, &bytes)?;
    let t = target(r.target.as_deref())?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    let run = s
        .engine
        .request_sync(&tenant, &document, &connection, t, r.force)
        .await?;
    let total = syncs_in(&s, &run).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunStarted { run_id: run, total }),
    ))
}

/// A bulk re-sync: which documents.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// These documents; else every document of the tenant.
    pub documents: Option<Vec<String>>,
    /// Only the documents with an item in Requires attention.
    #[serde(default)]
    pub attention: bool,
    /// Send even what did not change since the last sync.
    #[serde(default)]
    pub force: bool,
}

/// Starts a bulk re-sync (M2) in the background.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/connections/{connection}/runs", tag = "syncs",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    request_body(content = ResyncRequest, description = "Optional: every document by default"),
    responses((status = 202, body = RunStarted), (status = "4XX", body = Problem)))]
pub async fn start_run(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        let r: ResyncRequest = input::optional_json(&headers, &bytes)?;
        let selection = match (r.documents, r.attention) {
            (Some(_), true) => {
                return Err(Problem::invalid(
                    "attention",
                    "give documents or attention, not both",
                ));
            }
            (Some(d), false) if d.is_empty() => {
                return Err(Problem::invalid("documents", "holds nothing"));
            }
            (Some(d), false) => Selection::Documents(d),
            (None, true) => Selection::Attention,
            (None, false) => Selection::All,
        };
        s.engine.tenant_connection(&tenant, &connection).await?;
        let (run, _documents) = s
            .engine
            .request_resync(&connection, selection, r.force)
            .await?;
        let total = syncs_in(&s, &run).await?;
        Ok((StatusCode::ACCEPTED, json!({"run_id": run, "total": total})))
    })
    .await)
}

/// Where a run stands (M4): `done` once nothing is pending or waiting.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    pub connection_id: String,
    pub done: bool,
    #[schema(value_type = Object)]
    pub summary: Value,
}

async fn run_of(s: &AppState, tenant: &str, run: &str) -> Result<String, Problem> {
    let connection = s.engine.run_connection(run).await?;
    s.engine
        .tenant_connection(tenant, &connection)
        .await
        .map_err(|_| Problem::not_found(format!("no run {run}")))?;
    Ok(connection)
}

/// A run's progress (M4).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/runs/{run}", tag = "syncs",
    params(("tenant" = String, Path), ("run" = String, Path)),
    responses((status = 200, body = RunView), (status = "4XX", body = Problem)))]
pub async fn run(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, run)): P<(String, String)>,
) -> Result<Json<RunView>, Problem> {
    auth.tenant(&tenant)?;
    let connection = run_of(&s, &tenant, &run).await?;
    let summary: RunSummary = s.engine.run_summary(&run).await?;
    Ok(Json(RunView {
        done: summary.pending == 0 && summary.waiting == 0,
        run_id: run,
        connection_id: connection,
        summary: serde_json::to_value(summary).unwrap_or_default(),
    }))
}

/// A run cancelled.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunCancelled {
    /// Syncs of the run that will not start now.
    pub cancelled: usize,
    /// The run after cancelling: syncs under way still finish.
    pub run: RunView,
}

/// Cancels a run (M2): its syncs not yet started end as `cancelled`;
/// those under way finish, and a sync that also carries a change the AP
/// product sent (an approval, a change, a payment) still runs. Cancelling
/// again does nothing more.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/runs/{run}/cancel", tag = "syncs",
    params(("tenant" = String, Path), ("run" = String, Path)),
    responses((status = 200, body = RunCancelled), (status = "4XX", body = Problem)))]
pub async fn cancel_run(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, run)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        input::no_body(&headers, &bytes)?;
        let connection = run_of(&s, &tenant, &run).await?;
        let cancelled = s.engine.cancel_run(&run).await?;
        let summary: RunSummary = s.engine.run_summary(&run).await?;
        let view = RunCancelled {
            cancelled,
            run: RunView {
                done: summary.pending == 0 && summary.waiting == 0,
                run_id: run.clone(),
                connection_id: connection,
                summary: serde_json::to_value(summary).unwrap_or_default(),
            },
        };
        Ok((
            StatusCode::OK,
            serde_json::to_value(view).unwrap_or_default(),
        ))
    })
    .await)
}

/// One document's result in a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunResult {
    pub document_id: String,
    pub target: String,
    pub state: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// Each document's result in a run.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/runs/{run}/results", tag = "syncs",
    params(("tenant" = String, Path), ("run" = String, Path), PageQuery),
    responses((status = 200, body = Page<RunResult>), (status = "4XX", body = Problem)))]
pub async fn run_results(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, run)): P<(String, String)>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<RunResult>>, Problem> {
    auth.tenant(&tenant)?;
    run_of(&s, &tenant, &run).await?;
    let all: Vec<RunResult> = s
        .engine
        .run_results(&run)
        .await?
        .into_iter()
        .map(|(document_id, target, state, outcome, error)| RunResult {
            document_id,
            target,
            state,
            outcome,
            error,
        })
        .collect();
    Ok(Json(page(all, |r| key(&[&r.document_id, &r.target]), &q)?))
}

/// Which items of Requires attention.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttentionQuery {
    /// Only this connection's.
    pub connection: Option<String>,
    /// Only this kind: `failed`, `gave_up`, `blocked`, `quarantined`, …
    pub kind: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Requires attention (L2): each item with the error in plain words and
/// how to fix it.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/attention", tag = "attention",
    params(("tenant" = String, Path), AttentionQuery),
    responses((status = 200, body = Page<Object>), (status = "4XX", body = Problem)))]
pub async fn attention(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    Q(q): Q<AttentionQuery>,
) -> Result<Json<Page<Value>>, Problem> {
    auth.tenant(&tenant)?;
    s.engine.require_tenant(&tenant).await?;
    if let Some(k) = &q.kind
        && !AttentionKind::ALL.iter().any(|a| a.as_str() == k)
    {
        let kinds: Vec<&str> = AttentionKind::ALL.iter().map(|a| a.as_str()).collect();
        return Err(Problem::invalid(
            "kind",
            format!("one of {}", kinds.join(", ")),
        ));
    }
    if let Some(c) = &q.connection {
        s.engine.tenant_connection(&tenant, c).await?;
    }
    let items: Vec<AttentionItem> = s
        .engine
        .attention(q.connection.as_deref())
        .await?
        .into_iter()
        .filter(|a| a.tenant_id == tenant)
        .filter(|a| {
            q.kind.as_deref().is_none_or(|k| {
                serde_json::to_value(a.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    == Some(k.to_string())
            })
        })
        .collect();
    let p = page(
        items,
        |a| key(&[&a.connection_id, &a.document_id, &a.target]),
        &PageQuery {
            limit: q.limit,
            cursor: q.cursor,
        },
    )?;
    Ok(Json(Page {
        items: p
            .items
            .into_iter()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect(),
        next_cursor: p.next_cursor,
    }))
}

/// `?target=bill|payment`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TargetQuery {
    /// `bill` (default) or `payment`.
    pub target: Option<String>,
}

/// Dismisses an item of Requires attention.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/connections/{connection}/attention/{document}", tag = "attention",
    params(("tenant" = String, Path), ("connection" = String, Path), ("document" = String, Path), TargetQuery),
    responses((status = 204), (status = "4XX", body = Problem)))]
pub async fn dismiss(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection, document)): P<(String, String, String)>,
    Q(q): Q<TargetQuery>,
) -> Result<StatusCode, Problem> {
    auth.tenant(&tenant)?;
    let t = target(q.target.as_deref())?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    s.engine.dismiss(&connection, &document, t).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Failed to export (L3): payments the ERP rejected, each with the
/// number to use next for a check.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/failed-exports", tag = "payments",
    params(("tenant" = String, Path), PageQuery),
    responses((status = 200, body = Page<Object>), (status = "4XX", body = Problem)))]
pub async fn failed_exports(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<Value>>, Problem> {
    auth.tenant(&tenant)?;
    s.engine.require_tenant(&tenant).await?;
    let items: Vec<FailedExport> = s
        .engine
        .failed_exports(None)
        .await?
        .into_iter()
        .filter(|f| f.tenant_id == tenant)
        .collect();
    let p = page(items, |f| key(&[&f.connection_id, &f.payment_id]), &q)?;
    Ok(Json(Page {
        items: p
            .items
            .into_iter()
            .map(|f| serde_json::to_value(f).unwrap_or_default())
            .collect(),
        next_cursor: p.next_cursor,
    }))
}

/// An operator's edit of a failed export (C3).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportEdit {
    /// Another check number.
    pub check_number: Option<u64>,
    /// The ERP's bank account to pay from instead.
    pub bank_id: Option<String>,
}

/// Edits a payment in Failed to export (another check number, another
/// bank account); then `POST …/export`.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/failed-exports/{payment}", tag = "payments",
    params(("tenant" = String, Path), ("payment" = String, Path)),
    request_body = ExportEdit,
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn edit_export(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, payment)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    let e: ExportEdit = input::json(&headers, &bytes)?;
    let p = s
        .engine
        .edit_export(&tenant, &payment, e.check_number, e.bank_id)
        .await?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}

/// Exports a payment of Failed to export again (L3), as a run to poll.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/connections/{connection}/failed-exports/{payment}/export", tag = "payments",
    params(("tenant" = String, Path), ("connection" = String, Path), ("payment" = String, Path)),
    responses((status = 202, body = RunStarted), (status = "4XX", body = Problem)))]
pub async fn export(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection, payment)): P<(String, String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunStarted>), Problem> {
    auth.tenant(&tenant)?;
    input::no_body(&headers, &input::body(raw)?)?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    let run = s.engine.request_export(&payment, &connection).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunStarted {
            run_id: run,
            total: 1,
        }),
    ))
}

/// A funding account's check numbering (C1).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/funding-accounts/{account}", tag = "payments",
    params(("tenant" = String, Path), ("account" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn funding_account(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, account)): P<(String, String)>,
) -> Result<Json<FundingAccount>, Problem> {
    auth.tenant(&tenant)?;
    Ok(Json(s.engine.funding_account(&tenant, &account).await?))
}

/// The next check number to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextCheckNumber {
    pub next_check_number: u64,
}

/// Sets the next check number (refused at or below one already issued).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/funding-accounts/{account}/next-check-number", tag = "payments",
    params(("tenant" = String, Path), ("account" = String, Path)),
    request_body = NextCheckNumber,
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn set_next_check_number(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, account)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<FundingAccount>, Problem> {
    auth.tenant(&tenant)?;
    let bytes = input::body(raw)?;
    let n: NextCheckNumber = input::json(&headers, &bytes)?;
    s.engine
        .set_next_check_number(&tenant, &account, n.next_check_number)
        .await?;
    Ok(Json(s.engine.funding_account(&tenant, &account).await?))
}

/// A booked lock (B2): an entry the ERP has booked, never changed again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lock {
    pub target: String,
    /// The document (bill entries) or payment (payment entries).
    pub subject_id: String,
    pub document_id: String,
    pub entry_id: Option<String>,
    pub reason: Option<String>,
}

/// The connection's booked locks.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/connections/{connection}/locks", tag = "locks",
    params(("tenant" = String, Path), ("connection" = String, Path), PageQuery),
    responses((status = 200, body = Page<Lock>), (status = "4XX", body = Problem)))]
pub async fn locks(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<Lock>>, Problem> {
    auth.tenant(&tenant)?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    let all: Vec<Lock> = s
        .engine
        .entries(&connection)
        .await?
        .into_iter()
        .filter(|e| e.booked)
        .map(|e| Lock {
            target: e.target,
            subject_id: e.subject_id,
            document_id: e.document_id,
            entry_id: e.entry_id,
            reason: e.booked_reason,
        })
        .collect();
    Ok(Json(page(all, |l| key(&[&l.target, &l.subject_id]), &q)?))
}

/// Clears a booked lock (B3), after the period was reopened in the ERP.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/connections/{connection}/locks/{target}/{subject}", tag = "locks",
    params(("tenant" = String, Path), ("connection" = String, Path),
        ("target" = String, Path, description = "`bill` or `payment`"),
        ("subject" = String, Path, description = "The document (bill) or payment id")),
    responses((status = 204), (status = "4XX", body = Problem)))]
pub async fn unlock(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection, t, subject)): P<(String, String, String, String)>,
) -> Result<StatusCode, Problem> {
    auth.tenant(&tenant)?;
    let t = target(Some(&t))?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    s.engine.unlock(&connection, &subject, t).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The connection's queue, budget and pause (R1, R2, R5).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/connections/{connection}/status", tag = "connections",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn status(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
) -> Result<Json<Value>, Problem> {
    auth.tenant(&tenant)?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    let st = s
        .engine
        .status(Some(&tenant))
        .await?
        .into_iter()
        .find(|c| c.id == connection)
        .ok_or_else(|| Problem::not_found(format!("no connection {connection}")))?;
    Ok(Json(serde_json::to_value(st).unwrap_or_default()))
}
