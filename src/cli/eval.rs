//! `pedvision eval`: a model on a labelled data set; prints a table and, with
//! `--report`, writes it as JSON.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use pedvision::config::Manifest;
use pedvision::model::flip::Tta;
use pedvision::model::geometry::Resize;
use pedvision::sinks::staging::StagedFile;
use pedvision::train::dataset::{Dataset, Format};
use pedvision::train::eval::evaluate;

use super::common::{RuntimeArgs, model_path};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model manifest (.toml), or an .onnx file with its manifest beside it.
    /// Default: PEDVISION_MODEL, else the bundled nanodet-g.toml, looked for beside
    /// the executable (../share/pedvision), in the XDG data directory, in
    /// /usr/share/pedvision, then in the build checkout (`doctor` shows which).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// The labelled data set: a folder (KITTI, Pascal VOC, YOLO) or a COCO .json file.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,

    /// Label format; guessed from the layout when left out.
    #[arg(long, value_parser = super::choice::<Format>())]
    pub format: Option<Format>,

    /// Also write the results as JSON to FILE (written whole or not at all).
    /// Without it, only the table is printed.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Square network input size in pixels instead of the manifest's (only for
    /// graphs that take any size, such as NanoDet-g's and YOLOX-Nano's).
    #[arg(long, value_name = "PIXELS")]
    pub input_size: Option<u32>,

    /// Fit images to the network input this way instead of the manifest's
    /// `input.resize`, e.g. to compare the two modes on your own labels.
    #[arg(long, value_name = "MODE", value_parser = super::choice::<Resize>())]
    pub resize: Option<Resize>,

    /// Test-time augmentation instead of the manifest's `input.tta`: `flip` also
    /// runs each frame's mirror image and scores each object by the mean of the two
    /// views (ranks people above the background better, at twice the inference);
    /// `none` runs each frame once.
    #[arg(long, value_name = "MODE", value_parser = super::choice::<Tta>())]
    pub tta: Option<Tta>,

    /// Images per inference batch.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch: u16,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn execute(args: EvalArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&model_path(args.model.as_deref())?)?
        .for_precision(args.runtime.precision)?;
    let manifest = super::common::with_input_size(manifest, args.input_size)?;
    let manifest = super::common::with_resize(manifest, args.resize);
    let manifest = super::common::with_tta(manifest, args.tta);
    let dataset = Dataset::load(&args.data, args.format)?;
    // Staged now, so an unwritable --report fails before the evaluation.
    let staged = args.report.as_deref().map(StagedFile::create).transpose()?;
    tracing::info!("{}", dataset.summary());
    for s in &dataset.skipped {
        tracing::warn!(item = %s.item, "skipped: {}", s.reason);
    }
    let runtime = args.runtime.init()?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(dataset.samples.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = evaluate(&dataset, &manifest, &runtime, args.batch as usize, |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    let show = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    out!(
        "{} on {} ({} images, {} skipped)",
        report.model,
        report.data.display(),
        report.images,
        report.skipped
    );
    out!(
        "{:<16} {:>6} {:>6} {:>7} {:>11} {:>6}",
        "class",
        "boxes",
        "dets",
        "AP@0.5",
        "AP@[.5:.95]",
        "MR-2"
    );
    for c in &report.classes {
        out!(
            "{:<16} {:>6} {:>6} {:>7} {:>11} {:>6}",
            c.label,
            c.boxes,
            c.detections,
            show(c.ap50),
            show(c.ap50_95),
            show(c.mr2)
        );
    }
    out!(
        "{:<16} {:>6} {:>6} {:>7} {:>11}",
        "all",
        "",
        "",
        show(report.ap50),
        show(report.ap50_95)
    );
    if !report.not_in_model.is_empty() {
        tracing::warn!(
            "classes in the data that the model does not have (left out): {}",
            report.not_in_model.join(", ")
        );
    }
    if let Some(staged) = staged {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(staged.temp_path(), json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", staged.final_path().display()))?;
        out!("report    {}", staged.commit()?.display());
    }
    Ok(())
}
