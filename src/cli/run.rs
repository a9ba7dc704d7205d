//! `pedvision run`: flags -> a validated [`RunPlan`] -> the pipeline -> a summary.

use std::path::{Path, PathBuf};

use clap::Args;
use pedvision::pipeline::{self, RunPlan};

use super::common::{DEMO_CLIP, DetectorArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Video file (MP4, MKV, WebM, AVI, ...) or URI to process. Default: the bundled
    /// demo clip.
    #[arg(long, short, value_name = "FILE|URI")]
    pub input: Option<String>,

    /// Annotated video to write (H.264 in MP4). Default: out/<input name>.mp4.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Do not write an annotated video.
    #[arg(long, conflicts_with = "output")]
    pub no_video: bool,

    /// Per-frame detections as JSON Lines. Default: out/<input name>.jsonl.
    #[arg(long, short, value_name = "FILE")]
    pub metadata: Option<PathBuf>,

    /// Do not write metadata.
    #[arg(long, conflicts_with = "metadata")]
    pub no_metadata: bool,

    #[command(flatten)]
    pub detector: DetectorArgs,
}

/// `out/<stem of the input>.<ext>`.
fn default_output(input: &str, ext: &str) -> PathBuf {
    let name = input.rsplit('/').next().unwrap_or(input);
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned());
    let stem = if stem.is_empty() {
        "output".to_string()
    } else {
        stem
    };
    Path::new("out").join(format!("{stem}.{ext}"))
}

pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let input = args.input.clone().unwrap_or_else(|| DEMO_CLIP.to_string());
    let video = (!args.no_video).then(|| {
        args.output
            .clone()
            .unwrap_or_else(|| default_output(&input, "mp4"))
    });
    let metadata = (!args.no_metadata).then(|| {
        args.metadata
            .clone()
            .unwrap_or_else(|| default_output(&input, "jsonl"))
    });
    if video.is_some() && video == metadata {
        anyhow::bail!("--output and --metadata name the same file");
    }
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    // The input is checked before the model loads: a typo should fail in milliseconds.
    pedvision::sources::input_uri(&input)?;
    let mut model = args.detector.load(manifest, classes)?;
    let plan = RunPlan {
        input,
        video,
        metadata,
        batch: args.detector.batch.into(),
        post: model.post.clone(),
    };
    let report = pipeline::run(&plan, &mut model.detector)?;
    let mut written: Vec<String> = Vec::new();
    if let Some(v) = &report.video {
        written.push(format!("video {}", v.display()));
    }
    if let Some(m) = &report.metadata {
        written.push(format!("metadata {}", m.display()));
    }
    println!(
        "processed {} frames in {:.1} s ({:.1} fps); {}",
        report.frames,
        report.elapsed.as_secs_f64(),
        report.fps(),
        if written.is_empty() {
            "nothing written".to_string()
        } else {
            written.join(", ")
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_outputs_follow_the_input_name() {
        assert_eq!(
            default_output("/data/cam 1.avi", "mp4"),
            Path::new("out/cam 1.mp4")
        );
        assert_eq!(
            default_output("rtsp://host/live/stream", "jsonl"),
            Path::new("out/stream.jsonl")
        );
        assert_eq!(
            default_output("https://host/", "mp4"),
            Path::new("out/output.mp4")
        );
    }
}
