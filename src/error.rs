//! The crate-level error: one enum that wraps each module's typed error, so the
//! binary can print a single readable line (`{:#}`) and choose an exit code.

use crate::{config, infer, pipeline, sinks, sources};

/// Everything that can stop a pedvision run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] config::ManifestError),
    #[error(transparent)]
    Runtime(#[from] infer::RuntimeError),
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::MetricsError),
    #[error(transparent)]
    Rule(#[from] crate::analytics::RuleError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

/// Result with the crate-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
