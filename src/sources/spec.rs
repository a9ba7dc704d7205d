//! What an `--input` names, parsed once: a file, a URI (RTSP, HTTP/HLS, anything
//! `uridecodebin` reads), a V4L2 camera, or a live test pattern; and how each is
//! turned into the head of a GStreamer decode pipeline.
//!
//! Credentials in URIs (`rtsp://user:pass@host/...`, `?password=...`) never leave
//! this module unredacted except into the GStreamer element itself:
//! [`SourceSpec::name`] (through [`crate::redact`]) is what logs, errors, metrics
//! and file names see.

use std::path::{Path, PathBuf};

/// Errors in an `--input` value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("input not found: {0}")]
    NotFound(PathBuf),
    #[error("bad test source {0:?}: {1}")]
    BadTest(String, String),
    #[error("bad camera {0:?}: use /dev/videoN or camera:N")]
    BadCamera(String),
}

/// The kind of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A local file (absolute path).
    File(PathBuf),
    /// An RTSP stream.
    Rtsp(String),
    /// Any other URI `uridecodebin` reads (http(s), HLS, file://, ...). `live` is
    /// false only for `file://` URIs.
    Uri { uri: String, live: bool },
    /// A V4L2 camera device.
    Camera(PathBuf),
    /// A live `videotestsrc` pattern.
    Test {
        pattern: String,
        width: u32,
        height: u32,
        fps: u32,
    },
}

/// RTSP client settings (apply to `rtsp://` inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct RtspOptions {
    /// Jitter-buffer latency in milliseconds.
    pub latency_ms: u32,
    /// Transport: `Auto` tries UDP and falls back to TCP when UDP gets nothing.
    pub transport: RtspTransport,
    /// How long UDP may get nothing before the TCP fallback (Auto only).
    pub udp_timeout_ms: u32,
}

impl Default for RtspOptions {
    fn default() -> Self {
        Self {
            latency_ms: 200,
            transport: RtspTransport::Auto,
            udp_timeout_ms: 3000,
        }
    }
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// UDP first, TCP when UDP gets nothing.
    #[default]
    Auto,
    Tcp,
    Udp,
}

impl crate::choice::Choice for RtspTransport {
    const ALL: &'static [Self] = &[Self::Auto, Self::Tcp, Self::Udp];
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Auto => "UDP first, TCP when UDP gets nothing",
            Self::Tcp => "interleaved in the RTSP connection (firewalls, NAT)",
            Self::Udp => "UDP only",
        }
    }
}

impl std::fmt::Display for RtspTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::choice::Choice::name(*self))
    }
}

/// One parsed `--input`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Stream id: the input's position on the command line.
    pub id: u32,
    /// What the input is.
    pub kind: SourceKind,
    /// The input as the user gave it (may hold credentials; never log it).
    raw: String,
}

impl SourceSpec {
    /// The input as given, credentials included: for telling inputs apart, never
    /// for showing (use [`Self::name`]).
    pub fn input(&self) -> &str {
        &self.raw
    }

    /// Parses one `--input`. Local files must exist.
    pub fn parse(id: u32, input: &str) -> Result<Self, SpecError> {
        let kind = if let Some(rest) = input.strip_prefix("test:") {
            parse_test(input, rest)?
        } else if let Some(n) = input.strip_prefix("camera:") {
            let n: u32 = n
                .parse()
                .map_err(|_| SpecError::BadCamera(input.to_string()))?;
            SourceKind::Camera(PathBuf::from(format!("/dev/video{n}")))
        } else if input.starts_with("/dev/video") {
            SourceKind::Camera(PathBuf::from(input))
        } else if input.starts_with("rtsp://")
            || input.starts_with("rtsps://")
            || input.starts_with("rtspt://")
        {
            SourceKind::Rtsp(input.to_string())
        } else if let Some(path) = input.strip_prefix("file://") {
            SourceKind::File(existing_file(Path::new(path))?)
        } else if input.contains("://") {
            SourceKind::Uri {
                uri: input.to_string(),
                live: true,
            }
        } else {
            SourceKind::File(existing_file(Path::new(input))?)
        };
        Ok(Self {
            id,
            kind,
            raw: input.to_string(),
        })
    }

    /// The input as logs, errors and file names may show it (credentials hidden).
    pub fn name(&self) -> String {
        crate::redact::url(&self.raw)
    }

    /// A short name for output files: the file stem or last path segment.
    pub fn stem(&self) -> String {
        let base = match &self.kind {
            SourceKind::Test { pattern, .. } => format!("test-{pattern}"),
            SourceKind::Camera(dev) => dev
                .file_name()
                .map_or("camera".into(), |n| n.to_string_lossy().into_owned()),
            SourceKind::File(p) => p
                .file_stem()
                .map_or("input".into(), |n| n.to_string_lossy().into_owned()),
            SourceKind::Rtsp(uri) | SourceKind::Uri { uri, .. } => {
                let path = uri.split('?').next().unwrap_or(uri);
                let last = path
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("stream");
                Path::new(last)
                    .file_stem()
                    .map_or("stream".into(), |n| n.to_string_lossy().into_owned())
            }
        };
        let clean: String = base
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() || clean.contains("://") {
            "stream".into()
        } else {
            clean
        }
    }

    /// Whether the source is live: it never waits for us, so its queue drops the
    /// oldest frames when inference falls behind, and it reconnects on failure.
    pub fn is_live(&self) -> bool {
        match &self.kind {
            SourceKind::File(_) => false,
            SourceKind::Uri { live, .. } => *live,
            _ => true,
        }
    }

    /// Whether a failure should be retried (network sources).
    pub fn reconnects(&self) -> bool {
        matches!(
            self.kind,
            SourceKind::Rtsp(_) | SourceKind::Uri { live: true, .. }
        )
    }

    /// The URI `uridecodebin` should open, for URI-based kinds.
    pub fn uri(&self) -> Option<String> {
        match &self.kind {
            SourceKind::File(p) => gstreamer::glib::filename_to_uri(p, None)
                .ok()
                .map(|u| u.to_string()),
            SourceKind::Rtsp(uri) | SourceKind::Uri { uri, .. } => Some(uri.clone()),
            _ => None,
        }
    }

    /// The GStreamer description of the decode pipeline up to raw video, for the
    /// kinds that are not `uridecodebin` (whose URI is set as a property).
    pub fn launch_head(&self) -> String {
        match &self.kind {
            SourceKind::Camera(dev) => {
                // decodebin handles cameras that send MJPEG as well as raw ones.
                format!(
                    "v4l2src name=src device={} do-timestamp=true ! decodebin",
                    quote(&dev.display().to_string())
                )
            }
            SourceKind::Test {
                pattern,
                width,
                height,
                fps,
            } => format!(
                "videotestsrc name=src is-live=true pattern={pattern} ! video/x-raw,width={width},height={height},framerate={fps}/1"
            ),
            _ => "uridecodebin name=src".to_string(),
        }
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn existing_file(path: &Path) -> Result<PathBuf, SpecError> {
    if !path.is_file() {
        return Err(SpecError::NotFound(path.to_path_buf()));
    }
    path.canonicalize()
        .map_err(|_| SpecError::NotFound(path.to_path_buf()))
}

/// `test:` or `test:PATTERN?width=W&height=H&fps=F` (defaults: smpte, 640×480, 10).
/// videotestsrc's pattern names (GStreamer 1.22), in its enum's order: a name or
/// its number is accepted.
const TEST_PATTERNS: [&str; 26] = [
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];

fn parse_test(input: &str, rest: &str) -> Result<SourceKind, SpecError> {
    let bad = |why: &str| SpecError::BadTest(input.to_string(), why.to_string());
    let (pattern, query) = rest.split_once('?').unwrap_or((rest, ""));
    let pattern = if pattern.is_empty() { "smpte" } else { pattern };
    let known = TEST_PATTERNS.contains(&pattern)
        || pattern
            .parse::<usize>()
            .is_ok_and(|n| n < TEST_PATTERNS.len());
    if !known {
        return Err(bad(
            "the pattern is a videotestsrc pattern name such as smpte, ball or snow (gst-inspect-1.0 videotestsrc lists them)",
        ));
    }
    let (mut width, mut height, mut fps) = (640u32, 480u32, 10u32);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        let value: u32 = value
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad("values are positive integers"))?;
        match key {
            "width" => width = value,
            "height" => height = value,
            "fps" => fps = value,
            other => return Err(bad(&format!("unknown key {other:?} (width, height, fps)"))),
        }
    }
    Ok(SourceKind::Test {
        pattern: pattern.to_string(),
        width,
        height,
        fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let rtsp = SourceSpec::parse(0, "rtsp://u:p@127.0.0.1:8554/cam1").unwrap();
        assert!(matches!(rtsp.kind, SourceKind::Rtsp(_)) && rtsp.is_live() && rtsp.reconnects());
        assert_eq!(rtsp.name(), "rtsp://***@127.0.0.1:8554/cam1");
        assert_eq!(rtsp.stem(), "cam1");
        let hls = SourceSpec::parse(1, "https://example.org/live/index.m3u8").unwrap();
        assert!(matches!(hls.kind, SourceKind::Uri { live: true, .. }) && hls.reconnects());
        assert_eq!(hls.stem(), "index");
        let cam = SourceSpec::parse(2, "camera:1").unwrap();
        assert_eq!(cam.kind, SourceKind::Camera(PathBuf::from("/dev/video1")));
        assert!(cam.is_live() && !cam.reconnects());
        let test = SourceSpec::parse(3, "test:ball?width=320&height=240&fps=15").unwrap();
        assert_eq!(
            test.kind,
            SourceKind::Test {
                pattern: "ball".into(),
                width: 320,
                height: 240,
                fps: 15
            }
        );
        assert_eq!(SourceSpec::parse(4, "test:").unwrap().stem(), "test-smpte");
        let file = SourceSpec::parse(
            5,
            concat!(env!("CARGO_MANIFEST_DIR"), "/media/vtest-40.avi"),
        )
        .unwrap();
        assert!(!file.is_live() && file.uri().unwrap().starts_with("file:///"));
        assert_eq!(file.stem(), "vtest-40");
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            SourceSpec::parse(0, "/nope.mp4").unwrap_err(),
            SpecError::NotFound("/nope.mp4".into())
        );
        assert!(matches!(
            SourceSpec::parse(0, "camera:x"),
            Err(SpecError::BadCamera(_))
        ));
        assert!(matches!(
            SourceSpec::parse(0, "test:ball?fps=0"),
            Err(SpecError::BadTest(..))
        ));
        assert!(matches!(
            SourceSpec::parse(0, "test:ball?speed=2"),
            Err(SpecError::BadTest(..))
        ));
        assert!(matches!(
            SourceSpec::parse(0, "test:nosuchpattern"),
            Err(SpecError::BadTest(..))
        ));
        assert!(
            SourceSpec::parse(0, "test:18").is_ok(),
            "a pattern's number"
        );
        assert!(SourceSpec::parse(0, "test:26").is_err());
    }

    #[test]
    fn camera_pipeline_is_v4l2_then_decodebin() {
        // No camera exists on the CI machine; the pipeline description is what can
        // be checked there, and tests/live.rs checks that GStreamer accepts it.
        let cam = SourceSpec::parse(0, "/dev/video2").unwrap();
        assert_eq!(
            cam.launch_head(),
            "v4l2src name=src device=\"/dev/video2\" do-timestamp=true ! decodebin"
        );
        let test = SourceSpec::parse(0, "test:ball?fps=5").unwrap();
        assert_eq!(
            test.launch_head(),
            "videotestsrc name=src is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=5/1"
        );
    }

    proptest::proptest! {
        /// Any `--input`: a source or an error, never a panic; its name and stem
        /// are printable and its stem is a safe file name.
        #[test]
        fn any_input_parses_or_errs(input in "\\PC{0,60}", scheme in proptest::sample::select(vec!["", "rtsp://", "http://", "test:", "camera:", "file://"])) {
            if let Ok(spec) = SourceSpec::parse(0, &format!("{scheme}{input}")) {
                let stem = spec.stem();
                proptest::prop_assert!(!stem.is_empty() && !stem.contains('/'));
                let _ = spec.name();
                let _ = spec.launch_head();
            }
        }
    }
}
