//! Tenants, their tokens, and their connections (P4): what an admin token
//! manages. A tenant's token may read its own connections.

use super::AppState;
use super::auth::Auth;
use super::input::{self, P, Page, PageQuery, Q, page};
use super::problem::Problem;
use crate::store::ApiToken;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// A new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Letters, digits, `.`, `_`, `:` and `-`, 1 to 128.
    pub id: String,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
}

/// Adds a tenant (admin). Adding one that exists answers as the first time.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = "4XX", body = Problem)))]
pub async fn add_tenant(
    State(s): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    auth.admin()?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        let t: NewTenant = input::json(&headers, &bytes)?;
        s.engine.add_tenant(&t.id).await?;
        Ok((StatusCode::CREATED, json!({"id": t.id})))
    })
    .await)
}

/// Lists tenants (admin).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>), (status = "4XX", body = Problem)))]
pub async fn tenants(
    State(s): State<AppState>,
    auth: Auth,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<Tenant>>, Problem> {
    auth.admin()?;
    let all = s.engine.tenants().await?;
    let p = page(all, |t| t.clone(), &q)?;
    Ok(Json(Page {
        items: p.items.into_iter().map(|id| Tenant { id }).collect(),
        next_cursor: p.next_cursor,
    }))
}

/// A new token's label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (shown in lists), at most 200 characters.
    #[serde(default)]
    pub label: String,
}

/// A token as made or rotated: `token` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// `lbt_<id>_<secret>`, for `Authorization: Bearer`. Not shown again.
    pub token: String,
    #[serde(flatten)]
    pub about: TokenView,
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    /// Absent for an admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub label: String,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            tenant_id: t.tenant_id,
            label: t.label,
            created_at: t.created_at,
            rotated_at: t.rotated_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Makes a token for the tenant (admin); the token is in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tokens",
    params(("tenant" = String, Path)), request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = "4XX", body = Problem)))]
pub async fn create_token(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    auth.admin()?;
    let bytes = input::body(raw)?;
    let t: NewToken = if bytes.is_empty() {
        NewToken {
            label: String::new(),
        }
    } else {
        input::json(&headers, &bytes)?
    };
    let (about, token) = s.engine.create_token(Some(&tenant), &t.label).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token,
            about: about.into(),
        }),
    ))
}

/// Lists the tenant's tokens (admin).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tokens",
    params(("tenant" = String, Path), PageQuery),
    responses((status = 200, body = Page<TokenView>), (status = "4XX", body = Problem)))]
pub async fn tenant_tokens(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<TokenView>>, Problem> {
    auth.admin()?;
    let all = s.engine.tokens(Some(&tenant)).await?;
    let p = page(all, |t| input::key(&[&t.created_at.to_string(), &t.id]), &q)?;
    Ok(Json(Page {
        items: p.items.into_iter().map(TokenView::from).collect(),
        next_cursor: p.next_cursor,
    }))
}

/// Gives a token a new secret (admin): the old one stops working now.
#[utoipa::path(post, path = "/v1/tokens/{token}/rotate", tag = "tokens",
    params(("token" = String, Path, description = "The token's id (16 hex digits)")),
    responses((status = 200, body = IssuedToken), (status = "4XX", body = Problem)))]
pub async fn rotate_token(
    State(s): State<AppState>,
    auth: Auth,
    P(id): P<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<IssuedToken>, Problem> {
    auth.admin()?;
    input::no_body(&headers, &input::body(raw)?)?;
    let token = s.engine.rotate_token(&id).await?;
    let about = s.engine.token(&id).await?;
    Ok(Json(IssuedToken {
        token,
        about: about.into(),
    }))
}

/// Revokes a token (admin): it stops working now.
#[utoipa::path(delete, path = "/v1/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "The token's id (16 hex digits)")),
    responses((status = 204), (status = "4XX", body = Problem)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    auth: Auth,
    P(id): P<String>,
) -> Result<StatusCode, Problem> {
    auth.admin()?;
    s.engine.revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A connection as the API shows it: its credentials and OAuth2 secrets
/// never (they are write-only).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    /// The connection's settings (README, Running it for tenants), without
    /// `credentials`, `oauth2.client_secret` or `oauth2.refresh_token`.
    #[schema(value_type = Object)]
    pub connection: serde_json::Value,
    pub bill_entries: usize,
    pub payment_entries: usize,
}

/// Adds or replaces the tenant's connection (admin). The body is the
/// connection (README, Running it for tenants); its settings are checked
/// against what the connector declares. Secrets are write-only: left out
/// on a change, the ones held are kept.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/connections/{connection}", tag = "connections",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    request_body(content = Object, description = "The connection, as `connection add` takes it; `id` and `tenant_id` may be left out (they are the path's)"),
    responses((status = 200, body = ConnectionView), (status = "4XX", body = Problem)))]
pub async fn put_connection(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    auth.admin()?;
    let bytes = input::body(raw)?;
    Ok(input::answer(async {
        let mut v: serde_json::Value = input::json(&headers, &bytes)?;
        let Some(obj) = v.as_object_mut() else {
            return Err(Problem::invalid("(body)", "a connection is a JSON object"));
        };
        for (field, want) in [("id", &connection), ("tenant_id", &tenant)] {
            match obj.get(field) {
                None => {
                    obj.insert(field.into(), want.clone().into());
                }
                Some(serde_json::Value::String(x)) if x == want => {}
                Some(_) => {
                    return Err(Problem::invalid(
                        field,
                        format!("must be `{want}`, as in the path"),
                    ));
                }
            }
        }
        s.engine.require_tenant(&tenant).await?;
        let c = crate::intake::parse_connection(&v.to_string())
            .map_err(|e| Problem::fields(input::field_problems(&e.0)))?;
        s.engine.put_connection(c).await?;
        let view = connection_view(&s, &tenant, &connection).await?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(view).unwrap_or_default(),
        ))
    })
    .await)
}

async fn connection_view(
    s: &AppState,
    tenant: &str,
    connection: &str,
) -> Result<ConnectionView, Problem> {
    s.engine.tenant_connection(tenant, connection).await?;
    let summary = s
        .engine
        .connections(Some(tenant))
        .await?
        .into_iter()
        .find(|c| c.connection.id == connection)
        .ok_or_else(|| Problem::not_found(format!("no connection {connection}")))?;
    Ok(ConnectionView {
        connection: serde_json::to_value(&summary.connection).unwrap_or_default(),
        bill_entries: summary.bill_entries,
        payment_entries: summary.payment_entries,
    })
}

/// Lists the tenant's connections.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/connections", tag = "connections",
    params(("tenant" = String, Path), PageQuery),
    responses((status = 200, body = Page<ConnectionView>), (status = "4XX", body = Problem)))]
pub async fn connections(
    State(s): State<AppState>,
    auth: Auth,
    P(tenant): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Page<ConnectionView>>, Problem> {
    auth.tenant(&tenant)?;
    let all = s.engine.connections(Some(&tenant)).await?;
    let p = page(all, |c| c.connection.id.clone(), &q)?;
    Ok(Json(Page {
        items: p
            .items
            .into_iter()
            .map(|c| ConnectionView {
                connection: serde_json::to_value(&c.connection).unwrap_or_default(),
                bill_entries: c.bill_entries,
                payment_entries: c.payment_entries,
            })
            .collect(),
        next_cursor: p.next_cursor,
    }))
}

/// One of the tenant's connections.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/connections/{connection}", tag = "connections",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = "4XX", body = Problem)))]
pub async fn connection(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
) -> Result<Json<ConnectionView>, Problem> {
    auth.tenant(&tenant)?;
    Ok(Json(connection_view(&s, &tenant, &connection).await?))
}

/// What enabling a connection found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enabled {
    pub enabled: bool,
    /// Documents of the tenant that changed while the connection was
    /// disabled: not synced; a bulk re-sync catches up.
    pub changed_while_disabled: usize,
}

/// Enables the connection (admin).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/connections/{connection}/enable", tag = "connections",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    responses((status = 200, body = Enabled), (status = "4XX", body = Problem)))]
pub async fn enable(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Enabled>, Problem> {
    auth.admin()?;
    input::no_body(&headers, &input::body(raw)?)?;
    set_enabled(s, auth, tenant, connection, true).await
}

/// Disables the connection (admin): no new syncs; its history stays.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/connections/{connection}/disable", tag = "connections",
    params(("tenant" = String, Path), ("connection" = String, Path)),
    responses((status = 200, body = Enabled), (status = "4XX", body = Problem)))]
pub async fn disable(
    State(s): State<AppState>,
    auth: Auth,
    P((tenant, connection)): P<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Enabled>, Problem> {
    auth.admin()?;
    input::no_body(&headers, &input::body(raw)?)?;
    set_enabled(s, auth, tenant, connection, false).await
}

async fn set_enabled(
    s: AppState,
    auth: Auth,
    tenant: String,
    connection: String,
    enabled: bool,
) -> Result<Json<Enabled>, Problem> {
    auth.admin()?;
    s.engine.tenant_connection(&tenant, &connection).await?;
    let changed = s.engine.set_enabled(&connection, enabled).await?;
    Ok(Json(Enabled {
        enabled,
        changed_while_disabled: changed,
    }))
}

/// Every plugin version the host can run (P3): built in, installed in the
/// plugins directory, or a file a connection names; its contract version,
/// digest, where it came from, why its newest build was refused (if it
/// was), and the connections running it (admin).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<Object>), (status = "4XX", body = Problem)))]
pub async fn plugins(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, Problem> {
    auth.admin()?;
    let all = s.engine.plugins().await?;
    Ok(Json(serde_json::to_value(all).unwrap_or_default()))
}
