//! The detector session: one `ort::Session` on the manifest's model, checked against
//! the manifest before the first frame, run on batches `[N, 3, H, W]`.
//!
//! `run` takes `&mut self` (ONNX Runtime sessions are used by one worker at a time);
//! the inference stage owns the `Detector`. Outputs are copied out per frame so the
//! post-processing stage can work on them while the next batch runs.

use ndarray::ArrayView4;
use ort::ep;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::{TensorRef, ValueType};

use super::runtime::{Device, RuntimeError, RuntimeOptions};
use crate::config::Manifest;
use crate::model::nanodet::{Layout, LevelOutputs};

/// One frame's raw outputs, per level in manifest order.
#[derive(Debug, Clone, Default)]
pub struct FrameOutputs {
    /// Class scores per level, `cells × classes`.
    pub scores: Vec<Vec<f32>>,
    /// Box bins per level, `cells × 4·bins`.
    pub boxes: Vec<Vec<f32>>,
}

impl FrameOutputs {
    /// Borrowed views for the decoder, paired with their strides.
    pub fn levels<'a>(&'a self, strides: &[u32]) -> Vec<LevelOutputs<'a>> {
        strides
            .iter()
            .zip(self.scores.iter().zip(&self.boxes))
            .map(|(&stride, (s, b))| LevelOutputs {
                stride,
                scores: s,
                boxes: b,
            })
            .collect()
    }
}

/// A loaded detector model.
pub struct Detector {
    session: Session,
    input_name: String,
    class_outputs: Vec<String>,
    box_outputs: Vec<String>,
    layout: Layout,
}

fn ort_message(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Detector {
    /// Loads the manifest's model on the chosen device and checks its tensors
    /// against the manifest. [`super::runtime::init`] must have succeeded.
    pub fn load(manifest: &Manifest, options: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let path = &manifest.onnx;
        if !path.is_file() {
            return Err(RuntimeError::ModelMissing { path: path.clone() });
        }
        let threads = resolve_threads(options.threads);
        let load_err = |message: String| RuntimeError::ModelLoad {
            path: path.clone(),
            message,
        };
        let mut builder = session_builder(options, path)?;
        let session = builder
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))?;
        let detector = Self {
            session,
            input_name: manifest.input.name.clone(),
            class_outputs: manifest.output.class_outputs.clone(),
            box_outputs: manifest.output.box_outputs.clone(),
            layout: manifest.layout(),
        };
        detector.check_against(manifest)?;
        tracing::info!(model = %manifest.name, path = %path.display(), device = %options.device, threads, "model loaded");
        Ok(detector)
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
                "input {:?} has shape {got}, the manifest says [batch, 3, {}, {}]",
                self.input_name, manifest.input.height, manifest.input.width
            ))
        })?;
        let outlets = self.session.outputs();
        for (i, &stride) in self.layout.strides.iter().enumerate() {
            let cells = self.layout.cells(stride) as i64;
            for (name, channels) in [
                (&self.class_outputs[i], self.layout.num_classes as i64),
                (&self.box_outputs[i], 4 * self.layout.bins as i64),
            ] {
                let outlet = outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
                    mismatch(format!(
                        "no output named {name:?} (the model has: {})",
                        names(outlets)
                    ))
                })?;
                check_shape(outlet.dtype(), &[-1, cells, channels]).map_err(|got| {
                    mismatch(format!("output {name:?} has shape {got}, the manifest implies [batch, {cells}, {channels}]"))
                })?;
            }
        }
        Ok(())
    }

    /// Runs one batch `[N, 3, H, W]` and returns each frame's outputs.
    pub fn run(&mut self, batch: ArrayView4<'_, f32>) -> Result<Vec<FrameOutputs>, RuntimeError> {
        let n = batch.shape()[0];
        let tensor =
            TensorRef::from_array_view(batch).map_err(|e| RuntimeError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let mut frames = vec![FrameOutputs::default(); n];
        for (names, pick) in [(&self.class_outputs, 0usize), (&self.box_outputs, 1)] {
            for name in names.iter() {
                let value = outputs
                    .get(name)
                    .ok_or_else(|| RuntimeError::Run(format!("output {name:?} missing")))?;
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| RuntimeError::Run(e.to_string()))?;
                if shape.first() != Some(&(n as i64)) || data.len() % n.max(1) != 0 {
                    return Err(RuntimeError::Run(format!(
                        "output {name:?} has shape {shape:?} for a batch of {n}"
                    )));
                }
                let per_frame = data.len() / n.max(1);
                for (frame, chunk) in frames.iter_mut().zip(data.chunks_exact(per_frame)) {
                    let target = if pick == 0 {
                        &mut frame.scores
                    } else {
                        &mut frame.boxes
                    };
                    target.push(chunk.to_vec());
                }
            }
        }
        Ok(frames)
    }
}

/// The thread count to use: `0` means one per core.
pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        threads
    }
}

/// A session builder with pedvision's settings (optimisation, threads, no spinning)
/// and the chosen device's execution providers, for the model at `path` (named in
/// errors).
pub(crate) fn session_builder(
    options: &RuntimeOptions,
    path: &std::path::Path,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    let environment = super::runtime::environment()?;
    let load_err = |message: String| RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        message,
    };
    let builder = Session::builder(environment)
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
        .map_err(load_err)?;
    register_device(builder, options.device)
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

fn register_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    let providers = match device {
        Device::Cpu => return Ok(builder),
        Device::Cuda => vec![ep::CUDA::default().build().error_on_failure()],
        Device::Tensorrt => vec![
            ep::TensorRT::default().build().error_on_failure(),
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
