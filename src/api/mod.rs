//! The HTTP control API of `pedvision run --api`: JSON over HTTP (axum, on a
//! one-thread tokio runtime of its own), in front of a [`Control`] handle.
//!
//! ```text
//! client ─HTTP─▶ [api thread: axum] ─spawn_blocking─▶ Control ─Command─▶ pipeline controller
//!                        └──────────── reads ──────────▶ Board (streams, model)
//! ```
//!
//! The API never touches a stage: every change goes through the controller,
//! which validates it and answers, so nothing a client sends can stall or crash
//! the run (a slow answer times out with 504; the run goes on). Every error is a
//! 4xx/5xx with `{"error": "…"}`. A token, when configured, is required on every
//! route but the probes (`/healthz`, `/readyz`). The routes and their types are
//! described by `GET /openapi.json`, generated from the handlers ([`routes`]).

mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::control::{ApiSettings, Control};
use crate::telemetry::Metrics;

pub use routes::ApiDoc;

/// Why the API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot serve the control API on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error(
        "the control API's token variable {0} is not set or empty (--api-token-env names the environment variable that holds the bearer token)"
    )]
    NoToken(String),
    #[error("cannot start the control API: {0}")]
    Start(std::io::Error),
}

/// A running API server; dropping it stops it.
pub struct ApiServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Binds `settings.bind` (failing now, not later, if it cannot) and serves
    /// the API on a thread of its own. The token is read from the environment
    /// variable the settings name.
    pub fn start(
        settings: &ApiSettings,
        control: Control,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ApiError> {
        let token = match &settings.token_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| ApiError::NoToken(var.clone()))?,
            ),
            None => None,
        };
        let bind_error = |source| ApiError::Bind {
            bind: settings.bind.clone(),
            source,
        };
        let listener = std::net::TcpListener::bind(&settings.bind).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("api-blocking")
            .build()
            .map_err(ApiError::Start)?;
        let router = routes::router(routes::AppState {
            control,
            metrics,
            token: token.map(Arc::from),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "control API stopped");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "control API stopped");
                    }
                });
            })
            .map_err(ApiError::Start)?;
        tracing::info!(address = %address, "control API at http://{address}/ (openapi: /openapi.json)");
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port a `:0` bind was given).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
