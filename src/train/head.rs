//! The trainable head: per level, a linear map from the frozen `F`-channel feature
//! of a cell to its class logits (a 1×1 convolution), optionally also to its box
//! logits; trained on cached features with AdamW on shuffled mini-batches of images.
//!
//! Losses, as NanoDet trains its head:
//! - **Quality focal loss** on every cell and class: `|y − σ(z)|² · BCE(σ(z), y)`,
//!   where `y` is the IoU target from [`super::assign`] (0 for negatives), summed
//!   and divided by the number of positive cells in the mini-batch.
//! - With `train_box`, **distribution focal loss** on the positives' box bins: for
//!   a target distance `t` (in strides) between bins `i` and `i+1`, cross-entropy
//!   towards `i` with weight `i+1−t` and towards `i+1` with weight `t−i`, scaled by
//!   0.25 and averaged over sides, plus NanoDet's GIoU loss of the decoded box
//!   (weight 2 times the quality target).
//!
//! With `--train-layers head` each level also has a [`Trunk`]: a trainable copy of
//! the 3×3 convolution that makes the feature, which only the trained classes read
//! (the class loss's gradient goes back through the class rows, the LeakyReLU and
//! the convolution; the neck stays frozen). Boxes still read the frozen feature.
//! By default a low-rank update of the copy trains, at the learning rate; with
//! `--trunk-rank 0` the whole copy does, at a tenth of it, so it stays near the
//! pretrained one it starts from. Neither has weight decay. With trunks, the
//! passes between refresh epochs cover only the cells [`hard_cells`] picks.
//!
//! A mini-batch's images are computed each on its own (shared among `--threads`
//! threads) and their gradients added in the batch's order, so the result does
//! not depend on the thread count.
//!
//! Validation after each epoch decodes the head's outputs exactly as `run` does
//! (DFL boxes, class-aware NMS) and scores them with COCO AP@0.5; training stops
//! when that has not improved for `patience` epochs, keeping the best epoch.

use std::borrow::Cow;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::TrainError;
use super::assign::LevelTargets;
use super::features::{ImageFeatures, LevelData};
use super::graph::LinearWeights;
use super::hard_cells::{self, CellMemory, CellPick};
use super::metrics::{self, ImageEval};
use super::trunk::{self, Trunk, TrunkForward};
use super::trunk_session::TrunkSession;
use crate::model::BBox;
use crate::model::Family;
use crate::model::classes::ClassFilter;
use crate::model::nanodet::Layout;

/// Hyper-parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainOptions {
    pub epochs: usize,
    /// Images per mini-batch (every cell of each image takes part).
    pub batch_images: usize,
    pub learning_rate: f32,
    /// Decoupled (AdamW) weight decay, on weights, not biases.
    pub weight_decay: f32,
    /// Epochs without a better validation AP@0.5 before stopping.
    pub patience: usize,
    pub seed: u64,
    /// Also fine-tune the box branch's final layer.
    pub train_box: bool,
    /// Augmented copies of each training image (their features cached too).
    pub augment: usize,
    /// Which layers train.
    pub train_layers: TrainLayers,
    /// The trunks' learning rate as a share of `learning_rate` (`--trunk-lr`).
    pub trunk_lr_scale: f32,
    /// The rank of the trunks' update (`--trunk-rank`); 0 trains them whole.
    pub trunk_rank: usize,
    /// Threads for the trunks' gradients (`--threads`; 0 means one per core).
    pub threads: usize,
}

/// The layers `retrain` trains (`--train-layers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainLayers {
    /// The final 1×1 class layer (and box layer with `--train-box`).
    #[default]
    Cls,
    /// Also the head's 3×3 convolution, as a copy only the trained classes read.
    Head,
}

impl crate::choice::Choice for TrainLayers {
    const ALL: &'static [Self] = &[Self::Cls, Self::Head];
    fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Head => "head",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Cls => "the final 1×1 class layer on frozen features (fast)",
            Self::Head => {
                "also the head's 3×3 convolution, copied for the trained classes (slower; kept classes unchanged)"
            }
        }
    }
}

/// The default rank of the trunks' update (`--trunk-rank`): on held-out shapes it
/// trained about as well as the whole copy, in 0.55 of the time (see the README).
pub const TRUNK_RANK: usize = 16;

/// The trunks' default learning rate as a share of the head's (`--trunk-lr`): a
/// low-rank update starts at zero and learns at the head's rate; a whole copy
/// starts from pretrained weights and moves ten times slower.
pub fn default_trunk_lr_scale(rank: usize) -> f32 {
    if rank == 0 { 0.1 } else { 1.0 }
}

/// One training or validation image: cached features, targets, and the truth in
/// source pixels (for AP).
pub struct Example<'a> {
    pub features: &'a ImageFeatures,
    pub targets: Vec<LevelTargets>,
    pub truth: Vec<(usize, BBox)>,
    /// Ignore regions, in source pixels (for AP).
    pub ignore: Vec<BBox>,
}

/// The head being trained: per level, class rows and box rows, and with
/// `--train-layers head` the class rows' own convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub classes: Vec<LinearWeights>,
    pub boxes: Vec<LinearWeights>,
    /// One per level, or none (the class rows read the frozen feature).
    pub trunks: Vec<Trunk>,
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f32,
    /// The share of the training images' cells the epoch's passes computed (below
    /// 1 between refreshes with trunks; see [`hard_cells`]).
    pub cells_computed: f32,
    pub val_loss: f32,
    /// Mean AP@0.5 over the trained classes with validation boxes.
    pub val_ap50: Option<f32>,
    /// The learning rate of the epoch's last step.
    pub learning_rate: f32,
    pub seconds: f32,
}

/// Where the warm-up and cosine schedule stands.
struct Schedule {
    base: f32,
    step: usize,
    total: usize,
    warmup: usize,
}

impl Schedule {
    /// One epoch of warm-up (at most a fifth of the run), then the cosine.
    fn new(base: f32, epochs: usize, steps_per_epoch: usize) -> Self {
        let total = epochs * steps_per_epoch;
        Self {
            base,
            step: 0,
            total,
            warmup: steps_per_epoch.min(total / 5).max(1),
        }
    }

    /// The next step's learning rate.
    fn next(&mut self) -> f32 {
        self.step += 1;
        scheduled_lr(self.base, self.step - 1, self.total, self.warmup)
    }
}

/// What training gives back.
pub struct Trained {
    pub head: Head,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    pub stopped_early: bool,
}

/// Quality focal loss (β = 2) of one logit `z` against a soft target `y`, and its
/// derivative with respect to `z`.
pub fn qfl(z: f32, y: f32) -> (f32, f32) {
    let p = 1.0 / (1.0 + (-z).exp());
    // BCE with logits, stable for large |z|.
    let bce = z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
    let d = p - y;
    (d * d * bce, 2.0 * d * p * (1.0 - p) * bce + d * d * d)
}

/// Distribution focal loss of one side's bin logits against a target distance in
/// bins; writes the gradient into `grad` and returns the loss.
pub fn dfl(logits: &[f32], target: f32, grad: &mut [f32]) -> f32 {
    let bins = logits.len();
    let t = target.clamp(0.0, bins as f32 - 1.0 - 1e-3);
    let i = t.floor() as usize;
    let (wl, wr) = (i as f32 + 1.0 - t, t - i as f32);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let log_softmax = |k: usize| logits[k] - max - sum.ln();
    for (k, g) in grad.iter_mut().enumerate() {
        *g = (logits[k] - max).exp() / sum;
    }
    grad[i] -= wl;
    grad[i + 1] -= wr;
    -(wl * log_softmax(i) + wr * log_softmax(i + 1))
}

const DFL_WEIGHT: f32 = 0.25;
/// Weight of the GIoU loss, per positive, times its quality target (NanoDet's 2).
const GIOU_WEIGHT: f32 = 2.0;

/// `1 − GIoU` of a predicted box against the truth; writes the gradient with
/// respect to the predicted corners into `grad`.
pub fn giou(pred: &BBox, gt: &BBox, grad: &mut [f32; 4]) -> f32 {
    let (pw, ph) = ((pred[2] - pred[0]).max(0.0), (pred[3] - pred[1]).max(0.0));
    let area_g = (gt[2] - gt[0]) * (gt[3] - gt[1]);
    let iw = pred[2].min(gt[2]) - pred[0].max(gt[0]);
    let ih = pred[3].min(gt[3]) - pred[1].max(gt[1]);
    let (iw, ih, overlaps) = (iw.max(0.0), ih.max(0.0), iw > 0.0 && ih > 0.0);
    let inter = iw * ih;
    let union = (pw * ph + area_g - inter).max(1e-6);
    let cw = pred[2].max(gt[2]) - pred[0].min(gt[0]);
    let ch = pred[3].max(gt[3]) - pred[1].min(gt[1]);
    let hull = (cw * ch).max(1e-6);
    // Per corner x1, y1, x2, y2: derivatives of the predicted area, the
    // intersection and the hull.
    let d_area = [-ph, -pw, ph, pw];
    let d_inter = [
        if overlaps && pred[0] > gt[0] {
            -ih
        } else {
            0.0
        },
        if overlaps && pred[1] > gt[1] {
            -iw
        } else {
            0.0
        },
        if overlaps && pred[2] < gt[2] { ih } else { 0.0 },
        if overlaps && pred[3] < gt[3] { iw } else { 0.0 },
    ];
    let d_hull = [
        if pred[0] < gt[0] { -ch } else { 0.0 },
        if pred[1] < gt[1] { -cw } else { 0.0 },
        if pred[2] > gt[2] { ch } else { 0.0 },
        if pred[3] > gt[3] { cw } else { 0.0 },
    ];
    for k in 0..4 {
        let d_union = d_area[k] - d_inter[k];
        grad[k] = -(d_inter[k] * union - inter * d_union) / (union * union)
            - (d_union * hull - union * d_hull[k]) / (hull * hull);
    }
    2.0 - inter / union - union / hull
}

/// Box losses of one positive cell (DFL per side, GIoU of the decoded box,
/// weighted by the cell's quality target); the cell's `4·bins` logits are
/// replaced by their gradient.
fn box_cell_loss(
    logits: &mut [f32],
    centre: (f32, f32),
    stride: f32,
    gt: &BBox,
    quality: f32,
) -> f32 {
    let bins = logits.len() / 4;
    let (cx, cy) = centre;
    let mut probs = vec![0.0f32; logits.len()];
    let mut expected = [0.0f32; 4];
    for (side, (chunk, p)) in logits
        .chunks_exact(bins)
        .zip(probs.chunks_exact_mut(bins))
        .enumerate()
    {
        let max = chunk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = chunk.iter().map(|&l| (l - max).exp()).sum();
        for (i, (pi, &l)) in p.iter_mut().zip(chunk).enumerate() {
            *pi = (l - max).exp() / sum;
            expected[side] += *pi * i as f32;
        }
    }
    let e = expected.map(|v| v * stride);
    let pred = [cx - e[0], cy - e[1], cx + e[2], cy + e[3]];
    let mut corner_grad = [0.0f32; 4];
    let mut loss = GIOU_WEIGHT * quality * giou(&pred, gt, &mut corner_grad);
    // d loss / d distance: x1 and y1 move against theirs.
    let d_distance = [
        -corner_grad[0],
        -corner_grad[1],
        corner_grad[2],
        corner_grad[3],
    ];
    let distances = [cx - gt[0], cy - gt[1], gt[2] - cx, gt[3] - cy];
    let mut grad = vec![0.0; bins];
    for (side, (chunk, p)) in logits
        .chunks_exact_mut(bins)
        .zip(probs.chunks_exact(bins))
        .enumerate()
    {
        loss += DFL_WEIGHT / 4.0 * dfl(chunk, distances[side] / stride, &mut grad);
        let g_expected = GIOU_WEIGHT * quality * d_distance[side] * stride;
        for (i, (c, g)) in chunk.iter_mut().zip(&grad).enumerate() {
            *c = DFL_WEIGHT / 4.0 * g + g_expected * p[i] * (i as f32 - expected[side]);
        }
    }
    loss
}

/// Learning rate at optimiser step `step` of `total`: a linear warm-up from a
/// tenth of `base` over `warmup` steps, then a half cosine down to a twentieth of
/// `base` at the last step.
pub fn scheduled_lr(base: f32, step: usize, total: usize, warmup: usize) -> f32 {
    if step < warmup {
        return base * (0.1 + 0.9 * step as f32 / warmup as f32);
    }
    let t = ((step - warmup) as f32 / (total.saturating_sub(warmup)).max(1) as f32).min(1.0);
    let floor = 0.05 * base;
    floor + (base - floor) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
}

/// AdamW over a list of tensors.
struct AdamW {
    lr: f32,
    weight_decay: f32,
    t: i32,
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(lr: f32, weight_decay: f32, sizes: &[usize]) -> Self {
        Self {
            lr,
            weight_decay,
            t: 0,
            moments: sizes
                .iter()
                .map(|&n| (vec![0.0; n], vec![0.0; n]))
                .collect(),
        }
    }

    /// One step; `rules[i]` says whether tensor `i` gets weight decay and its
    /// share of the learning rate.
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], rules: &[TensorRule]) {
        self.t += 1;
        let c1 = 1.0 - Self::B1.powi(self.t);
        let c2 = 1.0 - Self::B2.powi(self.t);
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = &mut self.moments[i];
            let wd = if rules[i].decay {
                self.weight_decay
            } else {
                0.0
            };
            let lr = self.lr * rules[i].lr_scale;
            for k in 0..p.len() {
                m[k] = Self::B1 * m[k] + (1.0 - Self::B1) * g[k];
                v[k] = Self::B2 * v[k] + (1.0 - Self::B2) * g[k] * g[k];
                let update = (m[k] / c1) / ((v[k] / c2).sqrt() + Self::EPS);
                p[k] -= lr * (update + wd * p[k]);
            }
        }
    }
}

/// How the optimiser treats one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TensorRule {
    decay: bool,
    lr_scale: f32,
}

/// Gradients of the whole head, shaped like it.
struct Grads {
    classes: Vec<(Array2<f32>, Array1<f32>)>,
    boxes: Vec<(Array2<f32>, Array1<f32>)>,
    /// Per level, one pair per tensor of [`Trunk::trained`].
    trunks: Vec<Vec<(Array2<f32>, Array1<f32>)>>,
}

impl Grads {
    fn zeros(head: &Head) -> Self {
        let z = |w: &LinearWeights| (Array2::zeros(w.weight.dim()), Array1::zeros(w.bias.len()));
        Self {
            classes: head.classes.iter().map(z).collect(),
            boxes: head.boxes.iter().map(z).collect(),
            trunks: head
                .trunks
                .iter()
                .map(|t| t.trained().into_iter().map(z).collect())
                .collect(),
        }
    }

    /// Adds `other` (the same shapes) to these.
    fn add(&mut self, other: &Grads) {
        let pairs = self
            .classes
            .iter_mut()
            .chain(&mut self.boxes)
            .chain(self.trunks.iter_mut().flatten())
            .zip(
                other
                    .classes
                    .iter()
                    .chain(&other.boxes)
                    .chain(other.trunks.iter().flatten()),
            );
        for ((w, b), (ow, ob)) in pairs {
            *w += ow;
            *b += ob;
        }
    }
}

/// One image's training or validation pass: the trunks' forward passes (none
/// without trunks) and, per level, the cells they covered (`None`: every cell).
pub struct ImagePass<'a> {
    pub example: &'a Example<'a>,
    pub forwards: &'a [TrunkForward],
    pub cells: Option<&'a [CellPick]>,
}

/// What one image's pass gives.
#[derive(Debug, Default)]
struct ImageLoss {
    /// Un-normalised.
    loss: f32,
    positives: usize,
    /// Per level, the highest class score of each cell the pass covered.
    scores: Vec<Vec<f32>>,
}

/// Quality focal loss of one level's class logits `z` (`[rows, classes]`; row `i`
/// is cell `pick.cells[i]`, weighted by `pick.weights[i]`, or cell `i` without a
/// pick), which are replaced by their gradient (zero in ignore regions); the
/// summed loss and each row's highest score.
fn class_loss(
    z: &mut Array2<f32>,
    targets: &LevelTargets,
    pick: Option<&CellPick>,
) -> (f32, Vec<f32>) {
    let mut loss = 0.0;
    let mut scores = Vec::with_capacity(z.nrows());
    for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
        let (cell, weight) = pick.map_or((i, 1.0), |p| (p.cells[i], p.weights[i]));
        let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scores.push(1.0 / (1.0 + (-top).exp()));
        if targets.ignored[cell] {
            row.fill(0.0);
            continue;
        }
        let target = targets.class[cell];
        for (k, v) in row.iter_mut().enumerate() {
            let y = if target == Some(k) {
                targets.quality[cell]
            } else {
                0.0
            };
            let (lo, d) = qfl(*v, y);
            loss += weight * lo;
            *v = weight * d;
        }
    }
    (loss, scores)
}

impl Head {
    /// The trunks' forward passes of `images` (per image, per level; empty lists
    /// without trunks), through `session` when given, else computed here.
    pub fn forwards(
        &self,
        layout: &Layout,
        images: &[&ImageFeatures],
        session: Option<&mut TrunkSession>,
    ) -> Result<Vec<Vec<TrunkForward>>, TrainError> {
        if self.trunks.is_empty() {
            return Ok(images.iter().map(|_| Vec::new()).collect());
        }
        let grids: Vec<(usize, usize)> = layout.strides.iter().map(|&s| layout.grid(s)).collect();
        let inputs = images
            .iter()
            .map(|f| {
                f.levels
                    .iter()
                    .map(|d| d.trunk_input.as_ref())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        TrainError::Invalid("features without the trunks' inputs".into())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(session) = session else {
            return Ok(inputs
                .iter()
                .zip(images)
                .map(|(levels, image)| {
                    (self
                        .trunks
                        .iter()
                        .zip(levels)
                        .zip(&grids)
                        .zip(&image.levels))
                    .map(|(((t, x), &grid), data)| t.forward(x.view(), grid, data.features.view()))
                    .collect()
                })
                .collect());
        };
        let conv = session.convolutions(&self.trunks, &inputs, &grids)?;
        Ok(conv
            .into_iter()
            .zip(images)
            .map(|(levels, image)| {
                (self.trunks.iter().zip(levels).zip(&image.levels))
                    .map(|((t, c), data)| t.from_convolution(c, data.features.view()))
                    .collect()
            })
            .collect())
    }

    /// The trunks' forward passes of one image over the given cells per level,
    /// computed here.
    fn forward_cells(
        &self,
        layout: &Layout,
        image: &ImageFeatures,
        cells: &[CellPick],
    ) -> Result<Vec<TrunkForward>, TrainError> {
        (self.trunks.iter().zip(&image.levels).zip(cells).enumerate())
            .map(|(l, ((trunk, data), cells))| {
                let input = data.trunk_input.as_ref().ok_or_else(|| {
                    TrainError::Invalid("features without the trunks' inputs".into())
                })?;
                let width = layout.grid(layout.strides[l]).0;
                let frozen = data.features.view();
                Ok(trunk.forward_cells((input.view(), width), &cells.cells, frozen))
            })
            .collect()
    }

    /// Class logits `[cells, classes]` of level `l` of one image; `forward` is the
    /// trunk's pass over it when there are trunks.
    pub fn level_class_logits(
        &self,
        l: usize,
        data: &LevelData,
        forward: Option<&TrunkForward>,
    ) -> Array2<f32> {
        match forward {
            Some(fwd) => self.class_logits(l, fwd.features.view()),
            None => self.class_logits(l, data.features.view()),
        }
    }

    fn class_logits(&self, level: usize, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let w = &self.classes[level];
        x.dot(&w.weight.t()) + &w.bias
    }

    fn box_logits(&self, level: usize, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let w = &self.boxes[level];
        x.dot(&w.weight.t()) + &w.bias
    }

    /// Loss of one image's pass (un-normalised), its positive count and the
    /// scores of the cells it covered; adds gradients to `grads` when given.
    fn image_loss(
        &self,
        layout: &Layout,
        pass: &ImagePass<'_>,
        train_box: bool,
        mut grads: Option<&mut Grads>,
    ) -> ImageLoss {
        let mut out = ImageLoss::default();
        let levels = pass.example.features.levels.iter();
        for (l, (data, targets)) in levels.zip(&pass.example.targets).enumerate() {
            let trunk = pass.forwards.get(l);
            let cells = pass.cells.map(|c| &c[l]);
            let x_cls = trunk.map_or(data.features.view(), |f| f.features.view());
            let mut z = self.class_logits(l, x_cls);
            out.positives += targets.positives();
            let (loss, scores) = class_loss(&mut z, targets, cells);
            out.loss += loss;
            out.scores.push(scores);
            if let Some(g) = grads.as_deref_mut() {
                let (dw, db) = &mut g.classes[l];
                general_mat_mul(1.0, &z.t(), &x_cls, 1.0, dw);
                *db += &z.sum_axis(Axis(0));
                if let (Some(fwd), Some(input)) = (trunk, &data.trunk_input) {
                    let d_features = z.dot(&self.classes[l].weight);
                    let width = layout.grid(layout.strides[l]).0;
                    self.trunks[l].backward(
                        (input.view(), width),
                        fwd,
                        d_features,
                        trunk::ACTIVE_GRADIENT,
                        &mut g.trunks[l],
                    );
                }
            }
            if train_box {
                let g = grads.as_deref_mut().map(|g| &mut g.boxes[l]);
                out.loss += self.box_loss(layout, l, (data, targets), g);
            }
        }
        out
    }

    /// Box losses of level `l`'s positive cells (the frozen feature feeds the box
    /// rows); adds the rows' gradients to `grads` when given.
    fn box_loss(
        &self,
        layout: &Layout,
        l: usize,
        (data, targets): (&LevelData, &LevelTargets),
        grads: Option<&mut (Array2<f32>, Array1<f32>)>,
    ) -> f32 {
        let positives: Vec<usize> = (0..targets.class.len())
            .filter(|&c| targets.class[c].is_some())
            .collect();
        if positives.is_empty() {
            return 0.0;
        }
        let x = data.features.select(Axis(0), &positives);
        let mut b = self.box_logits(l, x.view());
        let stride = layout.strides[l] as f32;
        let (grid_w, _) = layout.grid(layout.strides[l]);
        let mut loss = 0.0;
        for (&cell, mut row) in positives.iter().zip(b.axis_iter_mut(Axis(0))) {
            let Some(slice) = row.as_slice_mut() else {
                continue;
            };
            let centre = (
                ((cell % grid_w) as f32 + 0.5) * stride,
                ((cell / grid_w) as f32 + 0.5) * stride,
            );
            let (gt, quality) = (&targets.truth[cell], targets.quality[cell]);
            loss += box_cell_loss(slice, centre, stride, gt, quality);
        }
        if let Some((dw, db)) = grads {
            general_mat_mul(1.0, &b.t(), &x, 1.0, dw);
            *db += &b.sum_axis(Axis(0));
        }
        loss
    }

    /// Detections of one image in source pixels, decoded as `run` decodes.
    pub fn detect(
        &self,
        layout: &Layout,
        (features, forwards): (&ImageFeatures, &[TrunkForward]),
        train_box: bool,
        conf: f32,
        nms_iou: f32,
    ) -> Vec<crate::model::Detection> {
        let classes = self.classes.first().map_or(0, |w| w.bias.len());
        let layout = Layout {
            num_classes: classes,
            ..layout.clone()
        };
        let scores: Vec<Array2<f32>> = (features.levels.iter().enumerate())
            .map(|(l, data)| {
                self.level_class_logits(l, data, forwards.get(l))
                    .mapv(|v| 1.0 / (1.0 + (-v).exp()))
            })
            .collect();
        let tensors = match layout.family {
            Family::Nanodet => self.nanodet_outputs(features, scores, train_box),
            Family::Yolox => vec![yolox_output(features, &scores)],
        };
        let tensors: Vec<&[f32]> = tensors.iter().map(|t| &t[..]).collect();
        crate::model::detect(
            &layout,
            crate::model::FrameTensors::direct(&tensors),
            conf,
            &ClassFilter::All,
            (nms_iou, crate::model::COCO_MAX_DETECTIONS),
            features.size,
        )
    }

    /// NanoDet's output tensors: per level the class scores, then per level the
    /// box logits (frozen ones read in place, trained ones computed).
    fn nanodet_outputs<'f>(
        &self,
        features: &'f ImageFeatures,
        scores: Vec<Array2<f32>>,
        train_box: bool,
    ) -> Vec<Cow<'f, [f32]>> {
        let boxes = (features.levels.iter().enumerate()).map(|(l, data)| {
            if train_box {
                Cow::Owned(
                    self.box_logits(l, data.features.view())
                        .into_raw_vec_and_offset()
                        .0,
                )
            } else {
                match data.box_logits.as_slice() {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(data.box_logits.iter().copied().collect()),
                }
            }
        });
        (scores.into_iter())
            .map(|z| Cow::Owned(z.into_raw_vec_and_offset().0))
            .chain(boxes)
            .collect()
    }
    /// Detections and truth of every example, for the metrics, and the summed
    /// loss and positives (one trunk pass per image serves both).
    pub fn evaluate(
        &self,
        layout: &Layout,
        examples: &[Example<'_>],
        train_box: bool,
        mut session: Option<&mut TrunkSession>,
    ) -> Result<(Vec<ImageEval>, f32, usize), TrainError> {
        let (mut evals, mut loss, mut positives) = (Vec::new(), 0.0f32, 0usize);
        for chunk in examples.chunks(EVAL_BATCH) {
            let images: Vec<&ImageFeatures> = chunk.iter().map(|ex| ex.features).collect();
            let forwards = self.forwards(layout, &images, session.as_deref_mut())?;
            for (ex, fwd) in chunk.iter().zip(&forwards) {
                let pass = ImagePass {
                    example: ex,
                    forwards: fwd,
                    cells: None,
                };
                let result = self.image_loss(layout, &pass, train_box, None);
                loss += result.loss;
                positives += result.positives;
                evals.push(ImageEval {
                    detections: self
                        .detect(
                            layout,
                            (ex.features, fwd),
                            train_box,
                            EVAL_CONF,
                            EVAL_NMS_IOU,
                        )
                        .into_iter()
                        .map(|d| (d.class_id, d.score, d.bbox))
                        .collect(),
                    truth: ex.truth.clone(),
                    ignore: ex.ignore.clone(),
                });
            }
        }
        Ok((evals, loss, positives))
    }
}

/// YOLOX's one output tensor as a retrained model makes it (see
/// `graph::yolox`): per cell the frozen raw box, objectness 1, and the trained
/// classes' own scores.
fn yolox_output<'f>(features: &ImageFeatures, scores: &[Array2<f32>]) -> Cow<'f, [f32]> {
    let classes = scores.first().map_or(0, |z| z.ncols());
    let cells: usize = scores.iter().map(|z| z.nrows()).sum();
    let mut out = Vec::with_capacity(cells * (5 + classes));
    for (data, z) in features.levels.iter().zip(scores) {
        for (frozen, row) in data.box_logits.rows().into_iter().zip(z.rows()) {
            out.extend(frozen.iter().take(4));
            out.push(1.0);
            out.extend(row.iter());
        }
    }
    Cow::Owned(out)
}

/// Images per trunk forward batch in evaluation.
const EVAL_BATCH: usize = 8;

/// Score threshold for evaluation: low, so the precision-recall curve is complete.
pub const EVAL_CONF: f32 = 0.01;
/// NMS IoU for evaluation: `run`'s default (`defaults::IOU`), so that `eval` scores
/// what `run` reports. (NanoDet's own evaluation uses 0.6, YOLOX's 0.65.)
pub const EVAL_NMS_IOU: f32 = crate::config::defaults::IOU;

/// Mean AP@0.5 over classes that have ground truth in `images`.
pub fn mean_ap50(images: &[ImageEval], classes: usize) -> Option<f32> {
    let aps: Vec<f32> = (0..classes)
        .filter_map(|c| metrics::Curve::new(images, c, 0.5).average_precision())
        .collect();
    (!aps.is_empty()).then(|| aps.iter().sum::<f32>() / aps.len() as f32)
}

/// Trains `head` on `train`, validating on `val` after each epoch. `on_epoch` sees
/// each epoch's figures as they come. `session` runs the trunks' convolutions
/// (without it they are computed here, slowly).
pub fn train(
    mut head: Head,
    layout: &Layout,
    (train, val): (&[Example<'_>], &[Example<'_>]),
    options: &TrainOptions,
    mut session: Option<&mut TrunkSession>,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<Trained, TrainError> {
    let classes = head.classes.first().map_or(0, |w| w.bias.len());
    let (sizes, rules) = parameter_layout(&head, options);
    let mut adam = AdamW::new(options.learning_rate, options.weight_decay, &sizes);
    let steps_per_epoch = train.len().div_ceil(options.batch_images.max(1));
    let mut schedule = Schedule::new(options.learning_rate, options.epochs, steps_per_epoch);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut memory = cell_memory(&head, layout, train.len(), options.seed);
    let mut history = Vec::new();
    let mut best: Option<(f32, f32, usize, Head)> = None; // (ap, val loss, epoch, head)
    let mut stopped_early = false;
    for epoch in 1..=options.epochs {
        let started = std::time::Instant::now();
        order.shuffle(&mut rng);
        let sums = train_epoch(
            &mut head,
            layout,
            (train, &order),
            (options, &rules),
            (&mut adam, &mut schedule),
            (epoch, memory.as_mut()),
            session.as_deref_mut(),
        )?;
        let (val_loss, val_ap50) = validate(
            &head,
            layout,
            val,
            (options.train_box, classes),
            session.as_deref_mut(),
        )?;
        let stats = EpochStats {
            epoch,
            train_loss: sums.loss / sums.positives.max(1) as f32,
            cells_computed: sums.computed as f32 / sums.cells.max(1) as f32,
            val_loss,
            val_ap50,
            learning_rate: adam.lr,
            seconds: started.elapsed().as_secs_f32(),
        };
        on_epoch(&stats);
        history.push(stats);
        let ap = val_ap50.unwrap_or(0.0);
        let better = best
            .as_ref()
            .is_none_or(|(b_ap, b_loss, _, _)| ap > *b_ap || (ap == *b_ap && val_loss < *b_loss));
        if better {
            best = Some((ap, val_loss, epoch, head.clone()));
        } else if best
            .as_ref()
            .is_some_and(|b| epoch - b.2 >= options.patience)
        {
            stopped_early = epoch < options.epochs;
            break;
        }
    }
    Ok(match best {
        Some((_, _, best_epoch, best_head)) => Trained {
            head: best_head,
            history,
            best_epoch,
            stopped_early,
        },
        None => Trained {
            head,
            history,
            best_epoch: 0,
            stopped_early,
        },
    })
}

/// The memory of the training images' cells when `head` has trunks.
fn cell_memory(head: &Head, layout: &Layout, images: usize, seed: u64) -> Option<CellMemory> {
    let cells: Vec<usize> = layout.strides.iter().map(|&s| layout.cells(s)).collect();
    (!head.trunks.is_empty()).then(|| CellMemory::new(images, &cells, seed))
}

/// Per trained tensor (class heads, then box heads when trained, then trunks;
/// weight, then bias): its length and how the optimiser treats it.
fn parameter_layout(head: &Head, options: &TrainOptions) -> (Vec<usize>, Vec<TensorRule>) {
    let (mut sizes, mut rules) = (Vec::new(), Vec::new());
    let box_levels: &[LinearWeights] = if options.train_box { &head.boxes } else { &[] };
    let plain = |decay| TensorRule {
        decay,
        lr_scale: 1.0,
    };
    for w in head.classes.iter().chain(box_levels) {
        sizes.extend([w.weight.len(), w.bias.len()]);
        rules.extend([plain(true), plain(false)]);
    }
    let trunk = TensorRule {
        decay: false,
        lr_scale: options.trunk_lr_scale,
    };
    for w in head.trunks.iter().flat_map(Trunk::trained) {
        sizes.extend([w.weight.len(), w.bias.len()]);
        rules.extend([trunk, trunk]);
    }
    (sizes, rules)
}

/// What an epoch's passes add up to.
#[derive(Debug, Default)]
struct EpochSums {
    loss: f32,
    positives: usize,
    /// Cells the passes computed, and cells the images have.
    computed: usize,
    cells: usize,
}

/// One pass over `train` in `order`, a step per batch. With trunks, the passes of
/// an epoch that is not a refresh cover only the cells `memory` keeps (see
/// [`hard_cells`]), and every pass records its scores there.
fn train_epoch(
    head: &mut Head,
    layout: &Layout,
    (train, order): (&[Example<'_>], &[usize]),
    (options, rules): (&TrainOptions, &[TensorRule]),
    (adam, schedule): (&mut AdamW, &mut Schedule),
    (epoch, mut memory): (usize, Option<&mut CellMemory>),
    mut session: Option<&mut TrunkSession>,
) -> Result<EpochSums, TrainError> {
    let mut sums = EpochSums::default();
    let levels = layout.strides.len();
    for batch in order.chunks(options.batch_images.max(1)) {
        adam.lr = schedule.next();
        let jobs: Vec<Job> = match memory.as_deref_mut() {
            Some(memory) if !hard_cells::is_full_epoch(epoch) => (batch.iter())
                .map(|&image| Job {
                    image,
                    work: Work::Cells(
                        (0..levels)
                            .map(|l| memory.pick(image, l, &train[image].targets[l]))
                            .collect(),
                    ),
                })
                .collect(),
            _ => {
                let images: Vec<&ImageFeatures> =
                    batch.iter().map(|&i| train[i].features).collect();
                let forwards = head.forwards(layout, &images, session.as_deref_mut())?;
                (batch.iter().zip(forwards))
                    .map(|(&image, f)| Job {
                        image,
                        work: Work::Ready(f),
                    })
                    .collect()
            }
        };
        let (grads, done) = batch_gradients(
            head,
            layout,
            (train, jobs),
            (options.train_box, options.threads),
        )?;
        let mut positives = 0;
        for d in done {
            positives += d.loss.positives;
            sums.loss += d.loss.loss;
            for (l, scores) in d.loss.scores.iter().enumerate() {
                sums.computed += scores.len();
                sums.cells += layout.cells(layout.strides[l]);
                if let Some(m) = memory.as_deref_mut() {
                    let cells = d.cells.as_ref().map(|c| c[l].cells.as_slice());
                    m.record(d.image, l, cells, scores);
                }
            }
        }
        sums.positives += positives;
        step(
            head,
            &grads,
            1.0 / positives.max(1) as f32,
            options.train_box,
            adam,
            rules,
        );
    }
    Ok(sums)
}

/// One training image's pass in a mini-batch.
struct Job {
    image: usize,
    work: Work,
}

/// A pass's trunk forward passes: computed for the whole batch over every cell,
/// or to compute by the worker that takes the job, over these cells per level.
enum Work {
    Ready(Vec<TrunkForward>),
    Cells(Vec<CellPick>),
}

/// A finished job.
struct Done {
    image: usize,
    /// The cells per level the pass covered (`None`: every cell).
    cells: Option<Vec<CellPick>>,
    loss: ImageLoss,
}

/// Gradients of one mini-batch and each job's result, in the batch's order. Each
/// image's gradients are computed on their own, the images shared among
/// `threads` threads, and added up in the batch's order, so the result does not
/// depend on the thread count.
fn batch_gradients(
    head: &Head,
    layout: &Layout,
    (train, jobs): (&[Example<'_>], Vec<Job>),
    (train_box, threads): (bool, usize),
) -> Result<(Grads, Vec<Done>), TrainError> {
    let one = |job: Job| -> Result<(Grads, Done), TrainError> {
        let example = &train[job.image];
        let (forwards, cells) = match job.work {
            Work::Ready(f) => (f, None),
            Work::Cells(cells) => (
                head.forward_cells(layout, example.features, &cells)?,
                Some(cells),
            ),
        };
        let pass = ImagePass {
            example,
            forwards: &forwards,
            cells: cells.as_deref(),
        };
        let mut grads = Grads::zeros(head);
        let loss = head.image_loss(layout, &pass, train_box, Some(&mut grads));
        let image = job.image;
        Ok((grads, Done { image, cells, loss }))
    };
    let one = &one;
    let workers = crate::infer::session::resolve_threads(threads).clamp(1, jobs.len().max(1));
    let per_image: Vec<Result<(Grads, Done), TrainError>> = if workers < 2 {
        jobs.into_iter().map(one).collect()
    } else {
        let per_worker = jobs.len().div_ceil(workers);
        let mut chunks: Vec<Vec<Job>> = Vec::new();
        for job in jobs {
            match chunks.last_mut() {
                Some(c) if c.len() < per_worker => c.push(job),
                _ => chunks.push(vec![job]),
            }
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (chunks.into_iter())
                .map(|chunk| scope.spawn(move || chunk.into_iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut total = Grads::zeros(head);
    let mut done = Vec::with_capacity(per_image.len());
    for result in per_image {
        let (g, d) = result?;
        total.add(&g);
        done.push(d);
    }
    Ok((total, done))
}

/// One AdamW step on the trained tensors with the gradients scaled by `scale`.
fn step(
    head: &mut Head,
    grads: &Grads,
    scale: f32,
    train_box: bool,
    adam: &mut AdamW,
    rules: &[TensorRule],
) {
    let mut params: Vec<&mut [f32]> = Vec::new();
    let mut g: Vec<Vec<f32>> = Vec::new();
    let boxes = if train_box {
        head.boxes.iter_mut().zip(&grads.boxes).collect()
    } else {
        Vec::new()
    };
    let trunks = head
        .trunks
        .iter_mut()
        .flat_map(Trunk::trained_mut)
        .zip(grads.trunks.iter().flatten());
    for (w, (dw, db)) in head
        .classes
        .iter_mut()
        .zip(&grads.classes)
        .chain(boxes)
        .chain(trunks)
    {
        g.push(dw.iter().map(|v| v * scale).collect());
        g.push(db.iter().map(|v| v * scale).collect());
        params.push(w.weight.as_slice_mut().expect("weights are contiguous"));
        params.push(w.bias.as_slice_mut().expect("bias is contiguous"));
    }
    let grad_refs: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
    adam.step(&mut params, &grad_refs, rules);
}

/// Validation loss per positive and mean AP@0.5 of `head` on `val`.
fn validate(
    head: &Head,
    layout: &Layout,
    val: &[Example<'_>],
    (train_box, classes): (bool, usize),
    session: Option<&mut TrunkSession>,
) -> Result<(f32, Option<f32>), TrainError> {
    let (evals, val_loss, val_pos) = head.evaluate(layout, val, train_box, session)?;
    Ok((val_loss / val_pos.max(1) as f32, mean_ap50(&evals, classes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qfl_gradient_matches_finite_differences() {
        for &(z, y) in &[
            (-3.0f32, 0.0f32),
            (0.5, 0.8),
            (2.0, 0.3),
            (4.0, 1.0),
            (-1.0, 0.6),
        ] {
            let (_, d) = qfl(z, y);
            let h = 1e-3;
            let numeric = (qfl(z + h, y).0 - qfl(z - h, y).0) / (2.0 * h);
            assert!((d - numeric).abs() < 1e-3, "z={z} y={y}: {d} vs {numeric}");
        }
        // Zero loss where the prediction equals the target.
        let z = (0.7f32 / 0.3).ln();
        assert!(qfl(z, 0.7).0.abs() < 1e-8);
    }

    /// The central difference of `f` along coordinate `k` of `x`, with step `h`.
    fn numeric_gradient(x: &[f32], k: usize, h: f32, mut f: impl FnMut(&mut [f32]) -> f32) -> f32 {
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[k] += h;
        down[k] -= h;
        (f(&mut up) - f(&mut down)) / (2.0 * h)
    }

    #[test]
    fn dfl_gradient_matches_finite_differences() {
        let logits = [0.3f32, -1.0, 2.0, 0.5];
        let mut grad = [0.0; 4];
        let loss = dfl(&logits, 1.25, &mut grad);
        assert!(loss > 0.0);
        let mut scratch = [0.0; 4];
        for (k, analytic) in grad.iter().enumerate() {
            let numeric = numeric_gradient(&logits, k, 1e-3, |x| dfl(x, 1.25, &mut scratch));
            assert!(
                (analytic - numeric).abs() < 1e-3,
                "bin {k}: {analytic} vs {numeric}"
            );
        }
    }

    #[test]
    fn giou_of_known_boxes_and_its_gradient() {
        let mut g = [0.0; 4];
        assert!(giou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0], &mut g).abs() < 1e-6);
        // Apart: IoU 0, hull 20×10 = 200, union 200: 1 - (0 - 0) = 1.
        let far = giou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 0.0, 20.0, 10.0], &mut g);
        assert!((far - 1.0).abs() < 1e-6, "{far}");
        let gt = [3.0, 2.0, 14.0, 17.0];
        for pred in [
            [1.0, 4.0, 12.0, 15.0],
            [5.0, 1.0, 16.0, 19.0],
            [20.0, 20.0, 25.0, 30.0],
        ] {
            giou(&pred, &gt, &mut g);
            let mut scratch = [0.0; 4];
            for (k, analytic) in g.iter().enumerate() {
                let numeric = numeric_gradient(&pred, k, 1e-2, |x| {
                    let corners: [f32; 4] = (&*x).try_into().expect("four corners");
                    giou(&corners, &gt, &mut scratch)
                });
                assert!(
                    (numeric - analytic).abs() < 1e-3,
                    "{pred:?} corner {k}: {numeric} vs {analytic}"
                );
            }
        }
    }

    #[test]
    fn box_cell_gradient_matches_finite_differences() {
        let bins = 5;
        let logits: Vec<f32> = (0..4 * bins)
            .map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let (centre, stride, gt, q) = ((40.0, 36.0), 8.0, [30.0, 20.0, 55.0, 60.0], 0.7);
        let mut analytic = logits.clone();
        box_cell_loss(&mut analytic, centre, stride, &gt, q);
        for (k, analytic) in analytic.iter().enumerate() {
            let numeric = numeric_gradient(&logits, k, 1e-2, |x| {
                box_cell_loss(x, centre, stride, &gt, q)
            });
            assert!(
                (numeric - analytic).abs() < 2e-3,
                "logit {k}: {numeric} vs {analytic}"
            );
        }
    }

    #[test]
    fn the_schedule_warms_up_then_decays_by_a_cosine() {
        let lr = |step| scheduled_lr(1.0, step, 100, 10);
        assert!((lr(0) - 0.1).abs() < 1e-6);
        assert!((lr(5) - 0.55).abs() < 1e-6);
        assert!((lr(10) - 1.0).abs() < 1e-6);
        assert!((lr(55) - 0.525).abs() < 1e-5, "half way down: {}", lr(55));
        assert!((lr(100) - 0.05).abs() < 1e-6);
        assert!((1..100).all(|s| s <= 10 || lr(s) <= lr(s - 1)));
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let mut p = vec![5.0f32, -3.0];
        let mut adam = AdamW::new(0.1, 0.0, &[2]);
        for _ in 0..500 {
            let g: Vec<f32> = p.iter().map(|v| 2.0 * (v - 1.0)).collect();
            let rule = TensorRule {
                decay: false,
                lr_scale: 1.0,
            };
            adam.step(&mut [p.as_mut_slice()], &[g.as_slice()], &[rule]);
        }
        assert!(p.iter().all(|v| (v - 1.0).abs() < 1e-2), "{p:?}");
    }

    /// A toy problem: 4×4 cells of stride 8, 4-d features; the object's cell has
    /// feature 0 lit. Every cell's frozen box is ±1 bin (16×16 around its centre).
    type Toy = (Layout, Vec<ImageFeatures>, Vec<Vec<(usize, BBox)>>);

    fn toy(seed: u64, images: usize) -> Toy {
        let layout = Layout {
            family: crate::model::Family::Nanodet,
            resize: crate::model::geometry::Resize::Stretch,
            input_size: (32, 32),
            strides: vec![8],
            bins: 3,
            num_classes: 1,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut feats = Vec::new();
        let mut truth = Vec::new();
        for _ in 0..images {
            let cell = rand::Rng::random_range(&mut rng, 0..16usize);
            let mut f = Array2::<f32>::zeros((16, 4));
            for v in f.iter_mut() {
                *v = rand::Rng::random_range(&mut rng, -0.3..0.3);
            }
            f[[cell, 0]] = 1.0;
            let mut b = Array2::<f32>::zeros((16, 12));
            for c in 0..16 {
                for side in 0..4 {
                    b[[c, side * 3 + 1]] = 50.0;
                }
            }
            let (cx, cy) = ((cell % 4) as f32 * 8.0 + 4.0, (cell / 4) as f32 * 8.0 + 4.0);
            feats.push(ImageFeatures {
                levels: vec![LevelData {
                    features: f,
                    box_logits: b,
                    trunk_input: None,
                }],
                size: (32, 32),
            });
            truth.push(vec![(0, [cx - 8.0, cy - 8.0, cx + 8.0, cy + 8.0])]);
        }
        (layout, feats, truth)
    }

    fn examples<'a>(
        layout: &Layout,
        feats: &'a [ImageFeatures],
        truth: &[Vec<(usize, BBox)>],
    ) -> Vec<Example<'a>> {
        feats
            .iter()
            .zip(truth)
            .map(|(f, t)| {
                let logits = f.levels[0].box_logits.as_slice().unwrap();
                Example {
                    features: f,
                    targets: crate::train::assign::assign(layout, &[logits], t, &[]),
                    truth: t.clone(),
                    ignore: Vec::new(),
                }
            })
            .collect()
    }

    #[test]
    fn learns_a_separable_class_and_is_deterministic() {
        let (layout, feats, truth) = toy(1, 40);
        let all = examples(&layout, &feats, &truth);
        let (tr, va) = all.split_at(30);
        let start = || Head {
            classes: vec![LinearWeights {
                weight: Array2::zeros((1, 4)),
                bias: Array1::from_elem(1, -4.6),
            }],
            boxes: vec![LinearWeights {
                weight: Array2::zeros((12, 4)),
                bias: Array1::zeros(12),
            }],
            trunks: Vec::new(),
        };
        let options = TrainOptions {
            epochs: 40,
            batch_images: 4,
            learning_rate: 0.05,
            weight_decay: 1e-4,
            patience: 40,
            seed: 7,
            train_box: false,
            augment: 0,
            train_layers: TrainLayers::Cls,
            trunk_lr_scale: default_trunk_lr_scale(0),
            trunk_rank: 0,
            threads: 1,
        };
        let a = train(start(), &layout, (tr, va), &options, None, |_| {}).unwrap();
        let b = train(start(), &layout, (tr, va), &options, None, |_| {}).unwrap();
        assert_eq!(a.head, b.head, "same seed, same result");
        let best = a.history[a.best_epoch - 1].val_ap50.unwrap();
        assert!(best > 0.95, "validation AP@0.5 {best}");
        assert!(a.history.last().unwrap().train_loss < a.history[0].train_loss);
        let c = train(
            start(),
            &layout,
            (tr, va),
            &TrainOptions {
                seed: 8,
                ..options.clone()
            },
            None,
            |_| {},
        )
        .unwrap();
        assert_ne!(a.head, c.head, "another seed shuffles differently");
    }

    /// The toy's first image with a trunk: a 2-channel padded input whose
    /// convolution (2 → 4 channels) feeds the class row.
    fn toy_with_trunk() -> (Layout, ImageFeatures, Vec<(usize, BBox)>, Head) {
        let (layout, mut feats, mut truth) = toy(3, 1);
        let input = Array2::from_shape_fn((2, 36), |(c, i)| {
            let (x, y) = (i % 6, i / 6);
            if x == 0 || y == 0 || x == 5 || y == 5 {
                0.0
            } else {
                ((c * 5 + x * 3 + y * 7) % 9) as f32 / 9.0 - 0.3
            }
        });
        feats[0].levels[0].trunk_input = Some(input);
        let trunk = Trunk {
            weights: LinearWeights {
                weight: Array2::from_shape_fn((4, 18), |(o, i)| {
                    ((o * 7 + i * 3) % 5) as f32 * 0.2 - 0.4
                }),
                bias: Array1::from_shape_fn(4, |o| o as f32 * 0.1 - 0.15),
            },
            shape: crate::train::graph::TrunkShape {
                channels: 2,
                kernel: 3,
                alpha: 0.1,
            },
            update: None,
        };
        let head = Head {
            classes: vec![LinearWeights {
                weight: Array2::from_shape_fn((1, 4), |(_, i)| i as f32 * 0.5 - 0.7),
                bias: Array1::from_elem(1, -1.0),
            }],
            boxes: vec![LinearWeights {
                weight: Array2::zeros((12, 4)),
                bias: Array1::zeros(12),
            }],
            trunks: vec![trunk],
        };
        (layout, feats.remove(0), truth.remove(0), head)
    }

    /// The toy with trunks on `images` images: each padded input marks its
    /// object's cell on channel 0 (the frozen feature is not what the class row
    /// reads now); the class row starts at zero.
    fn toy_with_trunks(images: usize) -> (Toy, Head) {
        let (layout, mut feats, truth) = toy(5, images);
        let (_, _, _, mut head) = toy_with_trunk();
        head.classes[0].weight.fill(0.0);
        for (f, t) in feats.iter_mut().zip(&truth) {
            let (cx, cy) = (
                ((t[0].1[0] + 8.0) / 8.0) as usize,
                ((t[0].1[1] + 8.0) / 8.0) as usize,
            );
            let input = Array2::from_shape_fn((2, 36), |(c, i)| {
                let (x, y) = (i % 6, i / 6);
                if x == 0 || y == 0 || x == 5 || y == 5 {
                    0.0
                } else if c == 0 && (x, y) == (cx + 1, cy + 1) {
                    1.0
                } else {
                    ((c * 5 + x * 3 + y * 7) % 9) as f32 / 90.0
                }
            });
            f.levels[0].trunk_input = Some(input);
        }
        ((layout, feats, truth), head)
    }

    #[test]
    fn epochs_between_refreshes_compute_fewer_cells_and_still_learn() {
        let ((layout, feats, truth), head) = toy_with_trunks(40);
        let all = examples(&layout, &feats, &truth);
        let (tr, va) = all.split_at(30);
        let options = TrainOptions {
            epochs: 12,
            batch_images: 4,
            learning_rate: 0.05,
            weight_decay: 0.0,
            patience: 12,
            seed: 7,
            train_box: false,
            augment: 0,
            train_layers: TrainLayers::Head,
            trunk_lr_scale: 1.0,
            trunk_rank: 0,
            threads: 2,
        };
        let run = |threads| {
            let options = TrainOptions {
                threads,
                ..options.clone()
            };
            train(head.clone(), &layout, (tr, va), &options, None, |_| {}).unwrap()
        };
        let a = run(2);
        let computed: Vec<f32> = a.history.iter().map(|h| h.cells_computed).collect();
        assert_eq!((computed[0], computed[8]), (1.0, 1.0), "{computed:?}");
        // Once the background is learnt, the passes between refreshes skip most of it.
        let between = computed[5..8].iter().chain(&computed[9..]);
        assert!(between.into_iter().all(|&c| c < 0.5), "{computed:?}");
        let best = a.history[a.best_epoch - 1].val_ap50.unwrap();
        assert!(best > 0.9, "validation AP@0.5 {best}");
        assert!(a.history[11].train_loss < a.history[0].train_loss);
        assert_eq!(run(1).head, a.head, "the thread count changes nothing");
    }

    #[test]
    fn trunk_gradient_through_the_class_loss_matches_finite_differences() {
        let (layout, feats, truth, full) = toy_with_trunk();
        let mut low = full.clone();
        let mut rng = <ChaCha8Rng as SeedableRng>::seed_from_u64(3);
        let t = &low.trunks[0];
        low.trunks[0] = Trunk::low_rank(t.weights.clone(), t.shape, 2, &mut rng);
        if let Some(u) = &mut low.trunks[0].update {
            u.up.weight
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 0.1 * i as f32 - 0.3);
        }
        let ex = &examples(&layout, std::slice::from_ref(&feats), &[truth])[0];
        // Weights with a clear gradient: most of the whole copy's 4×18, fewer of
        // the rank-2 update's (its `up` rows see only two channels).
        for (head, enough) in [(full, 20), (low, 10)] {
            let mut grads = Grads::zeros(&head);
            let fwd = |h: &Head| h.forwards(&layout, &[&feats], None).unwrap().remove(0);
            let loss_of = |h: &Head, grads: Option<&mut Grads>| {
                let forwards = fwd(h);
                let pass = ImagePass {
                    example: ex,
                    forwards: &forwards,
                    cells: None,
                };
                h.image_loss(&layout, &pass, false, grads).loss
            };
            loss_of(&head, Some(&mut grads));
            let loss = |h: &Head| f64::from(loss_of(h, None));
            let h = 1e-2f32;
            let mut checked = 0;
            for (k, (dw, db)) in grads.trunks[0].iter().enumerate() {
                let numeric = |i: usize, bias: bool| {
                    let (mut up, mut down) = (head.clone(), head.clone());
                    for (t, by) in [(&mut up, h), (&mut down, -h)] {
                        let w = &mut t.trunks[0].trained_mut()[k];
                        let v = if bias {
                            &mut w.bias[i]
                        } else {
                            &mut w.weight.as_slice_mut().unwrap()[i]
                        };
                        *v += by;
                    }
                    (loss(&up) - loss(&down)) / (2.0 * f64::from(h))
                };
                for (i, &g) in dw.iter().enumerate() {
                    let n = numeric(i, false);
                    let g = f64::from(g);
                    assert!(
                        (g - n).abs() < 2e-3 + 0.02 * n.abs(),
                        "{k} w[{i}]: {g} vs {n}"
                    );
                    checked += usize::from(n.abs() > 1e-3);
                }
                for (i, &g) in db.iter().enumerate() {
                    let n = numeric(i, true);
                    assert!(
                        (f64::from(g) - n).abs() < 2e-3 + 0.02 * n.abs(),
                        "{k} b[{i}]"
                    );
                }
            }
            assert!(checked > enough, "only {checked} weights have a gradient");
            // The class rows read the trunk's feature, not the frozen one.
            let frozen = head.class_logits(0, feats.levels[0].features.view());
            let trunk = &fwd(&head)[0];
            assert_ne!(
                head.level_class_logits(0, &feats.levels[0], Some(trunk)),
                frozen
            );
        }
    }
}
