//! The REST API over a Unix socket (axum). Handlers parse bodies and query
//! strings themselves so that every refusal is a 4xx with a JSON
//! `{"error": ...}` that says what was wrong.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vessel_api::{
    CreateInstance, ErrorBody, ExecRequest, InstanceList, MAX_BODY_BYTES, OPENAPI_JSON,
};

use crate::admission::AdmissionError;
use crate::allowed::PathError;
use crate::exec::ExecError;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::supervisor::{Supervisor, SupervisorError};

type Sup = State<Arc<Supervisor>>;

/// An error answer: status + message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, error = %self.1, "request failed");
        } else {
            tracing::info!(status = %self.0, error = %self.1, "request refused");
        }
        (self.0, axum::Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<SupervisorError> for ApiError {
    fn from(err: SupervisorError) -> Self {
        let status = match &err {
            SupervisorError::Invalid(_) | SupervisorError::NoBundle(_) => StatusCode::BAD_REQUEST,
            SupervisorError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            SupervisorError::Store(StoreError::Exists(_)) | SupervisorError::Conflict { .. } => {
                StatusCode::CONFLICT
            }
            SupervisorError::StartFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SupervisorError::Control { .. } => StatusCode::CONFLICT,
            SupervisorError::Admission(AdmissionError::Path(PathError::Outside(_))) => {
                StatusCode::FORBIDDEN
            }
            SupervisorError::Admission(AdmissionError::NoRoom(_)) => StatusCode::CONFLICT,
            SupervisorError::Admission(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

impl From<ExecError> for ApiError {
    fn from(err: ExecError) -> Self {
        let status = match &err {
            ExecError::Supervisor(e) => return ApiError::from_ref(e, err.to_string()),
            ExecError::NoCommand
            | ExecError::BadArgs
            | ExecError::BadEnv(_)
            | ExecError::BadCwd(_) => StatusCode::BAD_REQUEST,
            ExecError::NotContainer(_) | ExecError::NotRunning { .. } => StatusCode::CONFLICT,
            ExecError::Runtime { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ExecError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ExecError::Spawn { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

impl ApiError {
    fn from_ref(err: &SupervisorError, message: String) -> ApiError {
        let status = match err {
            SupervisorError::Invalid(_) => StatusCode::BAD_REQUEST,
            SupervisorError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, message)
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(supervisor: Arc<Supervisor>) -> Router {
    // Registering two fixed metrics in a fresh registry cannot fail.
    let metrics = Arc::new(Metrics::new().expect("metrics registry"));
    let scrape = {
        let metrics = Arc::clone(&metrics);
        move |State(sup): Sup| async move { render_metrics(&sup, &metrics) }
    };
    Router::new()
        .route("/metrics", get(scrape))
        .route("/v1/instances/{name}/exec", post(exec))
        .route("/openapi.json", get(openapi))
        .route("/v1/instances", get(list).post(create))
        .route("/v1/instances/{name}", get(inspect).delete(delete))
        .route("/v1/instances/{name}/start", post(start))
        .route("/v1/instances/{name}/stop", post(stop))
        .route("/v1/instances/{name}/kill", post(kill))
        .merge(crate::console::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(supervisor)
}

fn render_metrics(sup: &Supervisor, metrics: &Metrics) -> ApiResult<Response> {
    let text = metrics.render(&sup.list()?, crate::admission::Host::probe());
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecQuery {
    timeout: Option<u64>,
}

/// The default and the longest time an exec may take.
const EXEC_TIMEOUT: u64 = 300;
const MAX_EXEC_TIMEOUT: u64 = 3600;

async fn exec(
    State(sup): Sup,
    Path(name): Path<String>,
    query: Result<Query<ExecQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e}; the only parameter is timeout=SECONDS"),
        )
    })?;
    let timeout = query.timeout.unwrap_or(EXEC_TIMEOUT);
    if timeout == 0 || timeout > MAX_EXEC_TIMEOUT {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("timeout is 1 to {MAX_EXEC_TIMEOUT} seconds"),
        ));
    }
    let body = read_body(body)?;
    let request: ExecRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not a valid exec request ({e}); expected \
                 {{\"args\": [\"CMD\", ...], \"env\": [\"K=V\"], \"cwd\": \"/dir\"}}"
            ),
        )
    })?;
    let result = crate::exec::exec(&sup, &name, &request, Duration::from_secs(timeout)).await?;
    Ok(axum::Json(result).into_response())
}

fn read_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                status,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError(status, format!("reading the request body: {rejection}"))
        }
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint: the API is described at GET /openapi.json".to_string(),
    )
}

async fn list(State(sup): Sup) -> ApiResult<axum::Json<InstanceList>> {
    Ok(axum::Json(InstanceList {
        instances: sup.list()?,
    }))
}

async fn inspect(State(sup): Sup, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(axum::Json(sup.get(&name)?).into_response())
}

async fn create(State(sup): Sup, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                status,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError(status, format!("reading the request body: {rejection}"))
        }
    })?;
    let request: CreateInstance = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not a valid create request ({e}); expected \
                 {{\"name\": NAME, \"spec\": {{\"kind\": \"vm\", \"args\": [...]}}}} or \
                 {{\"name\": NAME, \"spec\": {{\"kind\": \"container\", \"bundle\": DIR}}}}"
            ),
        )
    })?;
    let instance = sup.create(request).await?;
    Ok((StatusCode::CREATED, axum::Json(instance)).into_response())
}

async fn start(State(sup): Sup, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(axum::Json(sup.start(&name).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopQuery {
    timeout: Option<u64>,
}

const MAX_STOP_TIMEOUT: u64 = 3600;

async fn stop(
    State(sup): Sup,
    Path(name): Path<String>,
    query: Result<Query<StopQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e}; the only parameter is timeout=SECONDS"),
        )
    })?;
    if query.timeout.is_some_and(|t| t > MAX_STOP_TIMEOUT) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("timeout is at most {MAX_STOP_TIMEOUT} seconds"),
        ));
    }
    let timeout = query.timeout.map(Duration::from_secs);
    Ok(axum::Json(sup.stop(&name, timeout).await?).into_response())
}

async fn kill(State(sup): Sup, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(axum::Json(sup.kill(&name).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(sup): Sup,
    Path(name): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e}; the only parameter is force=true|false"),
        )
    })?;
    Ok(axum::Json(sup.delete(&name, query.force).await?).into_response())
}
