//! `pedvision synth`: generate a labelled KITTI data set from a video, for trying
//! `retrain` and `eval` without labelling anything.

use std::path::PathBuf;

use clap::Args;
use pedvision::train::synth::{CLASSES, SynthOptions, generate};

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (KITTI: images/ and labels/). It must not exist yet.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Video whose frames become the backgrounds. Default: the bundled demo clip
    /// (found as `doctor` shows).
    #[arg(long, value_name = "PATH")]
    pub video: Option<PathBuf>,

    /// Number of images.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub images: u32,

    /// Seed for frames, places, sizes and classes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Take backgrounds only from frames FIRST..END (half-open), e.g. to keep a
    /// held-out set's backgrounds apart from the training set's.
    #[arg(long, value_name = "FIRST..END", value_parser = frame_range)]
    pub frames: Option<(usize, usize)>,

    /// Smallest and largest object size in pixels.
    #[arg(long, value_name = "MIN..MAX", default_value = "32..112", value_parser = frame_range)]
    pub sizes: (usize, usize),

    /// Most objects per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_objects: u32,
}

fn frame_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not FIRST..END"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("{v:?} is not a whole number"))
    };
    Ok((parse(a)?, parse(b)?))
}

pub fn execute(args: SynthArgs) -> anyhow::Result<()> {
    let report = generate(&SynthOptions {
        video: match args.video {
            Some(video) => video,
            None => super::common::demo_clip()?.into(),
        },
        out: args.out.clone(),
        images: args.images as usize,
        seed: args.seed,
        frames: args.frames,
        sizes: (args.sizes.0 as u32, args.sizes.1 as u32),
        max_objects: args.max_objects as usize,
    })?;
    out!(
        "{}: {} images from {} frames; {} {} boxes, {} {} boxes (KITTI)",
        args.out.display(),
        report.images,
        report.frames_available,
        report.boxes[0],
        CLASSES[0],
        report.boxes[1],
        CLASSES[1]
    );
    Ok(())
}
