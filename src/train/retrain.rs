//! `retrain`: from a validated plan to a model folder.
//!
//! Order of work: check the classes and the graph (cheap, before any inference),
//! split train/validation by the seed, extract features once, assign targets,
//! train, then export into `OUT.partial/` — the ONNX model, its manifest, the
//! report (JSON), the plot (PNG) and the list of skipped items — load the exported
//! model through the same checks `run` applies, compare its class scores on a
//! validation image with the trained head's, and only then rename the folder to
//! `OUT`. A failure at any step leaves no `OUT`.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, s};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TrainError;
use super::assign::assign;
use super::augment::Augmentation;
use super::dataset::{Dataset, Sample};
use super::features::{FeatureExtractor, ImageFeatures};
use super::graph::{ClassBranch, HeadGraph, LinearWeights};
use super::head::{self, EpochStats, Example, Head, TrainLayers, TrainOptions};
use super::metrics::{self, Curve};
use super::report::{self, PrCurve};
use super::trunk::Trunk;
use super::trunk_session::TrunkSession;
use crate::config::Manifest;
use crate::infer::{Detector, RuntimeOptions};
use crate::model::BBox;

/// Everything `retrain` needs, validated by the CLI.
pub struct RetrainPlan {
    pub dataset: Dataset,
    pub base: Manifest,
    /// Output folder (must not exist).
    pub out: PathBuf,
    /// Model name: the file stem of the ONNX file and manifest in `out`.
    pub name: String,
    /// Pretrained classes to carry over unchanged unless the data trains them.
    pub keep: Vec<String>,
    pub options: TrainOptions,
    /// Share of images held out for validation.
    pub val_fraction: f32,
    pub runtime: RuntimeOptions,
    /// Images per feature-extraction batch.
    pub batch: usize,
    /// Show progress bars (stderr is a terminal).
    pub progress: bool,
}

/// Where each output class's weights come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSource {
    /// Trained on the data; `pretrained` when it started from the base model's class.
    Trained { pretrained: bool },
    /// Copied unchanged from the base model.
    Kept,
}

/// Final figures of one trained class on the validation images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassMetrics {
    pub label: String,
    pub val_boxes: usize,
    pub ap50: Option<f32>,
    pub ap50_95: Option<f32>,
}

/// What `retrain` did (also written as `report.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetrainReport {
    pub model: PathBuf,
    pub manifest: PathBuf,
    pub base_model: String,
    pub labels: Vec<String>,
    pub sources: Vec<ClassSource>,
    pub options: TrainOptions,
    pub train_images: usize,
    pub val_images: usize,
    pub skipped: Vec<super::dataset::Skipped>,
    pub feature_seconds: f32,
    /// Augmented copies trained on besides the training images.
    pub augmented_images: usize,
    pub feature_images_per_second: f32,
    pub train_seconds: f32,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochStats>,
    pub classes: Vec<ClassMetrics>,
    /// Largest difference between the exported model's class scores and the
    /// trained head's, on one validation image.
    pub export_max_score_diff: f32,
    pub peak_memory_mib: Option<f32>,
}

/// The classes of the new model: `labels[i]` comes from `sources[i]`; `trained`
/// are the data's classes, in data order (the trained head's rows).
struct ClassPlan {
    labels: Vec<String>,
    sources: Vec<ClassSource>,
    trained: Vec<String>,
}

/// Output classes and where each comes from.
fn plan_classes(plan: &RetrainPlan) -> Result<ClassPlan, TrainError> {
    let trained = plan.dataset.labels();
    if trained.is_empty() {
        return Err(TrainError::Invalid(format!(
            "data set {} has images but no usable boxes; nothing to train",
            plan.dataset.path.display()
        )));
    }
    let mut labels = Vec::new();
    let mut sources = Vec::new();
    for k in &plan.keep {
        if !plan.base.labels.contains(k) {
            return Err(TrainError::Invalid(format!(
                "--keep-classes: {k:?} is not a class of {} (it has {})",
                plan.base.name,
                plan.base.labels.join(", ")
            )));
        }
        if !labels.contains(k) {
            labels.push(k.clone());
            sources.push(if trained.contains(k) {
                ClassSource::Trained { pretrained: true }
            } else {
                ClassSource::Kept
            });
        }
    }
    for t in &trained {
        if !labels.contains(t) {
            labels.push(t.clone());
            sources.push(ClassSource::Trained {
                pretrained: plan.base.labels.contains(t),
            });
        }
    }
    Ok(ClassPlan {
        labels,
        sources,
        trained,
    })
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_memory_mib() -> Option<f32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f32 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn progress_bar(show: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Ground truth of one sample as `(trained class index, box)`, in source pixels.
fn truth_of(sample: &Sample, trained: &[String]) -> Vec<(usize, BBox)> {
    sample
        .annotations
        .iter()
        .filter_map(|a| {
            trained
                .iter()
                .position(|t| *t == a.label)
                .map(|c| (c, a.bbox))
        })
        .collect()
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|source| TrainError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Shuffles `0..n` by `seed` and splits off `fraction` of it (at least one, and
/// one left to train) for validation: `(validation, training)`. No split when
/// `fraction` is 0 or there is a single image.
fn split(n: usize, fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_val = if n < 2 || fraction <= 0.0 {
        0
    } else {
        ((n as f32 * fraction).round() as usize).clamp(1, n - 1)
    };
    let train = order.split_off(n_val);
    (order, train)
}

/// Per level, a copy of the pretrained head convolution, with a fresh low-rank
/// update unless `--trunk-rank 0` (its own random stream, so the class rows start
/// the same whatever the rank). An update needs an invertible activation (a
/// LeakyReLU slope above 0) and a rank below the convolution's width.
fn initial_trunks(
    graph: &HeadGraph,
    levels: usize,
    options: &TrainOptions,
) -> Result<Vec<Trunk>, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x10_4a4c);
    let mut trunks = Vec::with_capacity(levels);
    for l in 0..levels {
        let (weights, shape) = graph.pretrained_trunk(l)?;
        let (width, inputs) = weights.weight.dim();
        let rank = options.trunk_rank;
        if inputs == 0 || width == 0 {
            return Err(TrainError::Invalid(format!(
                "level {l}: the head convolution has an empty weight [{width}, {inputs}]"
            )));
        }
        if rank == 0 {
            trunks.push(Trunk::full(weights, shape));
            continue;
        }
        if rank >= width {
            return Err(TrainError::Invalid(format!(
                "--trunk-rank {rank} is not below the head convolution's {width} channels; \
                 use --trunk-rank 0 to train the whole copy"
            )));
        }
        if !(shape.alpha.is_finite() && shape.alpha > 0.0) {
            return Err(TrainError::Invalid(format!(
                "level {l}: the head's LeakyReLU slope {} cannot be inverted, which a \
                 low-rank update needs; use --trunk-rank 0",
                shape.alpha
            )));
        }
        trunks.push(Trunk::low_rank(weights, shape, rank, &mut rng));
    }
    Ok(trunks)
}

/// The head training starts from, and the pretrained head of each level. Classes
/// with a pretrained name start from its row; new ones from small random weights
/// and a 1% prior. The box rows start pretrained.
fn initial_head(
    graph: &HeadGraph,
    base_labels: &[String],
    trained: &[String],
    levels: usize,
    options: &TrainOptions,
) -> Result<(Head, Vec<LinearWeights>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x5eed);
    let prior_bias = -((1.0f32 - 0.01) / 0.01).ln();
    let mut head = Head {
        classes: Vec::new(),
        boxes: Vec::new(),
        trunks: Vec::new(),
    };
    if options.train_layers == TrainLayers::Head {
        head.trunks = initial_trunks(graph, levels, options)?;
    }
    let mut pretrained = Vec::new();
    for l in 0..levels {
        let pre = graph.pretrained(l)?;
        let mut w = Array2::<f32>::zeros((trained.len(), pre.weight.ncols()));
        let mut b = Array1::<f32>::from_elem(trained.len(), prior_bias);
        for (k, label) in trained.iter().enumerate() {
            match base_labels.iter().position(|x| x == label) {
                Some(base) => {
                    w.row_mut(k).assign(&pre.weight.row(base));
                    b[k] = pre.bias[base];
                }
                None => w
                    .row_mut(k)
                    .iter_mut()
                    .for_each(|v| *v = rng.random_range(-0.01..0.01)),
            }
        }
        head.classes.push(LinearWeights { weight: w, bias: b });
        head.boxes.push(LinearWeights {
            weight: pre.weight.slice(s![base_labels.len().., ..]).to_owned(),
            bias: pre.bias.slice(s![base_labels.len()..]).to_owned(),
        });
        pretrained.push(pre);
    }
    Ok((head, pretrained))
}

/// The trunks' inputs have the shape their convolutions need: `C` channels over
/// the grid padded by `k − 1` (a graph that pads otherwise is refused here, not
/// half-way through training).
fn check_trunk_inputs(
    head: &Head,
    layout: &crate::model::nanodet::Layout,
    features: &[ImageFeatures],
) -> Result<(), TrainError> {
    let Some(first) = features.first() else {
        return Ok(());
    };
    for (l, (trunk, data)) in head.trunks.iter().zip(&first.levels).enumerate() {
        let (w, h) = layout.grid(layout.strides[l]);
        let want = (
            trunk.shape.channels,
            (w + trunk.shape.kernel - 1) * (h + trunk.shape.kernel - 1),
        );
        let got = data.trunk_input.as_ref().map(|x| x.dim());
        if got != Some(want) {
            return Err(TrainError::Invalid(format!(
                "level {l}: the head convolution's input is {got:?}, expected {want:?} \
                 (C × the {w}×{h} grid padded by {}); --train-layers head cannot train this model",
                trunk.shape.kernel - 1
            )));
        }
        let feature = (w * h, trunk.weights.bias.len());
        if data.features.dim() != feature {
            return Err(TrainError::Invalid(format!(
                "level {l}: the head feature is {:?}, expected {feature:?} (cells × the \
                 convolution's outputs); --train-layers head cannot train this model",
                data.features.dim()
            )));
        }
    }
    Ok(())
}

/// Per level, the exported head: a row per output class (trained, or copied from
/// the pretrained head), then the box rows. With trunks, the trained classes'
/// rows are zero here and live in the class branch ([`export_branches`]).
fn export_heads(
    head: &Head,
    pretrained: &[LinearWeights],
    classes: &ClassPlan,
    base_labels: &[String],
) -> Vec<LinearWeights> {
    let n = classes.labels.len();
    let branched = !head.trunks.is_empty();
    pretrained
        .iter()
        .zip(head.classes.iter().zip(&head.boxes))
        .map(|(pre, (cls, boxes))| {
            let rows = n + boxes.bias.len();
            let mut w = Array2::<f32>::zeros((rows, pre.weight.ncols()));
            let mut b = Array1::<f32>::zeros(rows);
            for (r, label) in classes.labels.iter().enumerate() {
                let (src_w, src_b, k) = match classes.trained.iter().position(|t| t == label) {
                    Some(_) if branched => continue,
                    Some(k) => (&cls.weight, &cls.bias, k),
                    None => {
                        let k = base_labels.iter().position(|x| x == label).unwrap_or(0);
                        (&pre.weight, &pre.bias, k)
                    }
                };
                w.row_mut(r).assign(&src_w.row(k));
                b[r] = src_b[k];
            }
            w.slice_mut(s![n.., ..]).assign(&boxes.weight);
            b.slice_mut(s![n..]).assign(&boxes.bias);
            LinearWeights { weight: w, bias: b }
        })
        .collect()
}

/// Per level with a trunk, the class branch's rows: the trained classes' rows in
/// their output places, zero for kept classes (their logits come from the main
/// head). Empty without trunks.
fn export_branches(head: &Head, classes: &ClassPlan) -> Vec<LinearWeights> {
    let n = classes.labels.len();
    head.trunks
        .iter()
        .zip(&head.classes)
        .map(|(trunk, cls)| {
            let mut w = Array2::<f32>::zeros((n, trunk.weights.weight.nrows()));
            let mut b = Array1::<f32>::zeros(n);
            for (k, label) in classes.trained.iter().enumerate() {
                if let Some(r) = classes.labels.iter().position(|x| x == label) {
                    w.row_mut(r).assign(&cls.weight.row(k));
                    b[r] = cls.bias[k];
                }
            }
            LinearWeights { weight: w, bias: b }
        })
        .collect()
}

/// Loads the staged model the way `run` will and returns the largest difference
/// between its class scores on `image` and the trained head's.
fn check_export(
    layout: &crate::model::nanodet::Layout,
    manifest: &Path,
    runtime: &RuntimeOptions,
    image: &Path,
    features: &ImageFeatures,
    head: &Head,
    classes: &ClassPlan,
) -> Result<f32, TrainError> {
    let manifest = Manifest::load(manifest)?;
    let mut detector = Detector::load(&manifest, runtime)?;
    let mut tensor = Vec::new();
    let (view, _) = super::images::load_batch(&[image], &manifest.input, &mut tensor)?;
    let outputs = detector.run(view)?;
    let n = classes.labels.len();
    let mut max_diff = 0.0f32;
    let forwards = head.forwards(layout, &[features], None)?;
    let forwards = forwards.first().map_or(&[][..], Vec::as_slice);
    let tensors = &outputs[0].tensors;
    // Where class `r` of `cell` of level `l` is in the export's output tensors;
    // YOLOX's objectness, which multiplies it, must be 1 (see graph::yolox).
    let mut first_cell = 0;
    for (l, data) in features.levels.iter().enumerate() {
        let z = head.level_class_logits(l, data, forwards.get(l));
        let at = |cell: usize, r: usize| match layout.family {
            crate::model::Family::Nanodet => {
                tensors.get(l).and_then(|t| t.get(cell * n + r)).copied()
            }
            crate::model::Family::Yolox => tensors.first().and_then(|t| {
                let row =
                    t.get((first_cell + cell) * (5 + n)..(first_cell + cell + 1) * (5 + n))?;
                Some(row[5 + r] * row[4])
            }),
        };
        for (k, label) in classes.trained.iter().enumerate() {
            let r = classes.labels.iter().position(|x| x == label).unwrap_or(0);
            for (cell, &v) in z.column(k).iter().enumerate() {
                let want = 1.0 / (1.0 + (-v).exp());
                let got = at(cell, r).ok_or_else(|| {
                    TrainError::Invalid(
                        "the exported model's output is smaller than its head".into(),
                    )
                })?;
                max_diff = max_diff.max((got - want).abs());
            }
        }
        first_cell += z.nrows();
    }
    Ok(max_diff)
}

/// Final AP and precision-recall curve of each trained class on the validation set.
fn validation_metrics(
    evals: &[metrics::ImageEval],
    trained: &[String],
) -> (Vec<ClassMetrics>, Vec<PrCurve>) {
    trained
        .iter()
        .enumerate()
        .map(|(k, label)| {
            let (ap50, ap50_95) =
                metrics::coco_ap(evals, k).map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let curve = Curve::new(evals, k, 0.5);
            let m = ClassMetrics {
                label: label.clone(),
                val_boxes: curve.positives,
                ap50,
                ap50_95,
            };
            (
                m,
                PrCurve {
                    label: label.clone(),
                    points: curve.precision_recall(),
                },
            )
        })
        .unzip()
}

/// What a family's retraining cannot do: YOLOX trains its class rows only (its
/// box rows and the convolutions before its class rows stay the base model's).
fn check_family_options(base: &Manifest, options: &TrainOptions) -> Result<(), TrainError> {
    if base.family != crate::model::Family::Yolox {
        return Ok(());
    }
    let refused = if options.train_box {
        Some("--train-box (its box branch reads a feature of its own, which is not extracted)")
    } else if options.train_layers == TrainLayers::Head {
        Some("--train-layers head (its class rows read depthwise-separable SiLU convolutions)")
    } else {
        None
    };
    match refused {
        Some(what) => Err(TrainError::Invalid(format!(
            "{}: a yolox-family model retrains its class rows only; drop {what}",
            base.path.display()
        ))),
        None => Ok(()),
    }
}

/// Runs the whole retrain: features once, targets, training, export (checked
/// against the trained head), the report.
pub fn retrain(plan: &RetrainPlan) -> Result<RetrainReport, TrainError> {
    let staging = super::StagedDir::create(&plan.out)?;
    let classes = plan_classes(plan)?;
    let layout = plan.base.layout();
    check_family_options(&plan.base, &plan.options)?;
    let graph = HeadGraph::for_manifest(&plan.base)?;
    // Before the long feature extraction: a head that cannot start fails at once.
    let (start, pretrained) = initial_head(
        &graph,
        &plan.base.labels,
        &classes.trained,
        layout.strides.len(),
        &plan.options,
    )?;
    let samples = &plan.dataset.samples;
    let (val_idx, train_idx) = split(samples.len(), plan.val_fraction, plan.options.seed);
    if val_idx.is_empty() {
        tracing::warn!(
            "no validation split: validating (and stopping early) on the training images"
        );
    }
    let copies = augmented_copies(samples, &train_idx, &plan.options);
    let (features, feature_seconds) = extract_features(plan, &graph, &copies)?;
    let val_from = if val_idx.is_empty() {
        &train_idx
    } else {
        &val_idx
    };
    let (train_set, val_set) = example_sets(
        &layout,
        (samples, &copies),
        &features,
        &classes,
        (&train_idx, val_from),
    );
    let (trained, train_seconds, evals) =
        train_head(plan, start, &layout, (&train_set, &val_set), &features)?;
    let (class_metrics, curves) = validation_metrics(&evals, &classes.trained);
    let probe = val_from[0];
    let (onnx_name, manifest_name, max_diff) = export_checked(
        plan,
        &graph,
        staging.path(),
        (&trained.head, &pretrained),
        &classes,
        (&samples[probe].image, &features[probe]),
    )?;
    let report = RetrainReport {
        model: plan.out.join(&onnx_name),
        manifest: plan.out.join(&manifest_name),
        base_model: plan.base.name.clone(),
        labels: classes.labels.clone(),
        sources: classes.sources.clone(),
        options: plan.options.clone(),
        train_images: train_idx.len(),
        val_images: val_set.len(),
        skipped: plan.dataset.skipped.clone(),
        feature_seconds,
        augmented_images: copies.len(),
        feature_images_per_second: (samples.len() + copies.len()) as f32
            / feature_seconds.max(1e-6),
        train_seconds,
        epochs_run: trained.history.len(),
        best_epoch: trained.best_epoch,
        stopped_early: trained.stopped_early,
        history: trained.history.clone(),
        classes: class_metrics,
        export_max_score_diff: max_diff,
        peak_memory_mib: peak_memory_mib(),
    };
    write_report(staging.path(), &report, &curves)?;
    staging.commit()?;
    Ok(report)
}

/// The training examples (the training images, then their augmented copies,
/// whose features follow the originals') and the validation examples.
fn example_sets<'a>(
    layout: &crate::model::nanodet::Layout,
    (samples, copies): (&[Sample], &[AugmentedCopy]),
    features: &'a [ImageFeatures],
    classes: &ClassPlan,
    (train_idx, val_idx): (&[usize], &[usize]),
) -> (Vec<Example<'a>>, Vec<Example<'a>>) {
    let example = |&i: &usize| example_of(layout, &samples[i], &features[i], classes);
    let mut train: Vec<Example<'a>> = train_idx.iter().map(example).collect();
    train.extend(
        copies
            .iter()
            .zip(&features[samples.len()..])
            .map(|((_, _, sample), f)| example_of(layout, sample, f, classes)),
    );
    (train, val_idx.iter().map(example).collect())
}

/// An augmented copy of a training image: its sample's index, the draw, and the
/// sample as the copy shows it.
type AugmentedCopy = (usize, Augmentation, Sample);

/// `augment` copies of each training image, drawn from the seed.
fn augmented_copies(
    samples: &[Sample],
    train_idx: &[usize],
    options: &TrainOptions,
) -> Vec<AugmentedCopy> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0xa06e_a7ed);
    let mut copies = Vec::with_capacity(train_idx.len() * options.augment);
    for &i in train_idx {
        for _ in 0..options.augment {
            let draw = Augmentation::draw(&mut rng);
            copies.push((i, draw, augmented_sample(&samples[i], &draw)));
        }
    }
    copies
}

/// A sample's boxes and ignore regions as an augmented copy shows them; a box
/// mostly pushed out of the picture becomes an ignore region.
fn augmented_sample(sample: &Sample, draw: &Augmentation) -> Sample {
    let size = (sample.width, sample.height);
    let mut copy = Sample {
        annotations: Vec::new(),
        ignore: sample.ignore.iter().map(|b| draw.bbox(b, size).0).collect(),
        ..sample.clone()
    };
    for a in &sample.annotations {
        let (bbox, visible) = draw.bbox(&a.bbox, size);
        if visible >= super::augment::MIN_VISIBLE {
            copy.annotations.push(super::dataset::Annotation {
                label: a.label.clone(),
                bbox,
            });
        } else if visible > 0.0 {
            copy.ignore.push(bbox);
        }
    }
    copy
}

/// The frozen network's features of every image, then of every augmented copy,
/// once; and how long it took.
fn extract_features(
    plan: &RetrainPlan,
    graph: &HeadGraph,
    copies: &[AugmentedCopy],
) -> Result<(Vec<ImageFeatures>, f32), TrainError> {
    let started = std::time::Instant::now();
    let trunk = plan.options.train_layers == TrainLayers::Head;
    let mut extractor = FeatureExtractor::new(graph, &plan.base, &plan.runtime, trunk)?;
    let samples = &plan.dataset.samples;
    let count = samples.len() + copies.len();
    let load = |i: usize| match i.checked_sub(samples.len()) {
        None => super::images::load_rgb(&samples[i].image),
        Some(c) => {
            let (s, draw, _) = &copies[c];
            Ok(draw.image(&super::images::load_rgb(&samples[*s].image)?))
        }
    };
    let bar = progress_bar(plan.progress, count, "features");
    let workers = crate::infer::session::resolve_threads(plan.runtime.threads);
    let features = extractor.extract((count, plan.batch, workers), load, |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f32();
    tracing::info!(
        images = samples.len(),
        copies = copies.len(),
        seconds,
        "features extracted"
    );
    Ok((features, seconds))
}

/// One training example: the image's features and its truth, with targets
/// assigned in network-input pixels.
fn example_of<'a>(
    layout: &crate::model::nanodet::Layout,
    sample: &Sample,
    features: &'a ImageFeatures,
    classes: &ClassPlan,
) -> Example<'a> {
    let truth = truth_of(sample, &classes.trained);
    // Through the placement the preprocessing used (stretch or letterbox).
    let map = crate::model::geometry::InputToSource::new(
        (sample.width, sample.height),
        layout.input_size,
        layout.resize,
    );
    let scaled: Vec<(usize, BBox)> = truth.iter().map(|&(c, b)| (c, map.to_input(&b))).collect();
    let ignore: Vec<BBox> = sample.ignore.iter().map(|b| map.to_input(b)).collect();
    let logits: Vec<&[f32]> = features
        .levels
        .iter()
        .map(|l| l.box_logits.as_slice().unwrap_or(&[]))
        .collect();
    Example {
        features,
        targets: assign(layout, &logits, &scaled, &ignore),
        truth,
        ignore: sample.ignore.clone(),
    }
}

/// Trains the head with a progress bar and a log line per epoch (the trunks'
/// convolutions, if any, through their own session), then evaluates it on the
/// validation set: the result, how long training took, and the evaluation.
fn train_head(
    plan: &RetrainPlan,
    start: Head,
    layout: &crate::model::nanodet::Layout,
    (train_set, val_set): (&[Example<'_>], &[Example<'_>]),
    features: &[ImageFeatures],
) -> Result<(head::Trained, f32, Vec<metrics::ImageEval>), TrainError> {
    check_trunk_inputs(&start, layout, features)?;
    let mut session = if start.trunks.is_empty() {
        None
    } else {
        Some(TrunkSession::new(&start.trunks, &plan.runtime)?)
    };
    let started = std::time::Instant::now();
    let bar = progress_bar(plan.progress, plan.options.epochs, "epochs");
    let sets = (train_set, val_set);
    let trained = head::train(start, layout, sets, &plan.options, session.as_mut(), |e| {
        bar.inc(1);
        let ap = e.val_ap50.map_or("-".into(), |v| format!("{v:.3}"));
        if plan.progress {
            bar.set_message(format!("AP50 {ap}"));
        }
        tracing::info!(epoch = e.epoch, train_loss = e.train_loss, val_loss = e.val_loss, val_ap50 = %ap, cells = e.cells_computed, "epoch");
    });
    bar.finish_and_clear();
    let trained = trained?;
    let seconds = started.elapsed().as_secs_f32();
    let (evals, _, _) =
        trained
            .head
            .evaluate(layout, val_set, plan.options.train_box, session.as_mut())?;
    Ok((trained, seconds, evals))
}

/// Writes the new model and its manifest into the staging folder and checks the
/// export against the trained head on one image (refused past 1e-3). The file
/// names and the largest score difference.
fn export_checked(
    plan: &RetrainPlan,
    graph: &HeadGraph,
    dir: &Path,
    (head, pretrained): (&Head, &[LinearWeights]),
    classes: &ClassPlan,
    (image, features): (&Path, &ImageFeatures),
) -> Result<(String, String, f32), TrainError> {
    let heads = export_heads(head, pretrained, classes, &plan.base.labels);
    let branch_rows = export_branches(head, classes);
    let convs: Vec<LinearWeights> = head.trunks.iter().map(Trunk::merged).collect();
    let branches: Vec<ClassBranch<'_>> = convs
        .iter()
        .zip(&branch_rows)
        .map(|(conv, rows)| ClassBranch {
            conv,
            classes: rows,
        })
        .collect();
    let gated: Vec<bool> = (classes.sources.iter())
        .map(|s| *s == ClassSource::Kept)
        .collect();
    let bytes = graph.with_heads(&heads, &branches, &classes.labels, &gated)?;
    let onnx_name = format!("{}.onnx", plan.name);
    let manifest_name = format!("{}.toml", plan.name);
    write(&dir.join(&onnx_name), &bytes)?;
    write(
        &dir.join(&manifest_name),
        manifest_text(&plan.base, &plan.name, &onnx_name, &classes.labels)?,
    )?;
    let max_diff = check_export(
        &plan.base.layout(),
        &dir.join(&manifest_name),
        &plan.runtime,
        image,
        features,
        head,
        classes,
    )?;
    if max_diff > 1e-3 {
        return Err(TrainError::Invalid(format!(
            "the exported model's scores differ from the trained head's by {max_diff}; not writing {}",
            plan.out.display()
        )));
    }
    Ok((onnx_name, manifest_name, max_diff))
}

/// `training.png` and `report.json` into the staging folder.
fn write_report(dir: &Path, report: &RetrainReport, curves: &[PrCurve]) -> Result<(), TrainError> {
    report::draw(&dir.join("training.png"), &report.history, curves)?;
    let json =
        serde_json::to_string_pretty(report).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write(&dir.join("report.json"), json + "\n")
}

/// The new model's manifest: the base manifest with a new name, file and labels.
fn manifest_text(
    base: &Manifest,
    name: &str,
    onnx: &str,
    labels: &[String],
) -> Result<String, TrainError> {
    let text = std::fs::read_to_string(&base.path)
        .map_err(|e| TrainError::Invalid(format!("cannot read {}: {e}", base.path.display())))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", base.path.display())))?;
    table.insert("name".into(), name.into());
    table.insert("onnx".into(), onnx.into());
    table.insert(
        "labels".into(),
        toml::Value::Array(labels.iter().map(|l| l.as_str().into()).collect()),
    );
    // The size and resize mode it was trained at (`--input-size`, `--resize`), which
    // may not be the base's.
    if let Some(toml::Value::Table(input)) = table.get_mut("input") {
        input.insert("width".into(), i64::from(base.input.width).into());
        input.insert("height".into(), i64::from(base.input.height).into());
        let resize = crate::choice::Choice::name(base.input.resize);
        input.insert("resize".into(), resize.into());
    }
    // The base's INT8 version quantizes the base's graph, not this one: a variant
    // named here would run the wrong model or fail on its labels.
    table.remove("variants");
    let body = toml::to_string(&table).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let scoring = match base.family {
        crate::model::Family::Nanodet => "",
        crate::model::Family::Yolox => {
            "# The output's objectness is 1 everywhere: each class channel already holds its\n\
             # score (kept classes: the base model's objectness × class; trained classes:\n\
             # their own class score).\n"
        }
    };
    let documented = match base.family {
        crate::model::Family::Nanodet => "models/nanodet-g.toml",
        crate::model::Family::Yolox => "models/yolox-nano.toml",
    };
    Ok(format!(
        "# Written by `pedvision retrain` from {} ({}): the frozen graph with a new class\n\
         # head. Field meanings are documented in {documented}.\n{scoring}\n{body}",
        base.name,
        base.path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_manifest_keeps_the_input_and_names_no_int8_version_of_the_base() {
        let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.toml");
        let base = Manifest::load(std::path::Path::new(bundled)).unwrap();
        assert!(
            base.variants.int8.is_some(),
            "the bundled model has an INT8 version"
        );
        let labels = vec!["person".to_string(), "ring".to_string()];
        let text = manifest_text(&base, "toys", "toys.onnx", &labels).unwrap();
        let written: Manifest = toml::from_str(&text).unwrap();
        assert_eq!(written.labels, labels);
        assert_eq!(
            written.input, base.input,
            "size, resize and test-time flip kept"
        );
        assert!(written.variants.int8.is_none(), "{text}");
    }
}
