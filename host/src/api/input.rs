//! Reading requests: JSON bodies (refused past the size limit before they
//! are read whole, and naming the field that is wrong), paging, and
//! writes made safe to retry with an `Idempotency-Key`.

use super::problem::{FieldProblem, Problem};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The answer to a body over the size limit.
pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the body is over the size limit (--max-body-mib); send fewer items a request",
    )
}

/// The body, or why it cannot be read (413 past the limit).
pub fn body(raw: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    raw.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text())
        }
    })
}

/// `bytes` as JSON text: a JSON content type and UTF-8.
pub fn json_text<'b>(headers: &HeaderMap, bytes: &'b Bytes) -> Result<&'b str, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.split(';').next().unwrap_or_default().trim();
            v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
        });
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    std::str::from_utf8(bytes).map_err(|_| Problem::invalid("(body)", "not UTF-8"))
}

/// A JSON body as `T`, naming the field it fails at; unknown fields are
/// refused where `T` refuses them.
pub fn json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, Problem> {
    let text = json_text(headers, bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let f = crate::intake::serde_field_error(e, "(body)");
        Problem::invalid(&f.field, f.message)
    })?;
    de.end()
        .map_err(|e| Problem::invalid("(body)", format!("trailing text after the JSON: {e}")))?;
    Ok(value)
}

/// A JSON body that may be left out (an empty body is `T::default()`).
pub fn optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json(headers, bytes)
    }
}

/// What an endpoint that takes no body accepts: none, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoBody {}

/// Refuses a body sent to an endpoint that takes none (other than `{}`):
/// a client sending one means something the endpoint would ignore.
pub fn no_body(headers: &HeaderMap, bytes: &Bytes) -> Result<(), Problem> {
    optional_json::<NoBody>(headers, bytes).map(|_| ())
}

/// Paging of a list: `limit` items after `cursor` (the `next_cursor` of
/// the page before), in a stable order.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items a page (1–500, default 100).
    pub limit: Option<u32>,
    /// Where the page starts: the `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The page of `items` that `q` asks for; `key` orders them (stably and
/// uniquely) and is what a cursor holds.
pub fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    q: &PageQuery,
) -> Result<Page<T>, Problem> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::invalid("limit", "from 1 to 500"));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Problem::invalid("cursor", "not a cursor this API gave (use next_cursor)")
                })?,
        ),
    };
    items.sort_by_key(|a| key(a));
    let mut rest: Vec<T> = match &after {
        Some(a) => items.into_iter().filter(|i| key(i) > *a).collect(),
        None => items,
    };
    let next_cursor = if rest.len() > limit as usize {
        rest.truncate(limit as usize);
        rest.last()
            .map(|l| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(l).as_bytes()))
    } else {
        None
    };
    Ok(Page {
        items: rest,
        next_cursor,
    })
}

/// A key that sorts as its parts do (ids never hold the separator).
pub fn key(parts: &[&str]) -> String {
    parts.join("\u{1f}")
}

/// The answer of a write: its status and JSON, or its problem.
/// (`Idempotency-Key` is handled for every write in one layer:
/// [`super::idempotency`].)
pub async fn answer<Fut>(f: Fut) -> Response
where
    Fut: std::future::Future<Output = Result<(StatusCode, serde_json::Value), Problem>>,
{
    match f.await {
        Ok((status, v)) => (status, axum::Json(v)).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Problems of a validated input, as fields.
pub fn field_problems(errors: &[crate::intake::FieldError]) -> Vec<FieldProblem> {
    errors
        .iter()
        .map(|e| FieldProblem {
            field: e.field.clone(),
            message: e.message.clone(),
        })
        .collect()
}

/// `Query<T>` whose refusal is a problem naming the parameter.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Q).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde names an unknown parameter in its message.
            let field = if field == "." {
                message.split('`').nth(1).unwrap_or("(query)").to_string()
            } else {
                field
            };
            Problem::invalid(&field, message)
        })
    }
}

/// `Path<T>` whose refusal is a problem.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for P<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &S,
    ) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, s)
            .await
            .map(|p| P(p.0))
            .map_err(|e| Problem::invalid("(path)", e.body_text()))
    }
}
