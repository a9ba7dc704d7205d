//! `pedvision track`: the run's tracker on MOTChallenge detection files, so that
//! anyone can score it with TrackEval or py-motmetrics against published trackers.
//!
//! det.txt in -> one [`Tracker`] (a single stream, one class) -> result.txt out,
//! written staged (it appears only when complete).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use pedvision::sinks::staging::StagedFile;
use pedvision::track::mot::{parse_detections, result_line};
use pedvision::track::{Tracker, TrackerKind, TrackerSettings};

#[derive(Debug, Args)]
pub struct TrackArgs {
    /// MOTChallenge detections: frame,-1,left,top,width,height,score[,...] per line.
    #[arg(long, short, value_name = "FILE")]
    pub detections: PathBuf,

    /// Tracker results to write, in MOTChallenge columns
    /// (frame,id,left,top,width,height,score,-1,-1,-1).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,

    /// Frame rate of the sequence (the tracker's clock). Default: frameRate from
    /// the sequence's seqinfo.ini (beside the det/ folder) when there is one, else 30.
    #[arg(long, value_name = "FPS")]
    pub fps: Option<f64>,

    /// bytetrack or sort.
    #[arg(long, value_parser = super::choice::<TrackerKind>(), default_value_t = TrackerKind::Bytetrack)]
    pub tracker: TrackerKind,

    #[command(flatten)]
    pub life: super::tracking::TrackLifeArgs,

    /// Detections from this score take part in the first association.
    #[arg(long, default_value_t = 0.5, value_name = "SCORE")]
    pub track_high: f32,

    /// ByteTrack's second association uses detections from this score.
    #[arg(long, default_value_t = 0.1, value_name = "SCORE")]
    pub track_low: f32,

    /// Unmatched detections from this score start tracks (ByteTrack: high + 0.1).
    #[arg(long, value_name = "SCORE")]
    pub new_track: Option<f32>,
}

/// frameRate from `DIR/../seqinfo.ini` for `DIR/det.txt`, if there is one.
fn seqinfo_fps(detections: &Path) -> Option<f64> {
    let seq = detections.parent()?.parent()?;
    let text = std::fs::read_to_string(seq.join("seqinfo.ini")).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "frameRate").then(|| v.trim().parse().ok())?
    })
}

pub fn execute(args: TrackArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tracker != TrackerKind::None,
        "--tracker none tracks nothing; choose bytetrack or sort"
    );
    let fps = args
        .fps
        .or_else(|| seqinfo_fps(&args.detections))
        .unwrap_or(30.0);
    anyhow::ensure!(
        fps.is_finite() && fps > 0.0,
        "--fps must be a positive number"
    );
    for (name, v) in [
        ("--track-high", args.track_high),
        ("--track-low", args.track_low),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&v), "{name} {v} is not within [0, 1]");
    }
    let text = std::fs::read_to_string(&args.detections)
        .with_context(|| format!("cannot read {}", args.detections.display()))?;
    let frames =
        parse_detections(&text).with_context(|| format!("{}", args.detections.display()))?;
    let settings = TrackerSettings {
        kind: args.tracker,
        high: args.track_high,
        low: args.track_low,
        new_track: args.new_track.unwrap_or(args.track_high + 0.1),
        buffer_s: args.life.buffer_s()?,
        min_hits: args.life.track_min_hits,
        interval_s: 1.0 / fps,
        ..TrackerSettings::default()
    };
    let staged = StagedFile::create(&args.output)?;
    let file = std::fs::File::create(staged.temp_path())
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut tracker = Tracker::new(settings);
    let (mut lines, mut detections) = (0u64, 0usize);
    let started = Instant::now();
    for f in &frames {
        detections += f.detections.len();
        let time_s = f64::from(f.frame - 1) / fps;
        for o in tracker.update(time_s, &f.detections).objects {
            writeln!(
                out,
                "{}",
                result_line(f.frame, o.track_id, &o.bbox, o.score)
            )?;
            lines += 1;
        }
    }
    let took = started.elapsed();
    out.flush()?;
    out.get_ref().sync_all()?;
    drop(out);
    let path = staged.commit()?;
    out!(
        "tracked {} frames, {detections} detections: {} tracks, {lines} boxes -> {} ({:.3} ms/frame, {} at {fps} fps)",
        frames.len(),
        tracker.confirmed(),
        path.display(),
        took.as_secs_f64() * 1e3 / frames.len().max(1) as f64,
        args.tracker
    );
    Ok(())
}
