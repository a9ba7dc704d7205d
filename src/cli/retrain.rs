//! `pedvision retrain`: options → a validated [`RetrainPlan`] → the model folder, and
//! a summary on stdout.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pedvision::config::Manifest;
use pedvision::model::geometry::Resize;
use pedvision::train::dataset::{Dataset, Format};
use pedvision::train::head::{TRUNK_RANK, TrainLayers, TrainOptions, default_trunk_lr_scale};
use pedvision::train::retrain::{RetrainPlan, RetrainReport, retrain};

use super::common::{RuntimeArgs, model_path};

#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// The labelled data set: a folder (KITTI, Pascal VOC, YOLO) or a COCO .json file.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,

    /// Label format; guessed from the layout when left out.
    #[arg(long, value_parser = super::choice::<Format>())]
    pub format: Option<Format>,

    /// Output folder for the model, its manifest and the training report. It must
    /// not exist yet.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Model name (file stem of NAME.onnx and NAME.toml in the output folder).
    #[arg(long, default_value = "retrained")]
    pub name: String,

    /// The pretrained model whose backbone is kept. Default: the bundled
    /// nanodet-g.toml, found as for `run --model`.
    #[arg(long, value_name = "PATH")]
    pub base_model: Option<PathBuf>,

    /// Square network input size in pixels instead of the base manifest's, for
    /// graphs that take any size (NanoDet-g's and YOLOX-Nano's). The new
    /// model's manifest keeps it: larger inputs make small objects larger for the
    /// frozen network, at a cost in speed.
    #[arg(long, value_name = "PIXELS")]
    pub input_size: Option<u32>,

    /// Fit images to the network input this way instead of the base manifest's
    /// `input.resize`; the new model's manifest keeps it. `stretch` on a square
    /// `--input-size` draws 4:3 images taller than letterbox does, which helps small
    /// objects (see the README's held-out figures), and distorts wider video more.
    #[arg(long, value_name = "MODE", value_parser = super::choice::<Resize>())]
    pub resize: Option<Resize>,

    /// Train only these classes of the data set (comma-separated); boxes of other
    /// classes are listed as skipped. Default: every class in the data.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub classes: Vec<String>,

    /// Pretrained classes carried into the new model unchanged (unless the data
    /// has boxes of them, then they are fine-tuned from the pretrained weights).
    /// `none` keeps nothing.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "person"
    )]
    pub keep_classes: Vec<String>,

    /// Passes over the training images.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub epochs: u32,

    /// Images per optimiser step.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_images: u32,

    /// AdamW learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,

    /// AdamW weight decay (weights only).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,

    /// Share of the images held out for validation, in [0, 0.9].
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f32,

    /// Stop when validation AP@0.5 has not improved for this many epochs.
    #[arg(long, default_value_t = 8)]
    pub patience: u32,

    /// Seed for the split, the shuffling and the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Also fine-tune the box branch's final layer (it is class-agnostic, so this
    /// changes the boxes of kept classes too).
    #[arg(long)]
    pub train_box: bool,

    /// Which layers train: `cls` the final 1×1 class layer on frozen features;
    /// `head` also the head's 3×3 convolution (a copy that only the trained
    /// classes read, so kept classes and boxes are unchanged; several times slower).
    #[arg(long, value_parser = super::choice::<TrainLayers>(), default_value = "cls")]
    pub train_layers: TrainLayers,

    /// With `--train-layers head`: the rank R of the trained update of the 3×3
    /// convolution copy (as LoRA does; merged into the copy on export), which
    /// costs an R-channel convolution per pass instead of a 128-channel one.
    /// 0 trains the whole copy (training about 1.8 times as long). Default: 16.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub trunk_rank: Option<u32>,

    /// With `--train-layers head`: the copy's learning rate, as a share of
    /// `--lr`. Default: 1 for a low-rank update (it starts at zero), 0.1 with
    /// `--trunk-rank 0` (the whole copy starts from pretrained weights).
    #[arg(long, value_name = "SHARE")]
    pub trunk_lr: Option<f32>,

    /// Augmented copies of each training image (flip, scale, shift, colour
    /// jitter; boxes move with the pixels). Each copy's features are extracted
    /// once, like an original's: 0 trains on the originals only.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub augment: u32,

    /// Images per feature-extraction batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub extract_batch: u16,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

fn finite_in(name: &str, v: f32, lo: f32, hi: f32) -> anyhow::Result<()> {
    anyhow::ensure!(
        v.is_finite() && v >= lo && v <= hi,
        "--{name} {v} is not in [{lo}, {hi}]"
    );
    Ok(())
}

pub fn execute(args: RetrainArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    if args.train_layers == TrainLayers::Cls
        && (args.trunk_lr.is_some() || args.trunk_rank.is_some())
    {
        tracing::warn!("--trunk-rank and --trunk-lr apply to --train-layers head only; ignored");
    }
    let trunk_rank = args.trunk_rank.map_or(TRUNK_RANK, |r| r as usize);
    let base = Manifest::load(&model_path(args.base_model.as_deref())?)?;
    let base = super::common::with_input_size(base, args.input_size)?;
    let base = super::common::with_resize(base, args.resize);
    let mut dataset = Dataset::load(&args.data, args.format)?;
    if !args.classes.is_empty() {
        dataset.restrict_to(&args.classes);
    }
    let keep: Vec<String> = args
        .keep_classes
        .iter()
        .filter(|k| k.as_str() != "none" && !k.is_empty())
        .cloned()
        .collect();
    tracing::info!("{}", dataset.summary());
    for s in &dataset.skipped {
        tracing::warn!(item = %s.item, "skipped: {}", s.reason);
    }
    let runtime = args.runtime.init()?;
    let plan = RetrainPlan {
        dataset,
        base,
        out: args.out.clone(),
        name: args.name.clone(),
        keep,
        options: TrainOptions {
            epochs: args.epochs as usize,
            batch_images: args.batch_images as usize,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            patience: args.patience as usize,
            seed: args.seed,
            train_box: args.train_box,
            augment: args.augment as usize,
            train_layers: args.train_layers,
            trunk_lr_scale: args.trunk_lr.unwrap_or(default_trunk_lr_scale(trunk_rank)),
            trunk_rank,
            threads: runtime.threads,
        },
        val_fraction: args.val_split,
        runtime,
        batch: args.extract_batch as usize,
        progress: std::io::stderr().is_terminal(),
    };
    let report = retrain(&plan).context("retrain")?;
    print_report(&report);
    out!("report    {}", args.out.join("report.json").display());
    Ok(())
}

/// The numeric and naming options, checked before any loading.
fn check_args(args: &RetrainArgs) -> anyhow::Result<()> {
    finite_in("lr", args.lr, 1e-7, 10.0)?;
    finite_in("weight-decay", args.weight_decay, 0.0, 1.0)?;
    if let Some(share) = args.trunk_lr {
        finite_in("trunk-lr", share, 0.0, 10.0)?;
    }
    finite_in("val-split", args.val_split, 0.0, 0.9)?;
    anyhow::ensure!(
        !args.name.is_empty() && !args.name.contains(['/', '\\']),
        "--name {:?} must be a plain file name",
        args.name
    );
    anyhow::ensure!(
        !args.out.exists(),
        "--out {} already exists; remove it or choose another folder",
        args.out.display()
    );
    Ok(())
}

/// What the retrain made and how well the new head does, per class.
fn print_report(report: &RetrainReport) {
    out!("model     {}", report.model.display());
    out!(
        "manifest  {}  (pedvision run --model {})",
        report.manifest.display(),
        report.manifest.display()
    );
    out!("classes   {}", report.labels.join(", "));
    out!(
        "images    {} train, {} validation, {} skipped",
        report.train_images,
        report.val_images,
        report.skipped.len()
    );
    out!(
        "features  {:.1} s ({:.1} images/s); training {:.1} s, {} epochs, best {}{}",
        report.feature_seconds,
        report.feature_images_per_second,
        report.train_seconds,
        report.epochs_run,
        report.best_epoch,
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    for c in &report.classes {
        let show = |v: Option<f32>| v.map_or("-".into(), |v| format!("{v:.3}"));
        out!(
            "  {:<16} val boxes {:>5}  AP@0.5 {}  AP@[.5:.95] {}",
            c.label,
            c.val_boxes,
            show(c.ap50),
            show(c.ap50_95)
        );
    }
}
