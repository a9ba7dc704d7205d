//! The detector session: one `ort::Session` on the manifest's model, checked against
//! the manifest before the first frame, run on batches `[N, 3, H, W]`.
//!
//! `run` takes `&mut self` (ONNX Runtime sessions are used by one worker at a time);
//! the inference stage owns the `Detector`. Outputs are copied out per frame so the
//! post-processing stage can work on them while the next batch runs. With
//! test-time flip (`input.tta = "flip"`, [`crate::model::flip`]) a batch of N
//! frames runs as 2N inputs, the N mirror images after the frames, and each
//! frame's outputs carry those of its mirror image.
//!
//! `--device auto` tries the providers the loaded library has, fastest first, and
//! keeps the first whose session builds on the model; each precision is settled by
//! [`Precision::resolve`]. An explicit device is tried alone: it never falls back.

use ndarray::ArrayView4;
use ort::ep;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::{TensorRef, ValueType};

use super::cpu_features::CpuFeatures;
use super::device::{Device, Precision};
use super::runtime::{RuntimeError, RuntimeOptions};
use crate::config::Manifest;
use crate::model::flip::{self, Tta};
use crate::model::nanodet::Layout;

/// One frame's raw outputs, one per output tensor in the order the manifest's
/// family takes them ([`Manifest::output_names`]).
#[derive(Debug, Clone, Default)]
pub struct FrameOutputs {
    pub tensors: Vec<Vec<f32>>,
    /// The same outputs for the frame's mirror image (test-time flip); empty
    /// without it.
    pub mirrored: Vec<Vec<f32>>,
}

impl FrameOutputs {
    /// Borrowed views of the frame's own outputs, for the decoder
    /// ([`crate::model::decode`]).
    pub fn views(&self) -> Vec<&[f32]> {
        self.tensors.iter().map(Vec::as_slice).collect()
    }

    /// Borrowed views of the mirror image's outputs (empty without test-time
    /// flip).
    pub fn mirrored_views(&self) -> Vec<&[f32]> {
        self.mirrored.iter().map(Vec::as_slice).collect()
    }
}

/// A loaded detector model.
pub struct Detector {
    session: Session,
    input_name: String,
    output_names: Vec<String>,
    layout: Layout,
    device: Device,
    precision: Precision,
    /// What else the network sees of each frame.
    tta: Tta,
    /// The batch with its mirror images (test-time flip), reused between runs.
    with_mirrors: Vec<f32>,
}

fn ort_message(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Detector {
    /// Loads the manifest's model on the chosen device (for `auto`, the first
    /// provider that loads it) and checks its tensors against the manifest.
    /// [`super::runtime::init`] must have succeeded.
    pub fn load(manifest: &Manifest, options: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let path = &manifest.onnx;
        if !path.is_file() {
            return Err(RuntimeError::ModelMissing { path: path.clone() });
        }
        let cpu = CpuFeatures::detect();
        let int8 = manifest.is_int8();
        if options.device != Device::Auto {
            let precision = options
                .precision
                .resolve(options.device, &cpu, int8)
                .map_err(|reason| RuntimeError::Precision {
                    device: options.device,
                    precision: options.precision,
                    reason,
                })?;
            return Self::load_on(manifest, options, options.device, precision);
        }
        let mut tried = Vec::new();
        for device in auto_candidates() {
            let outcome = options
                .precision
                .resolve(device, &cpu, int8)
                .map_err(|reason| RuntimeError::Precision {
                    device,
                    precision: options.precision,
                    reason,
                })
                .and_then(|precision| Self::load_on(manifest, options, device, precision));
            match outcome {
                Ok(detector) => {
                    tracing::info!(device = %device, precision = %detector.precision, "--device auto chose {device}");
                    return Ok(detector);
                }
                // The model itself is at fault: no other provider will do better.
                Err(
                    e @ (RuntimeError::ManifestMismatch { .. } | RuntimeError::ModelMissing { .. }),
                ) => {
                    return Err(e);
                }
                // Not even the CPU provider, which runs every operator, reads it:
                // the file is at fault, and its own error says so best.
                Err(e @ RuntimeError::ModelLoad { .. }) if device == Device::Cpu => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::info!(device = %device, "--device auto: {device} not used: {e}");
                    tried.push(format!("{device}: {e}"));
                }
            }
        }
        Err(RuntimeError::NoDevice {
            tried: tried.join("; "),
        })
    }

    /// Loads the model on one provider at one precision.
    fn load_on(
        manifest: &Manifest,
        options: &RuntimeOptions,
        device: Device,
        precision: Precision,
    ) -> Result<Self, RuntimeError> {
        let path = &manifest.onnx;
        let threads = resolve_threads(options.threads);
        let load_err = |message: String| RuntimeError::ModelLoad {
            path: path.clone(),
            message,
        };
        let builder = session_builder(options, path)?;
        let mut builder = register_device(builder, device, precision, threads)?;
        let session = builder
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))?;
        let detector = Self {
            session,
            input_name: manifest.input.name.clone(),
            output_names: manifest.output_names(),
            layout: manifest.layout(),
            device,
            precision,
            tta: manifest.input.tta,
            with_mirrors: Vec::new(),
        };
        detector.check_against(manifest)?;
        let tta = crate::choice::Choice::name(manifest.input.tta);
        tracing::info!(model = %manifest.name, path = %path.display(), %device, %precision, threads, tta, "model loaded");
        Ok(detector)
    }

    /// The provider the model runs on (never `auto`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The arithmetic it runs in (never `auto`).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The output layout this detector was checked against.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn check_against(&self, manifest: &Manifest) -> Result<(), RuntimeError> {
        let mismatch = |reason: String| RuntimeError::ManifestMismatch {
            path: manifest.onnx.clone(),
            reason,
        };
        let names = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let input = self
            .session
            .inputs()
            .iter()
            .find(|i| i.name() == self.input_name)
            .ok_or_else(|| {
                mismatch(format!(
                    "no input named {:?} (the model has: {})",
                    self.input_name,
                    names(self.session.inputs())
                ))
            })?;
        let want_input = [
            -1,
            3,
            manifest.input.height as i64,
            manifest.input.width as i64,
        ];
        check_shape(input.dtype(), &want_input).map_err(|got| {
            mismatch(format!(
                "input {:?} has shape {got}, the manifest (or --input-size) says [batch, 3, {}, {}]; a graph with a fixed input size runs only at that size",
                self.input_name, manifest.input.height, manifest.input.width
            ))
        })?;
        let outlets = self.session.outputs();
        let family = self.layout.family.name();
        for (name, (cells, channels)) in self.output_names.iter().zip(self.layout.tensors()) {
            let outlet = outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
                mismatch(format!(
                    "no output named {name:?} (the model has: {})",
                    names(outlets)
                ))
            })?;
            check_shape(outlet.dtype(), &[-1, cells as i64, channels as i64]).map_err(|got| {
                mismatch(format!("output {name:?} has shape {got}, but a {family} model with this manifest gives [batch, {cells}, {channels}]"))
            })?;
        }
        Ok(())
    }

    /// Runs one batch `[N, 3, H, W]` and returns each frame's outputs (with
    /// test-time flip, its mirror image's too).
    pub fn run(&mut self, batch: ArrayView4<'_, f32>) -> Result<Vec<FrameOutputs>, RuntimeError> {
        let n = batch.shape()[0];
        if self.tta == Tta::Flip && n > 0 {
            let mut buffer = std::mem::take(&mut self.with_mirrors);
            let outputs = with_mirrors(batch, &mut buffer).and_then(|doubled| {
                run_session(
                    &mut self.session,
                    &self.input_name,
                    (&self.output_names, &self.layout),
                    doubled,
                )
            });
            self.with_mirrors = buffer;
            let mut outputs = outputs?;
            let mirrors = outputs.split_off(n);
            for (frame, mirror) in outputs.iter_mut().zip(mirrors) {
                frame.mirrored = mirror.tensors;
            }
            return Ok(outputs);
        }
        run_session(
            &mut self.session,
            &self.input_name,
            (&self.output_names, &self.layout),
            batch,
        )
    }
}

/// `[2N, 3, H, W]`: the batch, then each frame's mirror image, in `buffer`
/// (reused between batches).
fn with_mirrors<'b>(
    batch: ArrayView4<'_, f32>,
    buffer: &'b mut Vec<f32>,
) -> Result<ArrayView4<'b, f32>, RuntimeError> {
    let shape = batch.shape().to_vec();
    let (n, width) = (shape[0], shape[3]);
    let per_frame = shape[1] * shape[2] * width;
    buffer.clear();
    match batch.as_slice() {
        Some(s) => buffer.extend_from_slice(s),
        None => buffer.extend(batch.iter().copied()),
    }
    buffer.resize(2 * n * per_frame, 0.0);
    let (frames, mirrors) = buffer.split_at_mut(n * per_frame);
    for (frame, mirror) in frames
        .chunks_exact(per_frame)
        .zip(mirrors.chunks_exact_mut(per_frame))
    {
        flip::mirror_input(frame, width, mirror);
    }
    ArrayView4::from_shape((2 * n, shape[1], shape[2], width), &buffer[..])
        .map_err(|e| RuntimeError::Run(e.to_string()))
}

/// Runs `session` on one batch and copies out each input's outputs.
fn run_session(
    session: &mut Session,
    input_name: &str,
    (output_names, layout): (&[String], &Layout),
    batch: ArrayView4<'_, f32>,
) -> Result<Vec<FrameOutputs>, RuntimeError> {
    let n = batch.shape()[0];
    let tensor = TensorRef::from_array_view(batch).map_err(|e| RuntimeError::Run(e.to_string()))?;
    let outputs = session
        .run(ort::inputs![input_name => tensor])
        .map_err(|e| RuntimeError::Run(e.to_string()))?;
    let mut frames = vec![FrameOutputs::default(); n];
    for (name, (cells, channels)) in output_names.iter().zip(layout.tensors()) {
        let value = outputs
            .get(name)
            .ok_or_else(|| RuntimeError::Run(format!("output {name:?} missing")))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let per_frame = cells * channels;
        if shape.first() != Some(&(n as i64)) || data.len() != n * per_frame {
            return Err(RuntimeError::Run(format!(
                "output {name:?} has shape {shape:?} for a batch of {n}, expected [{n}, {cells}, {channels}]"
            )));
        }
        for (frame, chunk) in frames.iter_mut().zip(data.chunks_exact(per_frame)) {
            frame.tensors.push(chunk.to_vec());
        }
    }
    Ok(frames)
}

/// The thread count to use: `0` means one per core.
pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        threads
    }
}

/// A session builder with pedvision's settings (optimisation, threads, no
/// spinning), for the model at `path` (named in errors); no provider registered.
pub(crate) fn session_builder(
    options: &RuntimeOptions,
    path: &std::path::Path,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    let environment = super::runtime::environment()?;
    let load_err = |message: String| RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        message,
    };
    Session::builder(environment)
        .map_err(ort_message)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(ort_message)
        })
        .and_then(|b| {
            b.with_intra_threads(resolve_threads(options.threads))
                .map_err(ort_message)
        })
        .and_then(|b| b.with_inter_threads(1).map_err(ort_message))
        // Spinning workers would take the cores that decode, overlay and encode
        // need while inference waits for the next batch.
        .and_then(|b| b.with_intra_op_spinning(false).map_err(ort_message))
        .map_err(load_err)
}

/// Checks a tensor type against `want` (-1 = any). On mismatch returns the actual
/// shape as text.
fn check_shape(dtype: &ValueType, want: &[i64]) -> Result<(), String> {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            let fits = shape.len() == want.len()
                && shape
                    .iter()
                    .zip(want)
                    .all(|(&got, &w)| w == -1 || got == -1 || got == w);
            if fits && *ty == ort::value::TensorElementType::Float32 {
                Ok(())
            } else {
                Err(format!("{shape:?} of {ty:?}"))
            }
        }
        other => Err(format!("{other:?}")),
    }
}

/// What `--device auto` tries, fastest first: the providers the loaded library
/// has, GPU ones only where an NVIDIA driver is loaded.
fn auto_candidates() -> Vec<Device> {
    let available = super::runtime::available_providers();
    Device::AUTO_ORDER
        .into_iter()
        .filter(|d| match d {
            Device::Tensorrt => available.contains(&"TensorrtExecutionProvider"),
            Device::Cuda => available.contains(&"CUDAExecutionProvider"),
            Device::Openvino => available.contains(&"OpenVINOExecutionProvider"),
            _ => true,
        })
        .filter(|d| !d.is_gpu() || super::runtime::nvidia_gpu_present())
        .collect()
}

/// The OpenVINO CPU plugin's `INFERENCE_PRECISION_HINT` for a precision (an int8
/// model keeps its float parts in f32).
fn openvino_hint(precision: Precision) -> &'static str {
    match precision {
        Precision::Bf16 => "bf16",
        Precision::Fp16 => "f16",
        _ => "f32",
    }
}

/// Registers `device`'s providers on the builder (nothing for the CPU provider).
pub(crate) fn register_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
    precision: Precision,
    threads: usize,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    use ort::ep::ArbitrarilyConfigurableExecutionProvider;
    let providers = match device {
        Device::Cpu | Device::Auto => return Ok(builder),
        Device::Openvino => {
            let config = serde_json::json!({
                "CPU": { "INFERENCE_PRECISION_HINT": openvino_hint(precision) }
            });
            vec![
                ep::OpenVINO::default()
                    .with_device_type("CPU")
                    .with_num_threads(threads)
                    .with_arbitrary_config("load_config", config.to_string())
                    .build()
                    .error_on_failure(),
            ]
        }
        Device::Cuda => vec![ep::CUDA::default().build().error_on_failure()],
        Device::Tensorrt => vec![
            ep::TensorRT::default()
                .with_fp16(precision == Precision::Fp16)
                .with_int8(precision == Precision::Int8)
                .build()
                .error_on_failure(),
            ep::CUDA::default().build().error_on_failure(),
        ],
    };
    builder
        .with_execution_providers(providers)
        .map_err(|e| RuntimeError::Provider {
            device,
            message: e.to_string(),
        })
}
