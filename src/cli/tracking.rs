//! Tracking, line and zone options of `run`: `--tracker`, `--track-*`, and the
//! `--line` / `--zone` shorthands (a pipeline file's `[[lines]]` and `[[zones]]`
//! say the same with every setting).

use clap::Args;
use pedvision::config::rules::{LineConfig, ZoneConfig};
use pedvision::track::{TrackerKind, TrackerSettings};

/// How tracks begin and end: shared by `run` and `track`.
#[derive(Debug, Clone, Args)]
pub struct TrackLifeArgs {
    /// How long a track that is not seen is kept, in seconds: a person hidden for
    /// less than this keeps their id (ByteTrack's 30 frames at 30 fps).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub track_buffer: f64,

    /// Consecutive detections that confirm a new track and give it an id.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub track_min_hits: u32,
}

impl TrackLifeArgs {
    /// The lost-track buffer in seconds, checked.
    pub fn buffer_s(&self) -> anyhow::Result<f64> {
        Ok(self.track_buffer)
    }
}

/// Tracking and counting options.
#[derive(Debug, Clone, Args)]
pub struct TrackingArgs {
    /// Multi-object tracker: bytetrack (two-stage: weak detections keep partly
    /// hidden people's tracks alive), sort (one stage), or none (no track ids, no
    /// line or zone events).
    #[arg(long, value_enum, default_value_t = TrackerKind::Bytetrack)]
    pub tracker: TrackerKind,

    #[command(flatten)]
    pub life: TrackLifeArgs,

    /// ByteTrack's second stage: detections down to this score keep existing
    /// tracks alive. They never start a track and are not reported.
    #[arg(long, default_value_t = 0.1, value_name = "SCORE")]
    pub track_low: f32,

    /// A counting line on every stream: NAME:X1,Y1,X2,Y2[:A,B], in pixels, or in
    /// fractions of the frame when every value is within [0, 1]. Direction A is
    /// crossing from the left of X1,Y1 -> X2,Y2 to its right, as seen in the
    /// picture (default names: in, out). Repeat for several lines.
    #[arg(long, value_name = "NAME:X1,Y1,X2,Y2[:A,B]")]
    pub line: Vec<String>,

    /// A zone on every stream: NAME:X1,Y1,X2,Y2,X3,Y3[,...], a polygon in pixels
    /// or fractions. Entries, exits and dwell times become events. Repeat for
    /// several zones.
    #[arg(long, value_name = "NAME:X1,Y1,X2,Y2,X3,Y3[,...]")]
    pub zone: Vec<String>,

    /// Lines from a pipeline file (used when no --line is given).
    #[arg(skip)]
    pub file_lines: Vec<LineConfig>,

    /// Zones from a pipeline file (used when no --zone is given).
    #[arg(skip)]
    pub file_zones: Vec<ZoneConfig>,
}

impl TrackingArgs {
    /// The tracker settings for a run that reports detections from `conf`: tracks
    /// start from any detection the run reports.
    pub fn settings(&self, conf: f32) -> anyhow::Result<TrackerSettings> {
        anyhow::ensure!(
            self.track_low > 0.0 && self.track_low < 1.0,
            "--track-low {} is not between 0 and 1 (exclusive)",
            self.track_low
        );
        Ok(TrackerSettings {
            kind: self.tracker,
            high: conf,
            low: self.track_low,
            new_track: conf,
            buffer_s: self.life.buffer_s()?,
            min_hits: self.life.track_min_hits,
            ..TrackerSettings::default()
        })
    }

    /// The lines: `--line` when given, else the pipeline file's.
    pub fn lines(&self) -> anyhow::Result<Vec<LineConfig>> {
        if self.line.is_empty() {
            return Ok(self.file_lines.clone());
        }
        self.line
            .iter()
            .map(|l| LineConfig::parse_shorthand(l).map_err(Into::into))
            .collect()
    }

    /// The zones: `--zone` when given, else the pipeline file's.
    pub fn zones(&self) -> anyhow::Result<Vec<ZoneConfig>> {
        if self.zone.is_empty() {
            return Ok(self.file_zones.clone());
        }
        self.zone
            .iter()
            .map(|z| ZoneConfig::parse_shorthand(z).map_err(Into::into))
            .collect()
    }
}
