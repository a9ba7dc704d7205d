//! The value of one camera in the `pedvision_cameras` bucket: the per-stream part
//! of a pipeline file (input, outputs, lines, zones) plus the model it needs.
//! `fleet cameras add` writes it; a worker that wins the camera's lease turns it
//! into a [`StreamRequest`] for its pipeline.

use serde::{Deserialize, Serialize};

use super::FleetError;
use crate::config::rules::{LineConfig, ZoneConfig};
use crate::control::StreamRequest;

/// One camera of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSpec {
    /// The input, as `--input` takes it (`rtsp://…`, `http(s)://…`, `test:PATTERN`,
    /// a file on the workers' disks).
    pub input: String,
    /// Annotated MP4 on the worker that runs it (`{name}` and `{stream}` are
    /// replaced). Default: none (a fleet publishes metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Counting lines of this camera.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineConfig>,
    /// Zones of this camera.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneConfig>,
    /// The model's manifest name it needs; only workers running that model take
    /// it. Default: any worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl CameraSpec {
    /// Reads a bucket value (JSON).
    pub fn from_json(id: &str, bytes: &[u8]) -> Result<Self, FleetError> {
        let spec: Self = serde_json::from_slice(bytes).map_err(|e| FleetError::BadCamera {
            id: id.to_string(),
            why: format!("its value is not a camera: {e}"),
        })?;
        spec.check(id)?;
        Ok(spec)
    }

    /// Checks what can be checked without a pipeline: the input parses, the
    /// output is an MP4.
    pub fn check(&self, id: &str) -> Result<(), FleetError> {
        let bad = |why: String| FleetError::BadCamera {
            id: id.to_string(),
            why,
        };
        if self.input.starts_with("test:") || self.input.contains("://") {
            crate::sources::spec::SourceSpec::parse(0, &self.input)
                .map_err(|e| bad(e.to_string()))?;
        } else if self.input.trim().is_empty() {
            return Err(bad("has no input".into()));
        }
        if let Some(o) = &self.output
            && !o.ends_with(".mp4")
        {
            return Err(bad(format!("output {o:?} must end in .mp4")));
        }
        // Lines and zones are checked against the model's labels by the worker that
        // adds the stream (a refused one shows as failed in `fleet status`).
        Ok(())
    }

    /// The stream a worker adds for camera `id`.
    pub fn request(&self, id: &str) -> StreamRequest {
        StreamRequest {
            input: self.input.clone(),
            output: self.output.clone(),
            no_video: self.output.is_none(),
            lines: self.lines.clone(),
            zones: self.zones.clone(),
            camera: Some(id.to_string()),
        }
    }

    /// The value written to the bucket.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The input with credentials hidden, for listings.
    pub fn shown_input(&self) -> String {
        crate::redact::url(&self.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_round_trips_and_its_stream_carries_its_id() {
        let spec = CameraSpec {
            input: "rtsp://user:secret@127.0.0.1:8554/cam1".into(),
            ..Default::default()
        };
        let back = CameraSpec::from_json("cam1", &spec.to_json()).unwrap();
        assert_eq!(back, spec);
        let r = back.request("cam1");
        assert_eq!(r.camera.as_deref(), Some("cam1"));
        assert!(r.no_video);
        assert!(!back.shown_input().contains("secret"));
    }

    #[test]
    fn bad_values_are_refused_with_the_camera_named() {
        for bad in [
            &b"{\"input\": \"test:nosuchpattern\"}"[..],
            b"{\"input\": \"rtsp://h/x\", \"unknown\": 1}",
            b"{\"input\": \"test:ball\", \"output\": \"x.avi\"}",
            b"not json",
        ] {
            let e = CameraSpec::from_json("cam9", bad).unwrap_err().to_string();
            assert!(e.contains("cam9"), "{e}");
        }
    }
}
