//! The trunks' forward pass through ONNX Runtime (`retrain --train-layers head`).
//!
//! The 3×3 convolutions are by far the largest cost of training them: per image
//! about 0.5 G multiply-adds, against a few million for the class rows. ONNX
//! Runtime's convolution is several times faster here than a GEMM in Rust, so a
//! mini-batch's convolutions run as one call of a small model
//! ([`graph::trunk_model`]) that takes the current weights as inputs (in the
//! epochs that compute every cell; see [`super::hard_cells`]); the rest
//! (activation, losses, the weight gradients of the cells that matter) stays in
//! [`super::trunk`] and [`super::head`].

use ndarray::{Array2, Array4, Axis, Ix4};
use ort::session::Session;
use ort::value::TensorRef;

use super::TrainError;
use super::features::{batch_output, channels_by_cells, run_error};
use super::graph;
use super::trunk::Trunk;
use crate::infer::{RuntimeError, RuntimeOptions};

/// A session of the trunks' convolutions.
pub struct TrunkSession {
    session: Session,
}

impl TrunkSession {
    /// Builds the session on the CPU provider of the loaded library.
    pub fn new(trunks: &[Trunk], options: &RuntimeOptions) -> Result<Self, TrainError> {
        let shapes: Vec<graph::TrunkShape> = trunks.iter().map(|t| t.shape).collect();
        let bytes = graph::trunk_model(&shapes);
        let name = std::path::Path::new("pedvision-trunks.onnx");
        let session = crate::infer::session::session_builder(options, name)?
            .commit_from_memory(&bytes)
            .map_err(|e| {
                TrainError::Runtime(RuntimeError::ModelLoad {
                    path: name.to_path_buf(),
                    message: e.to_string(),
                })
            })?;
        Ok(Self { session })
    }

    /// The outputs of the trunks' [`Trunk::convolution`]s for each image: per
    /// image and level `[cells, F]` (or `[cells, R]` for a rank-R update).
    /// `inputs[i][l]` is image `i`'s padded level-`l` input `[C, Hp·Wp]`;
    /// `grids[l]` is level `l`'s output grid (width, height).
    pub fn convolutions(
        &mut self,
        trunks: &[Trunk],
        inputs: &[Vec<&Array2<f32>>],
        grids: &[(usize, usize)],
    ) -> Result<Vec<Vec<Array2<f32>>>, TrainError> {
        let n = inputs.len();
        let mut batches = Vec::with_capacity(trunks.len());
        let mut weights = Vec::with_capacity(trunks.len());
        for (l, (trunk, &(w, h))) in trunks.iter().zip(grids).enumerate() {
            let (k, channels) = (trunk.shape.kernel, trunk.shape.channels);
            let (hp, wp) = (h + k - 1, w + k - 1);
            let mut x = Array4::<f32>::zeros((n, channels, hp, wp));
            for (i, image) in inputs.iter().enumerate() {
                let src = image[l]
                    .view()
                    .into_shape_with_order((channels, hp, wp))
                    .map_err(run_error)?;
                x.index_axis_mut(Axis(0), i).assign(&src);
            }
            batches.push(x);
            let conv = trunk.convolution();
            let f = conv.bias.len();
            let w4 = conv
                .weight
                .view()
                .into_shape_with_order((f, channels, k, k))
                .map_err(run_error)?;
            weights.push(w4);
        }
        let mut feeds: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        for (l, (x, w)) in batches.iter().zip(&weights).enumerate() {
            feeds.push((
                format!("x{l}"),
                TensorRef::from_array_view(x.view())
                    .map_err(run_error)?
                    .into(),
            ));
            feeds.push((
                format!("w{l}"),
                TensorRef::from_array_view(*w).map_err(run_error)?.into(),
            ));
            feeds.push((
                format!("b{l}"),
                TensorRef::from_array_view(trunks[l].convolution().bias.view())
                    .map_err(run_error)?
                    .into(),
            ));
        }
        let outputs = self.session.run(feeds).map_err(run_error)?;
        let mut out: Vec<Vec<Array2<f32>>> = (0..n).map(|_| Vec::new()).collect();
        for l in 0..trunks.len() {
            let conv = batch_output::<Ix4>(&outputs, &format!("out{l}"), n)?;
            for (i, image) in out.iter_mut().enumerate() {
                let p = channels_by_cells(conv.view(), i)?;
                image.push(p.t().as_standard_layout().into_owned());
            }
        }
        Ok(out)
    }
}
