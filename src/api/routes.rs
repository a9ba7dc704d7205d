//! The API's routes, each a handler with its OpenAPI description beside it:
//! probes, streams, the model, lines and zones, metrics and the description
//! itself. Handlers parse and answer; the pipeline's controller decides.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::config::rules::{LineConfig, ZoneConfig};
use crate::control::{
    Control, ControlError, ModelStatus, RuleEdit, RuleSet, StreamRequest, StreamState, StreamStatus,
};
use crate::telemetry::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub metrics: Arc<Metrics>,
    /// The bearer token every request but the probes must carry, if any.
    pub token: Option<Arc<str>>,
}

/// The body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A new stream's id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub id: u32,
}

/// The model to switch in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRequest {
    /// A model manifest (.toml), relative to the run's working directory.
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// Readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// An error answer.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::NoStream(_) | ControlError::NoRule { .. } => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Model(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

impl From<JsonRejection> for Failure {
    fn from(e: JsonRejection) -> Self {
        Failure(StatusCode::BAD_REQUEST, e.body_text())
    }
}

type Answer<T> = Result<T, Failure>;

/// Runs a control call off the async runtime (it blocks until the pipeline
/// answers).
async fn ask<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(Control) -> Result<T, ControlError> + Send + 'static,
) -> Answer<T> {
    let control = state.control.clone();
    tokio::task::spawn_blocking(move || call(control))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(Failure::from)
}

/// A stream id from the path; anything else is a 404 like an unknown id.
fn stream_id(raw: &str) -> Answer<u32> {
    raw.parse()
        .map_err(|_| Failure(StatusCode::NOT_FOUND, format!("no stream {raw:?}")))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process runs")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, body = Ready, description = "The model is loaded and every source that should be up is up"),
    (status = 503, body = ErrorBody, description = "What is not ready yet"),
))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.control.board().ready() {
        Ok(()) => Json(Ready { ready: true }).into_response(),
        Err(why) => Failure(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

#[utoipa::path(get, path = "/streams", responses((status = 200, body = [StreamStatus])))]
async fn list_streams(State(state): State<AppState>) -> Json<Vec<StreamStatus>> {
    Json(state.control.board().streams())
}

#[utoipa::path(get, path = "/streams/{id}", params(("id" = u32, Path)), responses(
    (status = 200, body = StreamStatus), (status = 404, body = ErrorBody)))]
async fn get_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<Json<StreamStatus>> {
    let id = stream_id(&id)?;
    state
        .control
        .board()
        .stream(id)
        .map(Json)
        .ok_or_else(|| ControlError::NoStream(id).into())
}

#[utoipa::path(post, path = "/streams", request_body = StreamRequest, responses(
    (status = 201, body = Created, description = "The stream joined the running pipeline"),
    (status = 400, body = ErrorBody, description = "Bad JSON, an input that cannot be parsed, a bad rule or output"),
    (status = 409, body = ErrorBody, description = "The stream limit is reached, or the output is in use"),
))]
async fn add_stream(
    State(state): State<AppState>,
    body: Result<Json<StreamRequest>, JsonRejection>,
) -> Answer<(StatusCode, Json<Created>)> {
    let Json(request) = body?;
    let id = ask(&state, move |c| c.add_stream(request)).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

#[utoipa::path(delete, path = "/streams/{id}", params(("id" = u32, Path)), responses(
    (status = 204, description = "Stopped; its MP4 and metadata lines are final"),
    (status = 404, body = ErrorBody),
))]
async fn remove_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<StatusCode> {
    let id = stream_id(&id)?;
    ask(&state, move |c| c.remove_stream(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/model", responses((status = 200, body = ModelStatus)))]
async fn get_model(State(state): State<AppState>) -> Answer<Json<ModelStatus>> {
    state.control.board().model().map(Json).ok_or_else(|| {
        Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is loading".into(),
        )
    })
}

#[utoipa::path(post, path = "/model", request_body = ModelRequest, responses(
    (status = 200, body = ModelStatus, description = "Loaded beside the live model and switched in between two batches"),
    (status = 400, body = ErrorBody, description = "Bad JSON"),
    (status = 422, body = ErrorBody, description = "The model cannot load or differs in input; the live one goes on"),
))]
async fn swap_model(
    State(state): State<AppState>,
    body: Result<Json<ModelRequest>, JsonRejection>,
) -> Answer<Json<ModelStatus>> {
    let Json(request) = body?;
    ask(&state, move |c| c.swap_model(request.path))
        .await
        .map(Json)
}

#[utoipa::path(get, path = "/lines", responses((status = 200, body = [Object])))]
async fn list_lines(State(state): State<AppState>) -> Answer<Json<Vec<LineConfig>>> {
    ask(&state, |c| c.rules()).await.map(|r| Json(r.lines))
}

#[utoipa::path(post, path = "/lines", request_body = Object, responses(
    (status = 201, description = "Counting from the next frame"),
    (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "The name is in use")))]
async fn add_line(
    State(state): State<AppState>,
    body: Result<Json<LineConfig>, JsonRejection>,
) -> Answer<StatusCode> {
    let Json(line) = body?;
    ask(&state, move |c| c.edit_rules(RuleEdit::AddLine(line))).await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(delete, path = "/lines/{name}", params(("name" = String, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
async fn remove_line(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Answer<StatusCode> {
    ask(&state, move |c| c.edit_rules(RuleEdit::RemoveLine(name))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/zones", responses((status = 200, body = [Object])))]
async fn list_zones(State(state): State<AppState>) -> Answer<Json<Vec<ZoneConfig>>> {
    ask(&state, |c| c.rules()).await.map(|r| Json(r.zones))
}

#[utoipa::path(post, path = "/zones", request_body = Object, responses(
    (status = 201, description = "Watched from the next frame"),
    (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "The name is in use")))]
async fn add_zone(
    State(state): State<AppState>,
    body: Result<Json<ZoneConfig>, JsonRejection>,
) -> Answer<StatusCode> {
    let Json(zone) = body?;
    ask(&state, move |c| c.edit_rules(RuleEdit::AddZone(zone))).await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(delete, path = "/zones/{name}", params(("name" = String, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
async fn remove_zone(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Answer<StatusCode> {
    ask(&state, move |c| c.edit_rules(RuleEdit::RemoveZone(name))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// The OpenAPI description of the control API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pedvision control API",
        description = "Streams, the model, lines and zones of a running `pedvision run --api`"
    ),
    paths(
        healthz,
        readyz,
        list_streams,
        add_stream,
        get_stream,
        remove_stream,
        get_model,
        swap_model,
        list_lines,
        add_line,
        remove_line,
        list_zones,
        add_zone,
        remove_zone,
        metrics
    ),
    components(schemas(
        StreamRequest,
        StreamStatus,
        StreamState,
        ModelStatus,
        ModelRequest,
        Created,
        ErrorBody,
        Ready,
        RuleSet
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Whether `given` is the token, in time that does not depend on where they
/// first differ.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// Lets a request through when it carries the token (or none is required, or
/// it is a probe).
async fn authorise(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        // Without a token the API listens on loopback only; a request that names
        // another host got here through DNS rebinding (a web page resolving its
        // own name to 127.0.0.1), not from a local client.
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if host.is_some_and(|h| !crate::control::is_loopback(h)) {
            return Failure(
                StatusCode::FORBIDDEN,
                "a request to the API without a token must name a loopback host (127.0.0.1, localhost, [::1]); serve others with --api-token-env".into(),
            )
            .into_response();
        }
        return next.run(request).await;
    };
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same_token(g.trim().as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = Failure(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required (Authorization: Bearer TOKEN)".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("a valid header"),
    );
    response
}

/// Every route, behind the token check.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/streams", get(list_streams).post(add_stream))
        .route("/streams/{id}", get(get_stream).delete(remove_stream))
        .route("/model", get(get_model).post(swap_model))
        .route("/lines", get(list_lines).post(add_line))
        .route("/lines/{name}", delete(remove_line))
        .route("/zones", get(list_zones).post(add_zone))
        .route("/zones/{name}", delete(remove_zone))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { Failure(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            Failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".into(),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorise))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
        assert!(!same_token(b"s3creT", b"s3cret"));
        assert!(!same_token(b"", b"s3cret"));
    }

    #[test]
    fn the_description_names_every_route() {
        let doc = ApiDoc::openapi().to_json().unwrap();
        for path in [
            "/healthz",
            "/readyz",
            "/streams",
            "/streams/{id}",
            "/model",
            "/lines",
            "/lines/{name}",
            "/zones",
            "/zones/{name}",
            "/metrics",
        ] {
            assert!(doc.contains(&format!("\"{path}\"")), "{path} missing");
        }
        assert!(doc.contains("StreamRequest") && doc.contains("ModelStatus"));
    }
}
