//! The HTTP API (issue 13): the AP product sends documents, payments and
//! disbursement events; operators run the installation. Each endpoint is
//! a thin layer over one of the engine's methods (DESIGN: "the engine is
//! the one API"); the router and the OpenAPI description are built from
//! the same handlers (`utoipa-axum`), so neither can miss an endpoint.
//!
//! Conventions (Codat's and Merge's payables APIs): JSON in and out;
//! every path under `/v1/tenants/{tenant}` reaches that tenant's data
//! only; errors are RFC 9457 problem details with a stable `code`; writes
//! take an `Idempotency-Key`; long work is a run to poll; lists are pages
//! with a cursor, in a stable order.

// A `Problem` is the answer itself, made once per refused request and
// turned into a response at once: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod admin;
mod auth;
mod documents;
pub mod idempotency;
mod input;
pub mod problem;
mod work;

use crate::sync::Engine;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use problem::Problem;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler reaches.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

/// The API's description, beside what the handlers add.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledgerbridge",
        description = "Keeps an AP product's bills and payments in step with ERPs. Authenticate with `Authorization: Bearer lbt_…`: a tenant's token reaches that tenant only; an admin token manages tenants, tokens and connections. Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(problem::Problem, problem::FieldProblem)),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("lbt_<id>_<secret>")
                    .build(),
            ),
        );
        api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

/// The default limit on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;

/// The router of every endpoint, and the OpenAPI description of them.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(admin::add_tenant, admin::tenants))
        .routes(routes!(admin::create_token, admin::tenant_tokens))
        .routes(routes!(admin::rotate_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::put_connection, admin::connection))
        .routes(routes!(admin::connections))
        .routes(routes!(admin::plugins))
        .routes(routes!(admin::enable))
        .routes(routes!(admin::disable))
        .routes(routes!(documents::post_documents))
        .routes(routes!(documents::post_payments))
        .routes(routes!(documents::post_disbursement_event))
        .routes(routes!(documents::document))
        .routes(routes!(documents::log))
        .routes(routes!(work::sync_document))
        .routes(routes!(work::start_run))
        .routes(routes!(work::run))
        .routes(routes!(work::run_results))
        .routes(routes!(work::cancel_run))
        .routes(routes!(work::attention))
        .routes(routes!(work::dismiss))
        .routes(routes!(work::failed_exports))
        .routes(routes!(work::edit_export))
        .routes(routes!(work::export))
        .routes(routes!(work::funding_account))
        .routes(routes!(work::set_next_check_number))
        .routes(routes!(work::locks))
        .routes(routes!(work::unlock))
        .routes(routes!(work::status))
        .split_for_parts()
}

/// The OpenAPI 3.1 description of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The API over `engine`, bodies limited to `body_limit` bytes and read
/// within `read_timeout`.
pub fn router(engine: Arc<Engine>, body_limit: usize, read_timeout: std::time::Duration) -> Router {
    let (api, doc) = routes();
    let doc = Arc::new(doc);
    let state = AppState { engine };
    api.route("/health", axum::routing::get(health))
        .route("/ready", axum::routing::get(ready))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), body_limit),
            idempotency::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (body_limit, read_timeout),
            read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Liveness: the process answers.
async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store answers.
async fn ready(State(s): State<AppState>) -> Response {
    match s.engine.tenants().await {
        Ok(_) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!("not ready: {e:#}");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint (see /openapi.json)")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see /openapi.json)",
    )
}

/// Reads the body before any handler runs: one declared longer than the
/// limit is refused before any of it is read (a client announcing 100 MiB
/// and sending nothing must not hold a handler waiting for it), one that
/// grows past the limit when it is read too, and one not sent whole within
/// `read_timeout` gets `408`.
async fn read_body(
    State((limit, read_timeout)): State<(usize, std::time::Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return input::too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return input::too_large().into_response(),
        Err(_) => {
            return Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {read_timeout:?}"),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// One structured log line a request: method, path, status, time, and the
/// caller's token id (never the token).
async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    // The token's id (its public part), as presented: never the secret.
    let token: String = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("lbt_"))
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .take(16)
                .collect()
        })
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        target: "ledgerbridge::api",
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        token,
        "request"
    );
    response
}

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Run a worker in the same process (`--no-worker` runs them apart).
    pub worker: bool,
    /// The largest request body taken, in bytes.
    pub body_limit: usize,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted (a client holding many cannot starve the rest, nor the
    /// store and plugins of file descriptors).
    pub max_connections: usize,
    /// How long a client has to send a request's headers (and, on a
    /// keep-alive connection, the next request's), then its body, and to
    /// take each part of an answer: a slow, silent or non-reading client is
    /// cut off rather than held for ever.
    pub read_timeout: std::time::Duration,
    /// How long a stop waits for the answers under way.
    pub drain_timeout: std::time::Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            worker: true,
            body_limit: DEFAULT_BODY_LIMIT,
            max_connections: 1024,
            read_timeout: std::time::Duration::from_secs(30),
            drain_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Serves the API on `listener` until `stop` resolves; then stops taking
/// connections, answers the requests under way (for up to
/// `drain_timeout`), and stops the worker once its running syncs finish
/// (no job is left to lease recovery).
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop_worker, worker_stop) = tokio::sync::watch::channel(false);
    let worker = options.worker.then(|| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_worker(false, worker_stop).await })
    });
    let app = router(engine, options.body_limit, options.read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut full_warned = false;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset while
                    // queued: wait a moment rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if !full_warned {
                tracing::warn!(%peer, max = options.max_connections,
                    "connections refused: as many are open as --max-connections allows");
                full_warned = true;
            }
            drop(stream);
            continue;
        };
        full_warned = false;
        let _ = stream.set_nodelay(true);
        // A client that stops reading its answers cannot hold a connection
        // (and a slot of --max-connections) for ever.
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(options.read_timeout));
        let stream = Box::pin(stream);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still under way after {:?}: closing their connections",
            options.drain_timeout
        );
    }
    let _ = stop_worker.send(true);
    if let Some(w) = worker {
        match w.await {
            Ok(Ok(report)) => tracing::info!(?report.outcomes, "worker stopped"),
            Ok(Err(e)) => tracing::error!("worker failed: {e:#}"),
            Err(e) => tracing::error!("worker task failed: {e}"),
        }
    }
    Ok(())
}
