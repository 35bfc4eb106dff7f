//! The API routes of the console and lifecycle half: pause, resume,
//! restart, the console log (`logs`, optionally followed) and the
//! interactive console (an HTTP upgrade to a raw byte stream, proxied to
//! the VM's control socket).

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use vessel_api::{CONSOLE_PROTOCOL, ErrorBody};

use crate::server::ApiError;
use crate::supervisor::{Supervisor, control};

type Sup = State<Arc<Supervisor>>;

/// The most a `logs` answer without `follow` carries (its tail).
const MAX_LOG_ANSWER: u64 = 4 << 20;
const MAX_STOP_TIMEOUT: u64 = 3600;

pub fn routes() -> Router<Arc<Supervisor>> {
    Router::new()
        .route("/v1/instances/{name}/pause", post(pause))
        .route("/v1/instances/{name}/resume", post(resume))
        .route("/v1/instances/{name}/restart", post(restart))
        .route("/v1/instances/{name}/logs", get(logs))
        .route("/v1/instances/{name}/console", get(console))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::info!(%status, error = %message, "request refused");
    (status, axum::Json(ErrorBody { error: message })).into_response()
}

/// The query, or why it is refused (a 400).
fn query<T>(q: Result<Query<T>, QueryRejection>, expected: &str) -> Result<T, String> {
    q.map(|Query(q)| q).map_err(|e| format!("{e}; {expected}"))
}

async fn pause(State(sup): Sup, Path(name): Path<String>) -> Response {
    match sup.pause(&name).await {
        Ok(i) => axum::Json(i).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn resume(State(sup): Sup, Path(name): Path<String>) -> Response {
    match sup.resume(&name).await {
        Ok(i) => axum::Json(i).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartQuery {
    timeout: Option<u64>,
}

async fn restart(
    State(sup): Sup,
    Path(name): Path<String>,
    q: Result<Query<RestartQuery>, QueryRejection>,
) -> Response {
    let q = match query(q, "the only parameter is timeout=SECONDS") {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    if q.timeout.is_some_and(|t| t > MAX_STOP_TIMEOUT) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("timeout is at most {MAX_STOP_TIMEOUT} seconds"),
        );
    }
    match sup.restart(&name, q.timeout.map(Duration::from_secs)).await {
        Ok(i) => axum::Json(i).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// Only the last BYTES of the log.
    tail: Option<u64>,
}

/// Read `path` from `offset` (at most `max` bytes); a log that shrank was
/// rotated, so reading starts again at 0.
fn read_from(path: &std::path::Path, offset: &mut u64, max: u64) -> Vec<u8> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    let mut out = Vec::new();
    if file.seek(SeekFrom::Start(*offset)).is_ok() {
        let _ = file.take(max).read_to_end(&mut out);
    }
    *offset += out.len() as u64;
    out
}

async fn logs(
    State(sup): Sup,
    Path(name): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let q = match query(q, "the parameters are follow=true|false and tail=BYTES") {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let instance = match sup.get(&name) {
        Ok(i) => i,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let path = std::path::PathBuf::from(&instance.log_path);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let want = q.tail.unwrap_or(MAX_LOG_ANSWER).min(MAX_LOG_ANSWER);
    let mut offset = len.saturating_sub(want);
    let text = if q.follow {
        Vec::new()
    } else {
        read_from(&path, &mut offset, want)
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return (headers, text).into_response();
    }
    // Follow: what is there, then what comes, until the instance has
    // ended and everything is sent (or the client goes away).
    let stream = futures_util::stream::unfold(
        (sup, name, path, offset, false),
        |(sup, name, path, mut offset, ended)| async move {
            loop {
                let chunk = read_from(&path, &mut offset, 64 * 1024);
                if !chunk.is_empty() {
                    return Some((
                        Ok::<_, std::io::Error>(chunk),
                        (sup, name, path, offset, ended),
                    ));
                }
                if ended {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let active = sup.get(&name).map(|i| i.state.is_active()).unwrap_or(false);
                if !active {
                    // One more read for the last words, then the end.
                    let chunk = read_from(&path, &mut offset, 64 * 1024);
                    if chunk.is_empty() {
                        return None;
                    }
                    return Some((Ok(chunk), (sup, name, path, offset, true)));
                }
            }
        },
    );
    (headers, Body::from_stream(stream)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleQuery {
    #[serde(default)]
    write: bool,
    #[serde(default)]
    history: u64,
}

async fn console(
    State(sup): Sup,
    Path(name): Path<String>,
    q: Result<Query<ConsoleQuery>, QueryRejection>,
    mut request: Request,
) -> Response {
    let q = match query(q, "the parameters are write=true|false and history=BYTES") {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade != Some(CONSOLE_PROTOCOL) {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "the console is a byte stream: send `Connection: Upgrade` and \
                 `Upgrade: {CONSOLE_PROTOCOL}` (as `vessel console` does)"
            ),
        );
    }
    let path = match sup.console_socket(&name) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut guest = match control::attach(path, q.write, q.history).await {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::CONFLICT, format!("instance {name:?}: {e}")),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
            }
            Err(e) => tracing::info!(error = %e, "console upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, CONSOLE_PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
