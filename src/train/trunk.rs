//! The head's shared 3×3 convolution, made trainable (`retrain --train-layers head`).
//!
//! NanoDet-g computes each level's head feature as
//! `LeakyReLU(Conv3×3(Pad(neck)))` (its batch norm folded into the Conv) and reads
//! class *and* box logits from it. Here that convolution is a copy that only the
//! trained classes read: the box branch and kept (untrained) classes still see the
//! frozen original, so a kept `person` is unchanged by construction (the export
//! adds the copy beside the original; see `graph::HeadGraph::with_heads`).
//!
//! Data flow, per image and level: the cached padded conv input `[C, Hp·Wp]` →
//! [`im2col`] `[cells, C·k²]` (column order `c·k² + ky·k + kx`, the flattening of
//! ONNX's `[F, C, k, k]` weight) → `pre = cols · Wᵀ + b` → `features =
//! LeakyReLU(pre)`. The backward pass takes `d features`, goes through the
//! activation and accumulates the weight and bias gradients; the neck is frozen,
//! so no gradient flows into the input.
//!
//! With a rank (`retrain --trunk-rank R`) the copy's weights stay the original
//! ones and what trains is a low-rank update `W + up·down` ([`LowRank`], as LoRA
//! does): `down` is a k×k convolution to R channels, `up` a 1×1 back to F. The
//! original's pre-activations come free from the cached frozen features (the
//! LeakyReLU is invertible), so a pass costs the R-channel convolution instead of
//! the F-channel one, and the export merges the update into one convolution.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::graph::{LinearWeights, TrunkShape};

/// One level's copy of the head convolution (weight `[F, C·k²]`, bias `[F]`), and
/// what of it trains.
#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    /// Trained as they are without an update; the frozen original with one.
    pub weights: LinearWeights,
    /// Input channels, kernel side (odd; the input is already padded by `k / 2`)
    /// and the LeakyReLU's slope.
    pub shape: TrunkShape,
    /// The low-rank update that trains instead of `weights`, if any.
    pub update: Option<LowRank>,
}

/// A rank-R update of a `[F, C·k²]` convolution: `ΔW = up.weight · down.weight`,
/// `Δb = up.weight · down.bias + up.bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// `[R, C·k²]`, `[R]`: a k×k convolution to R channels.
    pub down: LinearWeights,
    /// `[F, R]`, `[F]`: a 1×1 back to F channels.
    pub up: LinearWeights,
}

impl LowRank {
    /// `down` uniform in ±1/√(C·k²) (each of its channels then has about the
    /// input's scale), `up` zero: the update starts at nothing.
    pub fn new(rank: usize, outputs: usize, inputs: usize, rng: &mut impl rand::Rng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        Self {
            down: LinearWeights {
                weight: Array2::from_shape_simple_fn((rank, inputs), || {
                    rng.random_range(-bound..bound)
                }),
                bias: Array1::zeros(rank),
            },
            up: LinearWeights {
                weight: Array2::zeros((outputs, rank)),
                bias: Array1::zeros(outputs),
            },
        }
    }
}

/// What the forward pass keeps for the backward one.
pub struct TrunkForward {
    pre: Array2<f32>,
    /// `[cells, R]`: the update's `down` output, with an update.
    low: Option<Array2<f32>>,
    /// `[cells, F]`: what the class rows read.
    pub features: Array2<f32>,
    /// `[cells, C·k²]`: the patches the convolution read, when the pass gathered
    /// them ([`Trunk::forward_cells`]); the backward pass reads them instead of
    /// gathering its cells' again.
    cols: Option<Array2<f32>>,
}

/// Cells whose every feature gradient is at most this (in absolute value) are left
/// out of the backward pass: easy negatives, whose focal-loss gradient is
/// thousands of times smaller than a positive's, make most of the cells, and the
/// backward pass's cost is proportional to the cells kept.
pub const ACTIVE_GRADIENT: f32 = 1e-5;

/// The `[cells, C·k²]` patches of a padded `[C, Hp·Wp]` input for an output grid
/// of `(width, height)` cells, row-major.
pub fn im2col(input: ArrayView2<'_, f32>, kernel: usize, grid: (usize, usize)) -> Array2<f32> {
    let cells: Vec<usize> = (0..grid.0 * grid.1).collect();
    patches(input, kernel, grid.0, &cells)
}

/// The patches of the given cells only, `[cells.len(), C·k²]`.
fn patches(
    input: ArrayView2<'_, f32>,
    kernel: usize,
    width: usize,
    cells: &[usize],
) -> Array2<f32> {
    let channels = input.nrows();
    let padded_w = width + kernel - 1;
    let k2 = kernel * kernel;
    let row_len = channels * k2;
    let mut cols = Array2::<f32>::zeros((cells.len(), row_len));
    let cols_slice = cols
        .as_slice_mut()
        .expect("a new array is in standard layout");
    for (c, plane) in input.axis_iter(Axis(0)).enumerate() {
        let owned;
        let plane = match plane.as_slice() {
            Some(p) => p,
            None => {
                owned = plane.to_vec();
                &owned
            }
        };
        for (r, &cell) in cells.iter().enumerate() {
            let (x, y) = (cell % width, cell / width);
            let row = &mut cols_slice[r * row_len + c * k2..][..k2];
            for ky in 0..kernel {
                let src = (y + ky) * padded_w + x;
                row[ky * kernel..(ky + 1) * kernel].copy_from_slice(&plane[src..src + kernel]);
            }
        }
    }
    cols
}

impl Trunk {
    /// A copy of `weights` that trains as a whole.
    pub fn full(weights: LinearWeights, shape: TrunkShape) -> Self {
        Self {
            weights,
            shape,
            update: None,
        }
    }

    /// A copy of `weights` that stays frozen while a rank-`rank` update trains.
    pub fn low_rank(
        weights: LinearWeights,
        shape: TrunkShape,
        rank: usize,
        rng: &mut impl rand::Rng,
    ) -> Self {
        let (outputs, inputs) = weights.weight.dim();
        let update = LowRank::new(rank, outputs, inputs, rng);
        Self {
            weights,
            shape,
            update: Some(update),
        }
    }

    /// The convolution the model ends up with: the weights plus the update.
    pub fn merged(&self) -> LinearWeights {
        let Some(u) = &self.update else {
            return self.weights.clone();
        };
        LinearWeights {
            weight: &self.weights.weight + &u.up.weight.dot(&u.down.weight),
            bias: &self.weights.bias + &u.up.weight.dot(&u.down.bias) + &u.up.bias,
        }
    }

    /// The tensors that train, in a fixed order: the weights, or `down` then `up`.
    pub fn trained(&self) -> Vec<&LinearWeights> {
        match &self.update {
            None => vec![&self.weights],
            Some(u) => vec![&u.down, &u.up],
        }
    }

    /// [`Self::trained`], mutably.
    pub fn trained_mut(&mut self) -> Vec<&mut LinearWeights> {
        match &mut self.update {
            None => vec![&mut self.weights],
            Some(u) => vec![&mut u.down, &mut u.up],
        }
    }

    /// The convolution a pass runs on the padded input: the weights, or the
    /// update's `down` (see [`Self::from_convolution`]).
    pub fn convolution(&self) -> &LinearWeights {
        self.update.as_ref().map_or(&self.weights, |u| &u.down)
    }

    /// The features of one level from its padded input, computed here (see
    /// [`super::trunk_session`] for the faster way), keeping what the backward
    /// pass needs. `frozen` is the level's cached `[cells, F]` feature (read
    /// only with an update).
    pub fn forward(
        &self,
        input: ArrayView2<'_, f32>,
        grid: (usize, usize),
        frozen: ArrayView2<'_, f32>,
    ) -> TrunkForward {
        let cols = im2col(input, self.shape.kernel, grid);
        TrunkForward {
            cols: None,
            ..self.forward_patches(cols, frozen)
        }
    }

    /// The features of the given cells only (increasing indices into a grid
    /// `width` cells wide), in that order: [`Self::forward`]'s rows `cells`.
    /// `frozen` is the level's whole cached `[cells, F]` feature.
    pub fn forward_cells(
        &self,
        (input, width): (ArrayView2<'_, f32>, usize),
        cells: &[usize],
        frozen: ArrayView2<'_, f32>,
    ) -> TrunkForward {
        let cols = patches(input, self.shape.kernel, width, cells);
        let rows = match self.update {
            Some(_) => frozen.select(Axis(0), cells),
            None => Array2::zeros((0, 0)),
        };
        self.forward_patches(cols, rows.view())
    }

    /// The forward pass from gathered patches `[cells, C·k²]` and the frozen
    /// features of the same cells.
    fn forward_patches(&self, cols: Array2<f32>, frozen: ArrayView2<'_, f32>) -> TrunkForward {
        let conv = self.convolution();
        let mut out = Array2::<f32>::zeros((cols.nrows(), conv.bias.len()));
        out += &conv.bias;
        general_mat_mul(1.0, &cols, &conv.weight.t(), 1.0, &mut out);
        TrunkForward {
            cols: Some(cols),
            ..self.from_convolution(out, frozen)
        }
    }

    /// The forward pass from [`Self::convolution`]'s output `[cells, F or R]`.
    /// With an update, the original's pre-activations are recovered from the
    /// frozen features (the inverse LeakyReLU) and the update added to them.
    pub fn from_convolution(&self, conv: Array2<f32>, frozen: ArrayView2<'_, f32>) -> TrunkForward {
        let alpha = self.shape.alpha;
        let (pre, low) = match &self.update {
            None => (conv, None),
            Some(u) => {
                let mut pre = frozen.mapv(|v| if v > 0.0 { v } else { v / alpha });
                pre += &u.up.bias;
                general_mat_mul(1.0, &conv, &u.up.weight.t(), 1.0, &mut pre);
                (pre, Some(conv))
            }
        };
        let features = pre.mapv(|v| if v > 0.0 { v } else { alpha * v });
        TrunkForward {
            pre,
            low,
            features,
            cols: None,
        }
    }

    /// Adds the gradients of [`Self::trained`]'s tensors for `d_features`
    /// (`[cells, F]`, the loss's gradient with respect to
    /// [`TrunkForward::features`]) to `grads` (one weight and bias pair per
    /// tensor, in that order); `input` and `width` are the forward pass's (read
    /// only when the pass kept no patches, so it covered every cell). Cells whose
    /// feature gradients are all at most `active` are left out of every gradient
    /// (0 keeps every cell).
    pub fn backward(
        &self,
        (input, width): (ArrayView2<'_, f32>, usize),
        forward: &TrunkForward,
        mut d_features: Array2<f32>,
        active: f32,
        grads: &mut [(Array2<f32>, Array1<f32>)],
    ) {
        let alpha = self.shape.alpha;
        ndarray::Zip::from(&mut d_features)
            .and(&forward.pre)
            .for_each(|d, &p| {
                if p <= 0.0 {
                    *d *= alpha;
                }
            });
        let rows: Vec<usize> = d_features
            .axis_iter(Axis(0))
            .enumerate()
            .filter(|(_, r)| r.iter().any(|v| v.abs() > active))
            .map(|(i, _)| i)
            .collect();
        if rows.is_empty() {
            return;
        }
        let every = rows.len() == d_features.nrows();
        let d_features = if every {
            d_features
        } else {
            d_features.select(Axis(0), &rows)
        };
        let d_sum = d_features.sum_axis(Axis(0));
        // The gradient with respect to the convolution's output, at the rows.
        let d_conv = match (&self.update, &forward.low, grads) {
            (None, _, [(dw, db)]) => {
                *db += &d_sum;
                Some((d_features, dw))
            }
            (Some(u), Some(low), [(d_down, d_down_b), (d_up, d_up_b)]) => {
                let selected;
                let low = if every {
                    low.view()
                } else {
                    selected = low.select(Axis(0), &rows);
                    selected.view()
                };
                general_mat_mul(1.0, &d_features.t(), &low, 1.0, d_up);
                *d_up_b += &d_sum;
                let d_low = d_features.dot(&u.up.weight);
                *d_down_b += &d_low.sum_axis(Axis(0));
                Some((d_low, d_down))
            }
            _ => None,
        };
        let Some((d_conv, dw)) = d_conv else {
            debug_assert!(false, "gradients shaped unlike the trained tensors");
            return;
        };
        let gathered;
        let cols = match &forward.cols {
            Some(cols) if every => cols.view(),
            Some(cols) => {
                gathered = cols.select(Axis(0), &rows);
                gathered.view()
            }
            None => {
                // A pass without its patches covered every cell of the grid.
                debug_assert_eq!(input.ncols() % (width + self.shape.kernel - 1), 0);
                gathered = patches(input, self.shape.kernel, width, &rows);
                gathered.view()
            }
        };
        general_mat_mul(1.0, &d_conv.t(), &cols, 1.0, dw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    fn trunk(channels: usize, outputs: usize) -> Trunk {
        let weight = Array::from_shape_fn((outputs, channels * 9), |(o, i)| {
            ((o * 31 + i * 17) % 23) as f32 / 23.0 - 0.5
        });
        Trunk {
            weights: LinearWeights {
                weight,
                bias: Array1::from_shape_fn(outputs, |o| o as f32 * 0.1 - 0.1),
            },
            shape: TrunkShape {
                channels,
                kernel: 3,
                alpha: 0.1,
            },
            update: None,
        }
    }

    fn none() -> ArrayView2<'static, f32> {
        ArrayView2::from_shape((0, 0), &[]).unwrap()
    }

    /// A padded input `[C, (w+2)(h+2)]` with zero borders, as ONNX's Pad makes it.
    fn padded_input(channels: usize, (w, h): (usize, usize)) -> Array2<f32> {
        Array::from_shape_fn((channels, (w + 2) * (h + 2)), |(c, i)| {
            let (x, y) = (i % (w + 2), i / (w + 2));
            if x == 0 || y == 0 || x == w + 1 || y == h + 1 {
                0.0
            } else {
                ((c * 7 + x * 3 + y * 5) % 11) as f32 / 11.0 - 0.4
            }
        })
    }

    #[test]
    fn forward_is_the_direct_convolution() {
        let (c, f, grid) = (3, 4, (5, 4));
        let t = trunk(c, f);
        let input = padded_input(c, grid);
        let out = t.forward(input.view(), grid, none());
        let (w, h) = grid;
        for y in 0..h {
            for x in 0..w {
                for o in 0..f {
                    let mut v = t.weights.bias[o];
                    for ch in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                v += t.weights.weight[[o, ch * 9 + ky * 3 + kx]]
                                    * input[[ch, (y + ky) * (w + 2) + x + kx]];
                            }
                        }
                    }
                    let want = if v > 0.0 { v } else { 0.1 * v };
                    let got = out.features[[y * w + x, o]];
                    assert!((got - want).abs() < 1e-5, "({x},{y},{o}): {got} vs {want}");
                }
            }
        }
    }

    /// Asserts that the backward pass's gradient of every trained tensor of `t`
    /// matches central differences of step `h`, for the loss `Σ features · coef`
    /// on a 4×3 grid (`frozen` as [`Trunk::forward`] takes it).
    fn assert_gradients_match(t: &Trunk, input: &Array2<f32>, frozen: ArrayView2<'_, f32>, h: f32) {
        let grid = (4, 3);
        let f = t.weights.bias.len();
        let coef = Array::from_shape_fn((12, f), |(i, o)| ((i * 5 + o * 3) % 7) as f32 - 3.0);
        let loss = |t: &Trunk| (&t.forward(input.view(), grid, frozen).features * &coef).sum();
        let fwd = t.forward(input.view(), grid, frozen);
        let mut grads: Vec<_> = t
            .trained()
            .iter()
            .map(|w| (Array2::zeros(w.weight.dim()), Array1::zeros(w.bias.len())))
            .collect();
        t.backward((input.view(), grid.0), &fwd, coef.clone(), 0.0, &mut grads);
        for (k, (dw, db)) in grads.iter().enumerate() {
            let nudged = |i: usize, bias: bool, by: f32| {
                let mut t = t.clone();
                let w = &mut t.trained_mut()[k];
                if bias {
                    w.bias[i] += by;
                } else {
                    w.weight.as_slice_mut().unwrap()[i] += by;
                }
                loss(&t)
            };
            for (i, &g) in dw.iter().enumerate() {
                let numeric = (nudged(i, false, h) - nudged(i, false, -h)) / (2.0 * h);
                assert!(
                    (g - numeric).abs() < 2e-2,
                    "tensor {k} w[{i}]: {g} vs {numeric}"
                );
            }
            for (i, &g) in db.iter().enumerate() {
                let numeric = (nudged(i, true, h) - nudged(i, true, -h)) / (2.0 * h);
                assert!(
                    (g - numeric).abs() < 2e-2,
                    "tensor {k} b[{i}]: {g} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn weight_gradient_matches_finite_differences() {
        let t = trunk(2, 3);
        assert_eq!(t.trained(), [&t.weights], "the whole copy trains");
        assert_gradients_match(&t, &padded_input(2, (4, 3)), none(), 1e-3);
    }

    #[test]
    fn inactive_cells_are_left_out_of_the_weight_gradient() {
        let (c, f, grid) = (2, 2, (3, 3));
        let t = trunk(c, f);
        let input = padded_input(c, grid);
        let fwd = t.forward(input.view(), grid, none());
        // Only cell 4 has a gradient above the threshold.
        let mut d = Array2::from_elem((9, f), 1e-7f32);
        d.row_mut(4).fill(1.0);
        let mut all = [(Array2::zeros((f, c * 9)), Array1::zeros(f))];
        let mut active = all.clone();
        t.backward((input.view(), 3), &fwd, d.clone(), 0.0, &mut all);
        t.backward((input.view(), 3), &fwd, d, 1e-3, &mut active);
        let [(dw_all, _)] = all;
        let [(dw_active, _)] = active;
        let diff = (&dw_all - &dw_active).mapv(f32::abs).sum();
        assert!(diff > 0.0 && diff < 1e-4, "{diff}");
        assert_ne!(dw_active, Array2::<f32>::zeros((f, c * 9)));
    }

    /// A rank-2 update of `trunk(c, f)` with non-zero factors, and its frozen
    /// features on `input` (what the feature model caches).
    fn low_rank(
        c: usize,
        f: usize,
        input: &Array2<f32>,
        grid: (usize, usize),
    ) -> (Trunk, Array2<f32>) {
        let frozen = trunk(c, f).forward(input.view(), grid, none()).features;
        let mut t = trunk(c, f);
        t.update = Some(LowRank {
            down: LinearWeights {
                weight: Array::from_shape_fn((2, c * 9), |(r, i)| {
                    ((r * 5 + i * 3) % 7) as f32 * 0.1 - 0.3
                }),
                bias: Array1::from_vec(vec![0.05, -0.1]),
            },
            up: LinearWeights {
                weight: Array::from_shape_fn((f, 2), |(o, r)| ((o * 3 + r) % 5) as f32 * 0.2 - 0.4),
                bias: Array1::from_shape_fn(f, |o| 0.02 * o as f32),
            },
        });
        (t, frozen)
    }

    #[test]
    fn a_low_rank_update_is_its_merged_convolution() {
        let (c, f, grid) = (3, 4, (5, 4));
        let input = padded_input(c, grid);
        let (t, frozen) = low_rank(c, f, &input, grid);
        let got = t.forward(input.view(), grid, frozen.view()).features;
        let merged = Trunk::full(t.merged(), t.shape);
        let want = merged.forward(input.view(), grid, none()).features;
        let diff = (&got - &want).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
        assert!(diff < 1e-5, "{diff}");
        assert_ne!(t.merged(), t.weights, "the update changes the convolution");
        // A new update starts at nothing.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let fresh = Trunk::low_rank(t.weights.clone(), t.shape, 3, &mut rng);
        assert_eq!(fresh.merged(), t.weights);
        assert_eq!(fresh.trained().len(), 2);
    }

    #[test]
    fn a_pass_over_some_cells_is_the_full_pass_at_those_cells() {
        let (c, f, grid) = (3, 4, (5, 4));
        let input = padded_input(c, grid);
        let cells = [0, 3, 7, 8, 19];
        let (low, frozen) = low_rank(c, f, &input, grid);
        for t in [trunk(c, f), low] {
            let all = t.forward(input.view(), grid, frozen.view());
            let some = t.forward_cells((input.view(), grid.0), &cells, frozen.view());
            let want = all.features.select(Axis(0), &cells);
            let diff = (&some.features - &want).mapv(f32::abs).sum();
            assert!(diff < 1e-4, "{diff}");
            // Gradients only at those cells: the same from either pass.
            let mut d_all = Array2::zeros((20, f));
            let d_some = Array::from_shape_fn((cells.len(), f), |(i, o)| (i + o) as f32 - 2.0);
            for (i, &cell) in cells.iter().enumerate() {
                d_all.row_mut(cell).assign(&d_some.row(i));
            }
            let zeros = || -> Vec<_> {
                t.trained()
                    .iter()
                    .map(|w| (Array2::zeros(w.weight.dim()), Array1::zeros(w.bias.len())))
                    .collect()
            };
            let (mut from_all, mut from_some) = (zeros(), zeros());
            t.backward((input.view(), grid.0), &all, d_all, 0.0, &mut from_all);
            t.backward((none(), 0), &some, d_some, 0.0, &mut from_some);
            for ((wa, ba), (ws, bs)) in from_all.iter().zip(&from_some) {
                let diff = (wa - ws).mapv(f32::abs).sum() + (ba - bs).mapv(f32::abs).sum();
                assert!(diff < 1e-3, "{diff}");
                assert!(ws.iter().any(|&v| v != 0.0));
            }
        }
    }

    #[test]
    fn low_rank_gradients_match_finite_differences() {
        let (c, f, grid) = (2, 3, (4, 3));
        let input = padded_input(c, grid);
        let (t, frozen) = low_rank(c, f, &input, grid);
        // Small: one pre-activation lies 7e-4 from the LeakyReLU's kink.
        assert_gradients_match(&t, &input, frozen.view(), 2e-4);
    }
}
