//! The ONNX Runtime shared libraries and which one a device loads.
//!
//! `ort` is built with `load-dynamic` and an API floor of 1.24, so one binary loads
//! either build `scripts/setup.sh` installs from PyPI: `.ort/lib` (onnxruntime
//! 1.31.1, the CPU provider) or `.ort/openvino` (onnxruntime-openvino 1.24.1, the
//! OpenVINO provider and the CPU one), or a CUDA build (`.ort/gpu`, or `--ort-lib`).
//! A process loads one library, once: the first device's choice holds.
//!
//! Which library: `--ort-lib`, then `ORT_DYLIB_PATH`, then the device's own folder
//! ([`LibraryKind::for_device`]) in each library folder of [`crate::resources`]'s
//! order (beside the executable's `../lib/pedvision`, the executable's own folder,
//! `/usr/lib/pedvision`, the checkout's `.ort/` last). `auto` takes the GPU build where an NVIDIA GPU and that build are
//! present, else the OpenVINO build where installed, else the CPU build. A missing
//! library is an error that says what to run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use super::device::{Device, Precision};

use crate::resources::{self, Found, NotFound, Origin};

/// The ONNX Runtime builds pedvision knows where to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryKind {
    /// `onnxruntime` 1.31.1 from PyPI: the CPU provider.
    Cpu,
    /// `onnxruntime-openvino` 1.24.1 from PyPI: OpenVINO and CPU providers.
    Openvino,
    /// A CUDA build (`onnxruntime-gpu`): TensorRT, CUDA and CPU providers.
    Gpu,
}

impl LibraryKind {
    /// The build a device needs; `auto` looks at what is installed.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Openvino => Self::Openvino,
            Device::Cuda | Device::Tensorrt => Self::Gpu,
            Device::Auto => {
                if nvidia_gpu_present() && Self::Gpu.find_installed().is_some() {
                    Self::Gpu
                } else if Self::Openvino.find_installed().is_some() {
                    Self::Openvino
                } else {
                    Self::Cpu
                }
            }
        }
    }

    /// The folder name of this build under a library folder (`.ort/`,
    /// `lib/pedvision/`); the CPU build may also sit in the library folder itself.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Cpu => "lib",
            Self::Openvino => "openvino",
            Self::Gpu => "gpu",
        }
    }

    /// File names tried in each folder, most specific first.
    fn file_names(self) -> &'static [&'static str] {
        match self {
            Self::Cpu => &["libonnxruntime.so.1.31.1", "libonnxruntime.so"],
            Self::Openvino => &["libonnxruntime.so.1.24.1", "libonnxruntime.so"],
            Self::Gpu => &["libonnxruntime.so"],
        }
    }

    /// Folders searched, in order, each with the step of the order it comes from.
    fn dirs(self) -> Vec<resources::Place> {
        resources::Environment::current()
            .library_dirs()
            .into_iter()
            .flat_map(|p| {
                let mut dirs = vec![resources::Place {
                    dir: p.dir.join(self.dir_name()),
                    origin: p.origin,
                }];
                if self == Self::Cpu {
                    dirs.push(p);
                }
                dirs
            })
            .collect()
    }

    /// Where the installed library of this kind is, or every folder searched.
    pub fn locate(self) -> Result<Found, NotFound> {
        resources::find_in(&self.dirs(), &format!("ONNX Runtime {self}"), |dir| {
            self.file_names()
                .iter()
                .map(|name| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    }

    /// The installed library of this kind, if any.
    pub fn find_installed(self) -> Option<PathBuf> {
        self.locate().ok().map(|found| found.path)
    }

    /// What to do when this kind is missing.
    fn remedy(self) -> &'static str {
        match self {
            Self::Cpu | Self::Openvino => {
                "run `make setup` (scripts/setup.sh), or pass --ort-lib or set ORT_DYLIB_PATH"
            }
            Self::Gpu => {
                "put the onnxruntime-gpu wheel's libraries in a gpu/ folder beside the others (.ort/gpu in a checkout, /usr/lib/pedvision/gpu when installed), or pass --ort-lib or set ORT_DYLIB_PATH"
            }
        }
    }
}

impl std::fmt::Display for LibraryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "CPU build",
            Self::Openvino => "OpenVINO build",
            Self::Gpu => "CUDA build",
        })
    }
}

/// Whether the NVIDIA driver is loaded on this machine.
pub fn nvidia_gpu_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists()
}

/// Errors from the ONNX Runtime library, its providers and the model session.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found ({kind}; looked in: {searched}); {remedy}")]
    LibraryNotFound {
        kind: LibraryKind,
        searched: String,
        remedy: &'static str,
    },
    #[error(
        "this process already loaded ONNX Runtime from {loaded}; {device} needs {wanted} (one library per process)"
    )]
    LibraryConflict {
        loaded: PathBuf,
        wanted: PathBuf,
        device: Device,
    },
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    LibraryLoad { path: PathBuf, message: String },
    #[error("execution provider {device} is not available: {message}")]
    Provider { device: Device, message: String },
    #[error("--device {device} --precision {precision}: {reason}")]
    Precision {
        device: Device,
        precision: Precision,
        reason: String,
    },
    #[error("no execution provider loaded the model with --device auto: {tried}")]
    NoDevice { tried: String },
    #[error("model file not found: {path}")]
    ModelMissing { path: PathBuf },
    #[error("cannot load model {path}: {message}")]
    ModelLoad { path: PathBuf, message: String },
    #[error("model {path} does not match its manifest: {reason}")]
    ManifestMismatch { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// How to set up the runtime and the session.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Execution provider.
    pub device: Device,
    /// Arithmetic, resolved per provider by [`Precision::resolve`].
    pub precision: Precision,
    /// Intra-op threads; 0 means one per core.
    pub threads: usize,
}

/// Finds the ONNX Runtime library for `device` (see the module docs for the order).
pub fn find_library(explicit: Option<&Path>, device: Device) -> Result<PathBuf, RuntimeError> {
    locate_library(explicit, device).map(|found| found.path)
}

/// Finds the ONNX Runtime library for `device`, and which step of the order found it.
pub fn locate_library(explicit: Option<&Path>, device: Device) -> Result<Found, RuntimeError> {
    let kind = LibraryKind::for_device(device);
    let not_found = |searched: String| RuntimeError::LibraryNotFound {
        kind,
        searched,
        remedy: kind.remedy(),
    };
    let named = |path: &Path, origin: Origin| {
        resources::given(path, origin, "ONNX Runtime library")
            .map_err(|e| not_found(e.searched.join(", ")))
    };
    if let Some(path) = explicit {
        return named(path, Origin::Given);
    }
    // An empty variable is unset, as for the other variables of the search.
    if let Some(path) = std::env::var_os(resources::ORT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        return named(&path, Origin::Environment(resources::ORT_ENV));
    }
    kind.locate().map_err(|e| not_found(e.searched.join(", ")))
}

/// The library a process loaded.
struct Loaded {
    environment: ort::environment::Environment,
    path: PathBuf,
}

static ENVIRONMENT: OnceLock<Result<Loaded, (PathBuf, String)>> = OnceLock::new();

/// Loads `device`'s library and creates the process-wide ONNX Runtime environment,
/// once; returns the library's path. A later call for another library is an error.
pub fn init(explicit: Option<&Path>, device: Device) -> Result<PathBuf, RuntimeError> {
    let path = find_library(explicit, device)?;
    let outcome = ENVIRONMENT.get_or_init(|| {
        let fail = |e: String| (path.clone(), e);
        let environment = ort::init_from(&path)
            .map_err(|e| fail(e.to_string()))?
            .with_name("pedvision")
            .build()
            .map_err(|e| fail(e.to_string()))?;
        Ok(Loaded {
            environment,
            path: path.clone(),
        })
    });
    match outcome {
        Ok(loaded) if same_file(&loaded.path, &path) => {
            tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
            Ok(path)
        }
        Ok(loaded) => Err(RuntimeError::LibraryConflict {
            loaded: loaded.path.clone(),
            wanted: path,
            device,
        }),
        Err((path, message)) => Err(RuntimeError::LibraryLoad {
            path: path.clone(),
            message: message.clone(),
        }),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

/// The environment made by [`init`]; an error if `init` has not succeeded.
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    match ENVIRONMENT.get() {
        Some(Ok(loaded)) => Ok(&loaded.environment),
        Some(Err((path, message))) => Err(RuntimeError::LibraryLoad {
            path: path.clone(),
            message: message.clone(),
        }),
        None => Err(RuntimeError::LibraryLoad {
            path: PathBuf::new(),
            message: "ONNX Runtime was not initialised".into(),
        }),
    }
}

/// The execution providers the loaded library was built with (ONNX Runtime's
/// names, such as `OpenVINOExecutionProvider`).
pub fn available_providers() -> Vec<&'static str> {
    use ort::ep::ExecutionProvider;
    let mut names = Vec::new();
    let mut check = |name: &'static str, available: ort::Result<bool>| {
        if available.unwrap_or(false) {
            names.push(name);
        }
    };
    check(
        "TensorrtExecutionProvider",
        ort::ep::TensorRT::is_available(),
    );
    check("CUDAExecutionProvider", ort::ep::CUDA::is_available());
    check(
        "OpenVINOExecutionProvider",
        ort::ep::OpenVINO::is_available(),
    );
    check("CPUExecutionProvider", ort::ep::CPU::is_available());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_library_is_a_clear_error() {
        let err = find_library(
            Some(Path::new("/nonexistent/libonnxruntime.so")),
            Device::Cpu,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("make setup"), "{msg}");
    }

    #[test]
    fn each_device_has_its_own_library() {
        assert_eq!(LibraryKind::for_device(Device::Cpu), LibraryKind::Cpu);
        assert_eq!(
            LibraryKind::for_device(Device::Openvino),
            LibraryKind::Openvino
        );
        assert_eq!(LibraryKind::for_device(Device::Cuda), LibraryKind::Gpu);
        assert_eq!(LibraryKind::for_device(Device::Tensorrt), LibraryKind::Gpu);
        let err = find_library(Some(Path::new("/nonexistent/x.so")), Device::Openvino)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OpenVINO build"), "{err}");
        let err = find_library(Some(Path::new("/nonexistent/x.so")), Device::Cuda)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CUDA build") && err.contains("onnxruntime-gpu"),
            "{err}"
        );
    }
}
