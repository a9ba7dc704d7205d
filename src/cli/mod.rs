//! The command line: one module per subcommand. Each turns its clap options into a
//! validated plan (rejecting bad combinations before any thread starts), then runs it.
//! `anyhow` lives here and in `main.rs` only.

/// `println!` that ignores a closed stdout (`pedvision doctor | head -1`) instead of
/// panicking: output nobody reads is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bench;
pub mod common;
pub mod doctor;
pub mod doctor_devices;
pub mod eval;
pub mod fleet;
pub mod manuals;
pub mod mqtt;
pub mod reload;
pub mod retrain;
pub mod run;
pub mod synth;
pub mod track;
pub mod tracking;
pub mod worker;

use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};

/// Real-time pedestrian detection for video files and streams.
///
/// Decodes video with GStreamer, runs a detector (NanoDet-g, COCO classes, by
/// default) through ONNX Runtime in batches, and writes the video with boxes drawn
/// on it plus one JSON line of detections per frame.
#[derive(Debug, Parser)]
#[command(name = "pedvision", version, propagate_version = true)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace (or a RUST_LOG-style filter).
    /// RUST_LOG, when set, wins.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    /// Log format on stderr: text for people, json (one object per line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect and track objects in a video: write an annotated MP4 and per-frame
    /// JSON Lines with track ids and line/zone events.
    ///
    /// With no arguments it processes the bundled demo clip into out/.
    #[command(after_help = "Examples:
  pedvision run                                   the bundled demo clip -> out/
  pedvision run -i street.mp4                     -> out/street.mp4 + out/street.jsonl
  pedvision run -i cam.mkv --classes person,car -o boxes.mp4 -m cam.jsonl
  pedvision run -i clip.webm --classes all --no-video
  pedvision run --line door:0.1,0.6,0.9,0.6 --zone hall:0.5,0.2,0.9,0.2,0.9,0.5,0.5,0.5
  pedvision run --config pipelines/door-counter.toml

Outputs appear under their names only when complete; a run that fails part-way keeps
what it processed as NAME.incomplete.mp4 / NAME.incomplete.jsonl.
Exit codes: 0 success, 1 failure (one `error:` line on stderr), 2 bad command line.")]
    Run(Box<run::RunArgs>),
    /// Measure end-to-end fps against inference-only fps on the same frames.
    ///
    /// Use a release build (`make bench`): debug builds measure the wrong thing.
    #[command(after_help = "Example:\n  pedvision bench --batch 4 --threads 2")]
    Bench(bench::BenchArgs),
    /// Check the GStreamer plugins, ONNX Runtime, execution providers and model a
    /// run needs, and say how to install what is missing.
    #[command(
        after_help = "Examples:\n  pedvision doctor\n  pedvision doctor -i rtsp://cam/live -i camera:0 --rtsp-out --device cuda"
    )]
    Doctor(doctor::DoctorArgs),
    /// Transfer learning: retrain the detector's class head on a labelled data set
    /// (backbone frozen), for new classes or your own scene.
    ///
    /// Writes OUT/NAME.onnx + OUT/NAME.toml (use with `run --model`), report.json and
    /// training.png (loss and precision-recall curves).
    #[command(after_help = "Examples:
  pedvision synth --out data/toys                 a generated data set to try it on
  pedvision retrain --data data/toys --out models/toys
  pedvision run --model models/toys/retrained.toml --classes all
  pedvision retrain --data coco.json --classes scooter --keep-classes person,bicycle -o out/m

Formats: KITTI (images/ + labels/), COCO JSON, Pascal VOC (Annotations/ + JPEGImages/),
YOLO (images/ + labels/ + classes.txt); guessed from the layout unless --format is given.
Items that cannot be used (missing images, bad boxes, unknown classes) are listed and
skipped; a data set with nothing usable is an error.")]
    Retrain(retrain::RetrainArgs),
    /// Score a model on a labelled data set: AP@0.5 and AP@[.5:.95] per class, and
    /// the log-average miss rate (MR-2) for person.
    #[command(after_help = "Examples:
  pedvision eval --data data/toys-test --model models/toys/retrained.toml
  pedvision eval --data /usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc")]
    Eval(eval::EvalArgs),
    /// Generate a labelled data set (KITTI) by drawing objects (`ball`, `sign`) on
    /// frames of a video, with exact boxes.
    #[command(after_help = "Examples:
  pedvision synth --out data/toys --images 200
  pedvision synth --out data/toys-test --images 50 --seed 1 --frames 150..200")]
    Synth(synth::SynthArgs),
    /// Run the tracker on MOTChallenge detections (det.txt) and write MOTChallenge
    /// results, to score it with TrackEval or py-motmetrics.
    #[command(after_help = "Examples:
  pedvision track --detections MOT17-04/det/det.txt --output MOT17-04.txt
  pedvision track -d det.txt -o result.txt --fps 25 --tracker sort

The same tracker as `run --tracker`, with ByteTrack's published defaults (first
stage from score 0.5, new tracks from 0.6, second stage from 0.1, 1 s buffer).
A malformed line is an error naming its number; the output appears only when complete.")]
    Track(track::TrackArgs),
    /// Join a fleet: run the cameras this worker wins from a NATS JetStream
    /// bucket (leases, failover, rebalancing) and publish their metadata to
    /// JetStream.
    #[command(after_help = "Examples:
  pedvision worker --nats nats://127.0.0.1:4222
  pedvision worker --nats nats://n1:4222,nats://n2:4222 --worker-id w1 --capacity 8 --replicas 3
  pedvision worker --nats nats://127.0.0.1:4222 --worker-id w4 --rebalance

Cameras are added with `pedvision fleet cameras add`. Metadata: JetStream stream
PEDVISION, subjects pedvision.meta.CAMERA and pedvision.events.CAMERA, each message
with a Nats-Msg-Id (run_id.stream.seq). Every `run` option (model, tracking,
--api, --metrics) applies. SIGINT/SIGTERM stop the cameras and release the leases.")]
    Worker(Box<worker::WorkerArgs>),
    /// Edit and inspect a fleet: cameras, workers, who runs what.
    #[command(after_help = "Examples:
  pedvision fleet --nats nats://127.0.0.1:4222 cameras add door rtsp://10.0.0.5/live
  pedvision fleet cameras add lobby rtsp://user:pw@10.0.0.6/s1 --line door:0.1,0.6,0.9,0.6
  pedvision fleet cameras ls
  pedvision fleet cameras rm door
  pedvision fleet workers
  pedvision fleet status --json

--nats may also come from PEDVISION_NATS. The buckets are created on first use
(--replicas, --lease-ttl apply then).")]
    Fleet(fleet::FleetCliArgs),
    /// Write the man pages and shell completions (for `make install` and the
    /// Debian package).
    #[command(hide = true)]
    Manuals(manuals::ManualsArgs),
}

/// clap's parser for a library [`Choice`](pedvision::choice::Choice): its names as
/// the possible values, each with its one-line help.
pub fn choice<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: pedvision::choice::Choice + Clone + Send + Sync,
{
    clap::builder::PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|v| clap::builder::PossibleValue::new(v.name()).help(v.about())),
    )
    .try_map(|s: String| T::parse(&s))
}
