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

use ndarray::{Array1, Array2, ArrayView4, s};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TrainError;
use super::assign::assign;
use super::dataset::{Dataset, Sample};
use super::features::{FeatureExtractor, ImageFeatures};
use super::graph::{HeadGraph, LinearWeights};
use super::head::{self, EpochStats, Example, Head, TrainOptions};
use super::metrics::{self, Curve};
use super::report::{self, PrCurve};
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

/// Runs the whole retrain.
pub fn retrain(plan: &RetrainPlan) -> Result<RetrainReport, TrainError> {
    if plan.out.exists() {
        return Err(TrainError::Invalid(format!(
            "{} already exists; remove it or choose another --out",
            plan.out.display()
        )));
    }
    let ClassPlan {
        labels,
        sources,
        trained,
    } = plan_classes(plan)?;
    let layout = plan.base.layout();
    let graph = HeadGraph::locate(
        &plan.base.onnx,
        &plan.base.output.class_outputs,
        plan.base.labels.len(),
        layout.bins,
    )?;

    // Split by the seed: the same data and seed give the same split.
    let samples = &plan.dataset.samples;
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.options.seed);
    order.shuffle(&mut rng);
    let n_val = if samples.len() < 2 || plan.val_fraction <= 0.0 {
        0
    } else {
        ((samples.len() as f32 * plan.val_fraction).round() as usize).clamp(1, samples.len() - 1)
    };
    let (val_idx, train_idx) = order.split_at(n_val);
    if n_val == 0 {
        tracing::warn!(
            "no validation split: validating (and stopping early) on the training images"
        );
    }

    // Features, once.
    let started = std::time::Instant::now();
    let mut extractor = FeatureExtractor::new(&graph, &plan.base, &plan.runtime)?;
    let paths: Vec<&Path> = samples.iter().map(|s| s.image.as_path()).collect();
    let bar = progress_bar(plan.progress, paths.len(), "features");
    let features: Vec<ImageFeatures> =
        extractor.extract(&paths, plan.batch, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    drop(extractor);
    let feature_seconds = started.elapsed().as_secs_f32();
    tracing::info!(
        images = paths.len(),
        seconds = feature_seconds,
        "features extracted"
    );

    // Targets.
    let (nw, nh) = layout.input_size;
    let example = |i: usize| {
        let sample = &samples[i];
        let truth = truth_of(sample, &trained);
        let (sx, sy) = (
            nw as f32 / sample.width as f32,
            nh as f32 / sample.height as f32,
        );
        let scaled: Vec<(usize, BBox)> = truth
            .iter()
            .map(|&(c, b)| (c, [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]))
            .collect();
        let logits: Vec<&[f32]> = features[i]
            .levels
            .iter()
            .map(|l| l.box_logits.as_slice().unwrap_or(&[]))
            .collect();
        Example {
            features: &features[i],
            targets: assign(&layout, &logits, &scaled),
            truth,
        }
    };
    let train_set: Vec<Example<'_>> = train_idx.iter().map(|&i| example(i)).collect();
    let val_set: Vec<Example<'_>> = if n_val == 0 {
        train_idx.iter().map(|&i| example(i)).collect()
    } else {
        val_idx.iter().map(|&i| example(i)).collect()
    };

    // The starting head.
    let mut init_rng = ChaCha8Rng::seed_from_u64(plan.options.seed ^ 0x5eed);
    let prior_bias = -((1.0f32 - 0.01) / 0.01).ln();
    let classes = plan.base.labels.len();
    let mut start = Head {
        classes: Vec::new(),
        boxes: Vec::new(),
    };
    let mut pretrained_levels = Vec::new();
    for l in 0..layout.strides.len() {
        let pre = graph.pretrained(l)?;
        let f = pre.weight.ncols();
        let mut w = Array2::<f32>::zeros((trained.len(), f));
        let mut b = Array1::<f32>::from_elem(trained.len(), prior_bias);
        for (k, label) in trained.iter().enumerate() {
            match plan.base.labels.iter().position(|x| x == label) {
                Some(base) => {
                    w.row_mut(k).assign(&pre.weight.row(base));
                    b[k] = pre.bias[base];
                }
                None => w
                    .row_mut(k)
                    .iter_mut()
                    .for_each(|v| *v = init_rng.random_range(-0.01..0.01)),
            }
        }
        start.classes.push(LinearWeights { weight: w, bias: b });
        start.boxes.push(LinearWeights {
            weight: pre.weight.slice(s![classes.., ..]).to_owned(),
            bias: pre.bias.slice(s![classes..]).to_owned(),
        });
        pretrained_levels.push(pre);
    }

    // Training.
    let started = std::time::Instant::now();
    let bar = progress_bar(plan.progress, plan.options.epochs, "epochs");
    let trained_head = head::train(start, &layout, &train_set, &val_set, &plan.options, |e| {
        bar.inc(1);
        let ap = e.val_ap50.map_or("-".into(), |v| format!("{v:.3}"));
        if plan.progress {
            bar.set_message(format!("AP50 {ap}"));
        }
        tracing::info!(epoch = e.epoch, train_loss = e.train_loss, val_loss = e.val_loss, val_ap50 = %ap, "epoch");
    });
    bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f32();

    // Final metrics on the validation images.
    let evals = trained_head
        .head
        .evaluate(&layout, &val_set, plan.options.train_box);
    let mut class_metrics = Vec::new();
    let mut curves = Vec::new();
    for (k, label) in trained.iter().enumerate() {
        let (ap50, ap) =
            metrics::coco_ap(&evals, k).map_or((None, None), |(a, b)| (Some(a), Some(b)));
        let curve = Curve::new(&evals, k, 0.5);
        class_metrics.push(ClassMetrics {
            label: label.clone(),
            val_boxes: curve.positives,
            ap50,
            ap50_95: ap,
        });
        curves.push(PrCurve {
            label: label.clone(),
            points: curve.precision_recall(),
        });
    }

    // Export: the output classes' rows, then the box rows, per level.
    let heads: Vec<LinearWeights> = (0..layout.strides.len())
        .map(|l| {
            let pre = &pretrained_levels[l];
            let th = &trained_head.head;
            let f = pre.weight.ncols();
            let rows = labels.len() + 4 * layout.bins;
            let mut w = Array2::<f32>::zeros((rows, f));
            let mut b = Array1::<f32>::zeros(rows);
            for (r, label) in labels.iter().enumerate() {
                if let Some(k) = trained.iter().position(|t| t == label) {
                    w.row_mut(r).assign(&th.classes[l].weight.row(k));
                    b[r] = th.classes[l].bias[k];
                } else if let Some(base) = plan.base.labels.iter().position(|x| x == label) {
                    w.row_mut(r).assign(&pre.weight.row(base));
                    b[r] = pre.bias[base];
                }
            }
            w.slice_mut(s![labels.len().., ..])
                .assign(&th.boxes[l].weight);
            b.slice_mut(s![labels.len()..]).assign(&th.boxes[l].bias);
            LinearWeights { weight: w, bias: b }
        })
        .collect();
    let bytes = graph.with_heads(&heads, labels.len(), &labels)?;

    let mut staging = plan.out.clone().into_os_string();
    staging.push(".partial");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|source| TrainError::Write {
        path: staging.clone(),
        source,
    })?;
    let onnx_name = format!("{}.onnx", plan.name);
    let manifest_name = format!("{}.toml", plan.name);
    write(&staging.join(&onnx_name), &bytes)?;
    write(
        &staging.join(&manifest_name),
        manifest_text(&plan.base, &plan.name, &onnx_name, &labels)?,
    )?;

    // Check the export the way `run` will load it.
    let staged_manifest = Manifest::load(&staging.join(&manifest_name))?;
    let mut detector = Detector::load(&staged_manifest, &plan.runtime)?;
    let probe = val_idx.first().or(train_idx.first()).copied().unwrap_or(0);
    let spec = &plan.base.input;
    let mut tensor = Vec::new();
    super::images::load_batch(&[samples[probe].image.as_path()], spec, &mut tensor)?;
    let view = ArrayView4::from_shape((1, 3, spec.height as usize, spec.width as usize), &tensor)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let outputs = detector.run(view)?;
    let mut max_diff = 0.0f32;
    for (l, data) in features[probe].levels.iter().enumerate() {
        let th = &trained_head.head.classes[l];
        let z = data.features.dot(&th.weight.t()) + &th.bias;
        let exported = &outputs[0].scores[l];
        for (cell, row) in z.outer_iter().enumerate() {
            for (k, &v) in row.iter().enumerate() {
                let r = labels.iter().position(|x| *x == trained[k]).unwrap_or(0);
                let want = 1.0 / (1.0 + (-v).exp());
                max_diff = max_diff.max((exported[cell * labels.len() + r] - want).abs());
            }
        }
    }
    drop(detector);
    if max_diff > 1e-3 {
        return Err(TrainError::Invalid(format!(
            "the exported model's scores differ from the trained head's by {max_diff}; not writing {}",
            plan.out.display()
        )));
    }

    let report = RetrainReport {
        model: plan.out.join(&onnx_name),
        manifest: plan.out.join(&manifest_name),
        base_model: plan.base.name.clone(),
        labels,
        sources,
        options: plan.options.clone(),
        train_images: train_idx.len(),
        val_images: if n_val == 0 { train_idx.len() } else { n_val },
        skipped: plan.dataset.skipped.clone(),
        feature_seconds,
        feature_images_per_second: paths.len() as f32 / feature_seconds.max(1e-6),
        train_seconds,
        epochs_run: trained_head.history.len(),
        best_epoch: trained_head.best_epoch,
        stopped_early: trained_head.stopped_early,
        history: trained_head.history.clone(),
        classes: class_metrics,
        export_max_score_diff: max_diff,
        peak_memory_mib: peak_memory_mib(),
    };
    report::draw(
        &staging.join("training.png"),
        &trained_head.history,
        &curves,
    )?;
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write(&staging.join("report.json"), json + "\n")?;
    std::fs::rename(&staging, &plan.out).map_err(|source| TrainError::Write {
        path: plan.out.clone(),
        source,
    })?;
    Ok(report)
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
    let body = toml::to_string(&table).map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(format!(
        "# Written by `pedvision retrain` from {} ({}): the frozen graph with a new class\n\
         # head. Field meanings are documented in models/nanodet-g.toml.\n\n{body}",
        base.name,
        base.path.display()
    ))
}
