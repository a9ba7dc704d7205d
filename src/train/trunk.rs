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

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::graph::{LinearWeights, TrunkShape};

/// One level's trainable convolution: weight `[F, C·k²]`, bias `[F]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    pub weights: LinearWeights,
    /// Input channels, kernel side (odd; the input is already padded by `k / 2`)
    /// and the LeakyReLU's slope.
    pub shape: TrunkShape,
}

/// What the forward pass keeps for the backward one.
pub struct TrunkForward {
    pre: Array2<f32>,
    /// `[cells, F]`: what the class rows read.
    pub features: Array2<f32>,
}

/// Cells whose every feature gradient is at most this (in absolute value) are left
/// out of the weight gradient: easy negatives, whose focal-loss gradient is
/// thousands of times smaller than a positive's, make most of the cells, and the
/// weight gradient's cost is proportional to the cells kept.
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
    /// The features of one level from its padded input, computed here (see
    /// [`super::trunk_session`] for the faster way), keeping what the backward
    /// pass needs.
    pub fn forward(&self, input: ArrayView2<'_, f32>, grid: (usize, usize)) -> TrunkForward {
        let cols = im2col(input, self.shape.kernel, grid);
        let mut pre = Array2::<f32>::zeros((cols.nrows(), self.weights.bias.len()));
        pre += &self.weights.bias;
        general_mat_mul(1.0, &cols, &self.weights.weight.t(), 1.0, &mut pre);
        self.activate(pre)
    }

    /// The forward pass from its pre-activations `[cells, F]`.
    pub fn activate(&self, pre: Array2<f32>) -> TrunkForward {
        let alpha = self.shape.alpha;
        let features = pre.mapv(|v| if v > 0.0 { v } else { alpha * v });
        TrunkForward { pre, features }
    }

    /// Adds the weight and bias gradients for `d_features` (`[cells, F]`, the loss's
    /// gradient with respect to [`TrunkForward::features`]) to `dw` and `db`;
    /// `input` and `width` are the forward pass's. Cells whose gradients are all at
    /// most `active` are skipped (0 keeps every cell).
    pub fn backward(
        &self,
        (input, width): (ArrayView2<'_, f32>, usize),
        forward: &TrunkForward,
        mut d_features: Array2<f32>,
        active: f32,
        (dw, db): (&mut Array2<f32>, &mut Array1<f32>),
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
        *db += &d_features.sum_axis(Axis(0));
        if rows.is_empty() {
            return;
        }
        let cols = patches(input, self.shape.kernel, width, &rows);
        let d = d_features.select(Axis(0), &rows);
        general_mat_mul(1.0, &d.t(), &cols, 1.0, dw);
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
        }
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
        let out = t.forward(input.view(), grid);
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

    #[test]
    fn weight_gradient_matches_finite_differences() {
        let (c, f, grid) = (2, 3, (4, 3));
        let t = trunk(c, f);
        let input = padded_input(c, grid);
        // Loss: sum of features times fixed coefficients.
        let coef = Array::from_shape_fn((12, f), |(i, o)| ((i * 5 + o * 3) % 7) as f32 - 3.0);
        let loss = |t: &Trunk| (&t.forward(input.view(), grid).features * &coef).sum();
        let fwd = t.forward(input.view(), grid);
        let mut dw = Array2::zeros(t.weights.weight.dim());
        let mut db = Array1::zeros(f);
        t.backward(
            (input.view(), 4),
            &fwd,
            coef.clone(),
            0.0,
            (&mut dw, &mut db),
        );
        let h = 1e-3;
        for o in 0..f {
            for i in 0..c * 9 {
                let (mut up, mut down) = (t.clone(), t.clone());
                up.weights.weight[[o, i]] += h;
                down.weights.weight[[o, i]] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
                assert!(
                    (dw[[o, i]] - numeric).abs() < 2e-2,
                    "w[{o},{i}]: {} vs {numeric}",
                    dw[[o, i]]
                );
            }
            let (mut up, mut down) = (t.clone(), t.clone());
            up.weights.bias[o] += h;
            down.weights.bias[o] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(
                (db[o] - numeric).abs() < 2e-2,
                "b[{o}]: {} vs {numeric}",
                db[o]
            );
        }
    }

    #[test]
    fn inactive_cells_are_left_out_of_the_weight_gradient() {
        let (c, f, grid) = (2, 2, (3, 3));
        let t = trunk(c, f);
        let input = padded_input(c, grid);
        let fwd = t.forward(input.view(), grid);
        // Only cell 4 has a gradient above the threshold.
        let mut d = Array2::from_elem((9, f), 1e-7f32);
        d.row_mut(4).fill(1.0);
        let (mut dw_all, mut db_all) = (Array2::zeros((f, c * 9)), Array1::zeros(f));
        let (mut dw_active, mut db_active) = (Array2::zeros((f, c * 9)), Array1::zeros(f));
        t.backward(
            (input.view(), 3),
            &fwd,
            d.clone(),
            0.0,
            (&mut dw_all, &mut db_all),
        );
        t.backward(
            (input.view(), 3),
            &fwd,
            d,
            1e-3,
            (&mut dw_active, &mut db_active),
        );
        let diff = (&dw_all - &dw_active).mapv(f32::abs).sum();
        assert!(diff > 0.0 && diff < 1e-4, "{diff}");
        assert_ne!(dw_active, Array2::<f32>::zeros((f, c * 9)));
    }
}
