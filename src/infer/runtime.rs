//! The ONNX Runtime shared library and execution providers.
//!
//! `ort` is built with `load-dynamic`: the library is found at run time, in this
//! order: `--ort-lib`, `ORT_DYLIB_PATH`, the project's `.ort/lib` (where
//! `scripts/setup.sh` puts the library from the `onnxruntime` PyPI wheel), then next
//! to the executable. A missing library is an error that says what to run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Library file names tried in each folder, most specific first.
const LIBRARY_NAMES: [&str; 2] = ["libonnxruntime.so.1.31.1", "libonnxruntime.so"];

/// The folder `scripts/setup.sh` fills, known at build time.
const PROJECT_LIB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ort/lib");

/// Errors from the ONNX Runtime library, its providers and the model session.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in: {searched}); run `make setup` (scripts/setup.sh), or pass --ort-lib or set ORT_DYLIB_PATH"
    )]
    LibraryNotFound { searched: String },
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    LibraryLoad { path: PathBuf, message: String },
    #[error("execution provider {device} is not available: {message}")]
    Provider { device: Device, message: String },
    #[error("model file not found: {path}")]
    ModelMissing { path: PathBuf },
    #[error("cannot load model {path}: {message}")]
    ModelLoad { path: PathBuf, message: String },
    #[error("model {path} does not match its manifest: {reason}")]
    ManifestMismatch { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA GPU through the CUDA provider.
    Cuda,
    /// NVIDIA GPU through TensorRT, with CUDA for what TensorRT does not take.
    Tensorrt,
}

impl crate::choice::Choice for Device {
    const ALL: &'static [Self] = &[Self::Cpu, Self::Cuda, Self::Tensorrt];
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Cpu => "ONNX Runtime's CPU provider",
            Self::Cuda => "NVIDIA GPU through the CUDA provider",
            Self::Tensorrt => "NVIDIA GPU through TensorRT, with CUDA for the rest",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::choice::Choice::name(*self))
    }
}

/// How to set up the runtime and the session.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Execution provider.
    pub device: Device,
    /// Intra-op threads; 0 means one per core.
    pub threads: usize,
}

/// Finds the ONNX Runtime library (see the module docs for the order).
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(RuntimeError::LibraryNotFound {
                searched: format!("--ort-lib {}", path.display()),
            })
        };
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(RuntimeError::LibraryNotFound {
                searched: format!("ORT_DYLIB_PATH={}", path.display()),
            })
        };
    }
    let mut dirs = vec![PathBuf::from(PROJECT_LIB_DIR)];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("lib"));
        dirs.push(exe_dir);
    }
    for dir in &dirs {
        for name in LIBRARY_NAMES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(RuntimeError::LibraryNotFound { searched })
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads the library and creates the process-wide ONNX Runtime environment, once.
/// Later calls return the first call's outcome.
pub fn init(explicit: Option<&Path>) -> Result<(), RuntimeError> {
    let path = find_library(explicit)?;
    let outcome = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        builder
            .with_name("pedvision")
            .build()
            .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(_) => {
            tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
            Ok(())
        }
        Err(message) => Err(RuntimeError::LibraryLoad {
            path,
            message: message.clone(),
        }),
    }
}

/// The environment made by [`init`]; an error if `init` has not succeeded.
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    match ENVIRONMENT.get() {
        Some(Ok(env)) => Ok(env),
        Some(Err(message)) => Err(RuntimeError::LibraryLoad {
            path: PathBuf::new(),
            message: message.clone(),
        }),
        None => Err(RuntimeError::LibraryLoad {
            path: PathBuf::new(),
            message: "ONNX Runtime was not initialised".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_library_is_a_clear_error() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("make setup"), "{msg}");
    }
}
