//! Feature extraction: the frozen part of the detector, run once over a data set.
//!
//! The model from [`HeadGraph::feature_model`] (the original graph plus the
//! per-level feature tensors as outputs) runs through ONNX Runtime in batches. Per
//! image and level it keeps the features as `[cells, F]` (cell-major, the order of
//! the model's own outputs) and the frozen box logits, which the target assignment
//! and the validation decode need: NanoDet's `[cells, 4·bins]` from its box
//! outputs, YOLOX's `[cells, 5]` (raw box and objectness) from its one output. The
//! set lives in memory: `cells · (F + box channels)` floats per image
//! (3549 · 172 · 4 B ≈ 2.4 MB for NanoDet-g, 3549 · 69 · 4 B ≈ 1 MB for YOLOX-Nano),
//! and with `--train-layers head` the head convolutions' padded inputs, about 2 MB
//! more (`C · (H+2)(W+2)` per level).

use ndarray::{Array2, ArrayView4, Axis, Ix3, Ix4, s};
use ort::session::Session;
use ort::value::TensorRef;

use super::TrainError;
use super::graph::HeadGraph;
use crate::config::Manifest;
use crate::infer::{RuntimeError, RuntimeOptions};
use crate::model::Family;
use crate::model::nanodet::YOLOX_BOX_CHANNELS;

/// One level of one image.
#[derive(Debug, Clone)]
pub struct LevelData {
    /// `[cells, F]`.
    pub features: Array2<f32>,
    /// The frozen box branch's logits, `[cells, Layout::box_channels()]`.
    pub box_logits: Array2<f32>,
    /// `[C, Hp·Wp]`, the padded input of the head's convolution, kept only when it
    /// is trained (`--train-layers head`).
    pub trunk_input: Option<Array2<f32>>,
}

/// One image's cached features, per level.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    pub levels: Vec<LevelData>,
    /// The source image size, to map boxes.
    pub size: (u32, u32),
}

/// Runs the frozen graph.
pub struct FeatureExtractor {
    session: Session,
    manifest: Manifest,
    feature_outputs: Vec<String>,
    /// The convolutions' inputs, per level; empty unless they are trained.
    trunk_outputs: Vec<String>,
}

/// A failed inference run, as a training error.
pub(super) fn run_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Runtime(RuntimeError::Run(e.to_string()))
}

impl FeatureExtractor {
    /// Builds the feature model and its session; with `trunk` it also gives the
    /// head convolutions' inputs.
    pub fn new(
        graph: &HeadGraph,
        manifest: &Manifest,
        options: &RuntimeOptions,
        trunk: bool,
    ) -> Result<Self, TrainError> {
        let bytes = graph.feature_model(trunk)?;
        // Features are extracted in fp32 (training wants the float features); a
        // named device runs them, `auto` uses the loaded library's CPU provider.
        let builder = crate::infer::session::session_builder(options, &manifest.onnx)?;
        let mut builder = crate::infer::session::register_device(
            builder,
            options.device,
            crate::infer::Precision::Fp32,
            crate::infer::session::resolve_threads(options.threads),
        )?;
        let session = builder.commit_from_memory(&bytes).map_err(|e| {
            TrainError::Runtime(RuntimeError::ModelLoad {
                path: manifest.onnx.clone(),
                message: e.to_string(),
            })
        })?;
        Ok(Self {
            session,
            manifest: manifest.clone(),
            feature_outputs: graph.feature_names(),
            trunk_outputs: if trunk {
                graph.trunk_inputs()?
            } else {
                Vec::new()
            },
        })
    }

    /// Extracts images `0..count`, each made by `load`, `batch` at a time (each
    /// batch made by `workers` threads); `progress` is called with the number of
    /// images done after each batch.
    pub fn extract(
        &mut self,
        (count, batch, workers): (usize, usize, usize),
        load: impl Fn(usize) -> Result<image::RgbImage, TrainError> + Sync,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<ImageFeatures>, TrainError> {
        let spec = self.manifest.input.clone();
        let mut tensor = Vec::new();
        let mut out = Vec::with_capacity(count);
        let indices: Vec<usize> = (0..count).collect();
        for chunk in indices.chunks(batch.max(1)) {
            let (view, sizes) =
                super::images::prepare_batch(chunk, &load, &spec, (&mut tensor, workers))?;
            out.extend(self.run(view, &sizes)?);
            progress(out.len());
        }
        Ok(out)
    }

    fn run(
        &mut self,
        batch: ArrayView4<'_, f32>,
        sizes: &[(u32, u32)],
    ) -> Result<Vec<ImageFeatures>, TrainError> {
        let n = batch.shape()[0];
        let input = TensorRef::from_array_view(batch).map_err(run_error)?;
        let outputs = self
            .session
            .run(ort::inputs![self.manifest.input.name.as_str() => input])
            .map_err(run_error)?;
        let mut images: Vec<ImageFeatures> = sizes
            .iter()
            .map(|&size| ImageFeatures {
                levels: Vec::new(),
                size,
            })
            .collect();
        // YOLOX's one output holds every level's cells in turn, from `offset`.
        let joined_name = self.manifest.output.output.as_deref().unwrap_or_default();
        let joined = match self.manifest.family {
            Family::Yolox => Some(batch_output::<Ix3>(&outputs, joined_name, n)?),
            Family::Nanodet => None,
        };
        let mut offset = 0;
        for (l, feature_name) in self.feature_outputs.iter().enumerate() {
            let features = batch_output::<Ix4>(&outputs, feature_name, n)?;
            let (box_name, boxes) = match &joined {
                Some(joined) => (joined_name, joined.view()),
                None => {
                    let name = self.manifest.output.box_outputs.get(l).ok_or_else(|| {
                        run_error(format!("the manifest names no box output for level {l}"))
                    })?;
                    (name.as_str(), batch_output::<Ix3>(&outputs, name, n)?)
                }
            };
            for (k, image) in images.iter_mut().enumerate() {
                let f = channels_by_cells(features.view(), k)?;
                let mut b = boxes.index_axis(Axis(0), k);
                if joined.is_some() {
                    let rows = offset..(offset + f.ncols()).min(b.shape()[0]);
                    b = b.slice_move(s![rows, ..YOLOX_BOX_CHANNELS.min(b.shape()[1])]);
                }
                if b.shape()[0] != f.ncols() {
                    return Err(run_error(format!(
                        "{box_name:?} has {} cells for level {l}, the feature has {}",
                        b.shape()[0],
                        f.ncols()
                    )));
                }
                image.levels.push(LevelData {
                    features: f.t().as_standard_layout().into_owned(),
                    box_logits: b.to_owned(),
                    trunk_input: None,
                });
            }
            offset += features.shape()[2] * features.shape()[3];
        }
        for (level, name) in self.trunk_outputs.iter().enumerate() {
            let input = batch_output::<Ix4>(&outputs, name, n)?;
            for (k, image) in images.iter_mut().enumerate() {
                image.levels[level].trunk_input = Some(channels_by_cells(input.view(), k)?);
            }
        }
        Ok(images)
    }
}

/// Output `name` of a run over a batch of `n` images, with `D` dimensions and
/// the batch first.
pub(super) fn batch_output<'a, D: ndarray::Dimension>(
    outputs: &'a ort::session::SessionOutputs<'_>,
    name: &str,
    n: usize,
) -> Result<ndarray::ArrayView<'a, f32, D>, TrainError> {
    let array = outputs
        .get(name)
        .ok_or_else(|| run_error(format!("output {name:?} missing")))?
        .try_extract_array::<f32>()
        .map_err(run_error)?
        .into_dimensionality::<D>()
        .map_err(run_error)?;
    if array.shape().first() != Some(&n) {
        return Err(run_error(format!(
            "{name:?} has a batch of {:?}, the input {n}",
            array.shape().first()
        )));
    }
    Ok(array)
}

/// Image `k` of a `[N, C, H, W]` batch as `[C, H·W]`.
pub(super) fn channels_by_cells(
    batch: ArrayView4<'_, f32>,
    k: usize,
) -> Result<Array2<f32>, TrainError> {
    let x = batch.index_axis(Axis(0), k);
    let (channels, cells) = (x.shape()[0], x.shape()[1] * x.shape()[2]);
    Ok(x.to_shape((channels, cells))
        .map_err(run_error)?
        .into_owned())
}
