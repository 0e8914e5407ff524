//! `GET user/{user_id}/export?format=ndjson|csv`: every row of a user, all
//! time, oldest first, streamed page by page (the store's keyset cursor)
//! through a small channel, so memory stays a few pages whatever the
//! user's size and a slow client slows the reading, not the heap.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Map;
use tokio::sync::mpsc;

use super::auth::Caller;
use super::handlers::{Params, params};
use super::privacy::refuse_erased;
use super::{AdminState, ApiError, ErrorBody};
use activity_store::privacy::{ExportCursor, ExportRow};

/// Encoded pages waiting for the client: bounds the memory of an export.
const PAGES_AHEAD: usize = 2;

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

impl Format {
    fn parse(value: Option<&String>) -> Result<Self, ApiError> {
        match value.map(String::as_str) {
            None | Some("ndjson") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::bad_parameter(
                "format",
                format!("format must be ndjson or csv (got {other:?})"),
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// A page as text: one JSON object a line, or CSV records.
    fn encode(self, rows: &[ExportRow]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows.len() * 256);
        for row in rows {
            match self {
                Format::Ndjson => {
                    serde_json::to_writer(&mut out, row).expect("rows serialize");
                    out.push(b'\n');
                }
                Format::Csv => csv_record(&mut out, row.fields().iter().map(Option::as_deref)),
            }
        }
        out
    }
}

/// One CSV record (RFC 4180): fields holding a comma, quote or line break
/// quoted, quotes doubled; a null is an empty field. Ends with CRLF.
fn csv_record<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = Option<&'a str>>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let field = field.unwrap_or("");
        if field.contains([',', '"', '\r', '\n']) {
            out.push(b'"');
            out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(field.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Every row of one user, all time, oldest first, as a download. Privacy role.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/user/{user_id}/export",
    tag = "privacy",
    params(
        ("user_id" = String, Path, description = "The app's user id"),
        ("format" = Option<String>, Query, description = "`ndjson` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The rows, one per line (CSV with a header line)", content_type = "application/x-ndjson"),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not of the privacy role", body = ErrorBody),
        (status = 404, description = "The user was erased (and is held on the erasure list, `ERASURE_HOLD_DAYS`; needs `PSEUDONYM_KEY`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn export_user(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let p = params(p)?;
    let format = Format::parse(p.get("format"))?;
    refuse_erased(&state, &user_id)?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(PAGES_AHEAD);
    let pool = state.pool.clone();
    let user = user_id.clone();
    tokio::spawn(async move {
        let mut cursor = ExportCursor::new(pool.clone(), &user);
        let mut rows = 0u64;
        let mut complete = true;
        if format == Format::Csv {
            let mut header = Vec::new();
            csv_record(&mut header, ExportRow::COLUMNS.iter().map(|c| Some(*c)));
            complete = tx.send(Ok(header.into())).await.is_ok();
        }
        while complete {
            match cursor.next_page().await {
                Ok(Some(page)) => {
                    rows += page.len() as u64;
                    complete = tx.send(Ok(format.encode(&page).into())).await.is_ok();
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "export failed part-way");
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    complete = false;
                }
            }
        }
        let mut details = Map::new();
        details.insert("who".into(), caller.name.into());
        details.insert("user".into(), user.into());
        details.insert("rows".into(), rows.into());
        details.insert("format".into(), format.extension().into());
        details.insert("complete".into(), complete.into());
        crate::privacy::record(&pool, "user_exported", details).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let filename: String = user_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let disposition = format!(
        "attachment; filename=\"user-activities-{filename}.{}\"",
        format.extension()
    );
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("the file name is ASCII"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        csv_record(
            &mut out,
            [
                Some("plain"),
                None,
                Some("a,b"),
                Some("say \"hi\""),
                Some("two\nlines"),
            ]
            .into_iter(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }
}
