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
    #[arg(long, default_value_t = TrackerSettings::default().buffer_s, value_name = "S")]
    pub track_buffer: f64,

    /// Consecutive detections that confirm a new track and give it an id.
    #[arg(long, default_value_t = TrackerSettings::default().min_hits, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub track_min_hits: u32,
}

impl TrackLifeArgs {
    /// The lost-track buffer in seconds, checked.
    pub fn buffer_s(&self) -> anyhow::Result<f64> {
        let b = self.track_buffer;
        anyhow::ensure!(
            b.is_finite() && (0.0..=3600.0).contains(&b),
            "--track-buffer {b}: must be from 0 to 3600 seconds"
        );
        Ok(b)
    }
}

/// Tracking and counting options.
#[derive(Debug, Clone, Args)]
pub struct TrackingArgs {
    /// Multi-object tracker: bytetrack (two-stage: weak detections keep partly
    /// hidden people's tracks alive), sort (one stage), or none (no track ids, no
    /// line or zone events).
    #[arg(long, value_parser = super::choice::<TrackerKind>(), default_value_t = TrackerKind::default())]
    pub tracker: TrackerKind,

    #[command(flatten)]
    pub life: TrackLifeArgs,

    /// ByteTrack's second stage: detections down to this score keep existing
    /// tracks alive. They never start a track and are not reported.
    #[arg(long, default_value_t = TrackerSettings::default().low, value_name = "SCORE")]
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
}

impl TrackingArgs {
    /// The `--line` shorthands, parsed (empty when none was given: a pipeline
    /// file's lines are used then).
    pub fn lines(&self) -> anyhow::Result<Vec<LineConfig>> {
        self.line
            .iter()
            .map(|l| LineConfig::parse_shorthand(l).map_err(Into::into))
            .collect()
    }

    /// The `--zone` shorthands, parsed (empty when none was given).
    pub fn zones(&self) -> anyhow::Result<Vec<ZoneConfig>> {
        self.zone
            .iter()
            .map(|z| ZoneConfig::parse_shorthand(z).map_err(Into::into))
            .collect()
    }
}
