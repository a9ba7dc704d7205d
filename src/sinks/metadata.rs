//! Per-frame detection metadata as JSON Lines: one object per frame, frames without
//! detections included, in the schema documented in the README (`schema_version` 2:
//! version 1's fields unchanged, plus each detection's `track_id` and the frame's
//! `events`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{SinkError, staging::StagedFile};
use crate::analytics::{Event, MessageId};
use crate::frame::Frame;
use crate::model::{BBox, Detection};

/// Version of the metadata schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// One line of the metadata file.
#[derive(Debug, Serialize)]
pub struct FrameRecord<'a> {
    pub schema_version: u32,
    /// The run and the record's place in its stream's messages (set by the
    /// pipeline; consumers drop repeats by it).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    pub stream_id: u32,
    pub frame_index: u64,
    /// The model that processed the frame (its manifest's `name`); it changes at
    /// one frame when a model is switched in during a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The frame's time on its stream's timeline, in ns: the running time for
    /// files; for live sources the time since the stream's first captured frame,
    /// continuing across reconnections. `null` when the decoder gave none.
    pub pts_ns: Option<u64>,
    /// Live sources: when the frame was captured, Unix time in ns (absent for
    /// files, as in events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_unix_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<DetectionRecord<'a>>,
    /// Line crossings and zone entries/exits in this frame (schema 2).
    pub events: &'a [Event],
}

/// One detection, box in source pixels.
#[derive(Debug, Serialize)]
pub struct DetectionRecord<'a> {
    pub class_id: usize,
    pub label: &'a str,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in source pixels, rounded to 0.01.
    pub bbox: BBox,
    /// The confirmed track it belongs to; `null` without one (schema 2).
    pub track_id: Option<u64>,
}

impl<'a> FrameRecord<'a> {
    /// The record as one line of JSON (no newline).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a frame record always serialises")
    }

    /// The record of `frame` with detections already in source pixels, their
    /// track ids (shorter than `detections` means `null` for the rest) and events.
    pub fn new(
        frame: &Frame,
        detections: &[Detection],
        track_ids: &[Option<u64>],
        labels: &'a [String],
        events: &'a [Event],
    ) -> Self {
        let round = |v: f32, k: f32| (v * k).round() / k;
        Self {
            schema_version: SCHEMA_VERSION,
            id: None,
            stream_id: frame.stream_id,
            frame_index: frame.index,
            model: None,
            pts_ns: frame.pts_ns,
            captured_unix_ns: frame.captured_unix_ns,
            width: frame.width,
            height: frame.height,
            detections: detections
                .iter()
                .enumerate()
                .map(|(i, d)| DetectionRecord {
                    class_id: d.class_id,
                    label: labels.get(d.class_id).map_or("?", String::as_str),
                    score: round(d.score, 1e5),
                    bbox: d.bbox.map(|v| round(v, 100.0)),
                    track_id: track_ids.get(i).copied().flatten(),
                })
                .collect(),
            events,
        }
    }
}

/// Writes records to a staged JSON Lines file.
pub struct MetadataWriter {
    staged: StagedFile,
    out: BufWriter<std::fs::File>,
}

impl MetadataWriter {
    /// Opens `path` (staged: it appears under that name only when finished).
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let staged = StagedFile::create(path)?;
        let file = std::fs::File::create(staged.temp_path()).map_err(|source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            staged,
            out: BufWriter::new(file),
        })
    }

    /// Appends one frame's record, already serialised ([`FrameRecord::to_json`]).
    pub fn write_line(&mut self, json: &[u8]) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.staged.final_path().to_path_buf(),
            source,
        };
        self.out.write_all(json).map_err(io)?;
        self.out.write_all(b"\n").map_err(io)?;
        Ok(())
    }

    /// Hands what is buffered to the file (a removed stream's lines are all on
    /// disk when its removal is answered).
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: self.staged.final_path().to_path_buf(),
            source,
        })
    }

    /// Flushes and syncs the file, then gives it its final name (or the
    /// `.incomplete` name when `complete` is false).
    pub fn finish(mut self, complete: bool) -> Result<PathBuf, SinkError> {
        let path = self.staged.final_path().to_path_buf();
        let io = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        if complete {
            self.staged.commit()
        } else {
            self.staged.keep_incomplete()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_serialises_to_the_documented_schema() {
        let mut frame = Frame::from_i420(0, 7, 768, 576, Default::default(), vec![]);
        frame.pts_ns = Some(700_000_000);
        let labels = vec!["person".to_string()];
        let dets = [Detection {
            class_id: 0,
            score: 0.804_219,
            bbox: [499.504, 158.126, 530.3, 234.0],
        }];
        let events = [Event {
            id: None,
            stream_id: 0,
            frame_index: 7,
            pts_ns: Some(700_000_000),
            captured_unix_ns: None,
            kind: crate::analytics::EventKind::LineCrossed {
                line: "door".into(),
                direction: "in".into(),
                track_id: 3,
                class: "person".into(),
            },
        }];
        let json = serde_json::to_string(&FrameRecord::new(
            &frame,
            &dets,
            &[Some(3)],
            &labels,
            &events,
        ))
        .unwrap();
        assert_eq!(
            json,
            r#"{"schema_version":2,"stream_id":0,"frame_index":7,"pts_ns":700000000,"width":768,"height":576,"detections":[{"class_id":0,"label":"person","score":0.80422,"bbox":[499.5,158.13,530.3,234.0],"track_id":3}],"events":[{"stream_id":0,"frame_index":7,"pts_ns":700000000,"type":"line_crossed","line":"door","direction":"in","track_id":3,"class":"person"}]}"#
        );
        let none =
            serde_json::to_string(&FrameRecord::new(&frame, &dets, &[], &labels, &[])).unwrap();
        assert!(none.contains(r#""track_id":null}],"events":[]}"#), "{none}");
    }
}
