//! A decoding source: `uridecodebin ! videoconvert ! I420 appsink`, for any file or
//! URI the installed GStreamer plugins can decode. Frames stay in YUV (most decoders
//! give I420, so `videoconvert` passes them through) with the colour space the caps
//! declare.
//!
//! [`VideoSource::open`] prerolls the pipeline, so a missing, unreadable or
//! undecodable input fails before any other stage starts, and the frame size, rate
//! and declared duration are known up front. [`VideoSource::run`] then pulls samples
//! on the calling thread (nothing heavy runs on GStreamer's streaming threads) and
//! sends them, blocking, into a bounded channel: a file never drops frames.
//!
//! GStreamer's demuxers treat a cut-off file as a normal end of stream, so `run`
//! compares how far decoding got with the container's declared duration and reports
//! a truncated input as an error after the frames that did decode.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Sender;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::pipeline::{Frame, chroma_size, colour::ColourSpace, i420_len};

/// How long opening (preroll) may take before the input counts as dead.
const PREROLL_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors from opening or decoding an input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input not found: {0}")]
    NotFound(PathBuf),
    #[error("cannot set up GStreamer: {0}")]
    Gstreamer(String),
    #[error("cannot decode {input}: {message}")]
    Decode { input: String, message: String },
    #[error("{input} has no video stream")]
    NoVideo { input: String },
    #[error("timed out after {secs} s opening {input}")]
    Timeout { input: String, secs: u64 },
    #[error(
        "{input} ended early: decoded {decoded:.2} s of the {declared:.2} s its container declares ({frames} frames); the file is truncated or corrupt"
    )]
    Truncated {
        input: String,
        decoded: f64,
        declared: f64,
        frames: u64,
    },
    #[error("{input}: frame size changed from {from} to {to} mid-stream, which is not supported")]
    SizeChanged {
        input: String,
        from: String,
        to: String,
    },
}

/// What is known about a source after it opened.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    /// Frame rate as a fraction; `0/1` when the stream does not say.
    pub fps: (i32, i32),
    /// Duration the container declares, when it does.
    pub duration_ns: Option<u64>,
}

/// What a source did.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    pub frames: u64,
}

/// An opened (prerolled) decoding source.
pub struct VideoSource {
    input: String,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    info: SourceInfo,
    stream_id: u32,
}

/// Turns `--input` (a path or a URI) into a URI, checking that a local file exists.
pub fn input_uri(input: &str) -> Result<String, SourceError> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let path = Path::new(input);
    if !path.is_file() {
        return Err(SourceError::NotFound(path.to_path_buf()));
    }
    let abs = path
        .canonicalize()
        .map_err(|_| SourceError::NotFound(path.to_path_buf()))?;
    gst::glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| SourceError::Gstreamer(e.to_string()))
}

impl VideoSource {
    /// Builds and prerolls the decode pipeline for `input`.
    pub fn open(input: &str, stream_id: u32) -> Result<Self, SourceError> {
        let uri = input_uri(input)?;
        gst::init().map_err(|e| SourceError::Gstreamer(e.to_string()))?;
        let pipeline = gst::parse::launch(
            "uridecodebin name=src ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=4 enable-last-sample=false",
        )
        .map_err(|e| SourceError::Gstreamer(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| SourceError::Gstreamer("launch did not give a pipeline".into()))?;
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| SourceError::Gstreamer(format!("element {name} missing")))
        };
        by_name("src")?.set_property("uri", &uri);
        let sink = by_name("sink")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| SourceError::Gstreamer("sink is not an appsink".into()))?;
        let mut source = Self {
            input: input.to_string(),
            pipeline,
            sink,
            info: SourceInfo {
                width: 0,
                height: 0,
                fps: (0, 1),
                duration_ns: None,
            },
            stream_id,
        };
        source.preroll()?;
        Ok(source)
    }

    fn preroll(&mut self) -> Result<(), SourceError> {
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| SourceError::Gstreamer("pipeline without a bus".into()))?;
        if self.pipeline.set_state(gst::State::Paused).is_err() {
            return Err(self
                .bus_error(&bus)
                .unwrap_or_else(|| self.decode_error("cannot start decoding".into())));
        }
        let deadline = std::time::Instant::now() + PREROLL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(SourceError::Timeout {
                    input: self.input.clone(),
                    secs: PREROLL_TIMEOUT.as_secs(),
                });
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::AsyncDone(_) => break,
                gst::MessageView::Error(err) => {
                    let text = error_text(err);
                    // Nothing reached the video branch: the input has no video stream
                    // (an audio-only file, say), which deserves a plain message.
                    if text.contains("not-linked") {
                        return Err(SourceError::NoVideo {
                            input: self.input.clone(),
                        });
                    }
                    return Err(self.decode_error(text));
                }
                gst::MessageView::Eos(_) => {
                    return Err(SourceError::NoVideo {
                        input: self.input.clone(),
                    });
                }
                _ => {}
            }
        }
        let caps = self
            .sink
            .static_pad("sink")
            .and_then(|p| p.current_caps())
            .ok_or_else(|| SourceError::NoVideo {
                input: self.input.clone(),
            })?;
        let info =
            gst_video::VideoInfo::from_caps(&caps).map_err(|e| self.decode_error(e.to_string()))?;
        self.info = SourceInfo {
            width: info.width(),
            height: info.height(),
            fps: (info.fps().numer(), info.fps().denom()),
            duration_ns: self
                .pipeline
                .query_duration::<gst::ClockTime>()
                .map(|d| d.nseconds()),
        };
        tracing::info!(stream = self.stream_id, input = %self.input, width = info.width(), height = info.height(),
            fps = %format!("{}/{}", info.fps().numer(), info.fps().denom()), "source opened");
        Ok(())
    }

    /// Frame size, rate and declared duration.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn decode_error(&self, message: String) -> SourceError {
        SourceError::Decode {
            input: self.input.clone(),
            message,
        }
    }

    fn bus_error(&self, bus: &gst::Bus) -> Option<SourceError> {
        bus.iter().find_map(|msg| match msg.view() {
            gst::MessageView::Error(err) => Some(self.decode_error(error_text(err))),
            _ => None,
        })
    }

    /// Decodes to the end, sending every frame; blocks when `tx` is full. Stops early
    /// (without error) when the receiver is gone.
    pub fn run(self, tx: Sender<Frame>) -> Result<SourceStats, SourceError> {
        let result = self.pump(&tx);
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }

    fn pump(&self, tx: &Sender<Frame>) -> Result<SourceStats, SourceError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| self.decode_error("cannot start playback".into()))?;
        let mut stats = SourceStats::default();
        let mut decoded_until_ns = 0u64;
        while let Ok(sample) = self.sink.pull_sample() {
            let frame = self.frame_from(&sample, stats.frames)?;
            if let Some(pts) = frame.pts_ns {
                decoded_until_ns = decoded_until_ns.max(pts + frame.duration_ns.unwrap_or(0));
            }
            stats.frames += 1;
            if tx.send(frame).is_err() {
                return Ok(stats);
            }
        }
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| SourceError::Gstreamer("pipeline without a bus".into()))?;
        if let Some(err) = self.bus_error(&bus) {
            return Err(err);
        }
        self.check_complete(decoded_until_ns, stats.frames)?;
        Ok(stats)
    }

    /// Errors when decoding stopped well short of the declared duration: more than
    /// two frame intervals or a quarter second, whichever is larger.
    fn check_complete(&self, decoded_ns: u64, frames: u64) -> Result<(), SourceError> {
        let Some(declared) = self.info.duration_ns else {
            return Ok(());
        };
        let frame_ns = match self.info.fps {
            (n, d) if n > 0 && d > 0 => 1_000_000_000 * d as u64 / n as u64,
            _ => 0,
        };
        let slack = (2 * frame_ns).max(250_000_000);
        if decoded_ns + slack < declared {
            return Err(SourceError::Truncated {
                input: self.input.clone(),
                decoded: decoded_ns as f64 / 1e9,
                declared: declared as f64 / 1e9,
                frames,
            });
        }
        Ok(())
    }

    fn frame_from(&self, sample: &gst::Sample, index: u64) -> Result<Frame, SourceError> {
        let caps = sample
            .caps()
            .ok_or_else(|| self.decode_error("sample without caps".into()))?;
        let info =
            gst_video::VideoInfo::from_caps(caps).map_err(|e| self.decode_error(e.to_string()))?;
        if (info.width(), info.height()) != (self.info.width, self.info.height) {
            return Err(SourceError::SizeChanged {
                input: self.input.clone(),
                from: format!("{}x{}", self.info.width, self.info.height),
                to: format!("{}x{}", info.width(), info.height()),
            });
        }
        let buffer = sample
            .buffer()
            .ok_or_else(|| self.decode_error("sample without buffer".into()))?;
        let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| self.decode_error(e.to_string()))?;
        let (w, h) = (info.width(), info.height());
        let (cw, ch) = chroma_size(w, h);
        let mut i420 = Vec::with_capacity(i420_len(w, h));
        for (plane, (pw, ph)) in [(w as usize, h as usize), (cw, ch), (cw, ch)]
            .into_iter()
            .enumerate()
        {
            let data = vframe
                .plane_data(plane as u32)
                .map_err(|e| self.decode_error(e.to_string()))?;
            let stride = vframe.plane_stride()[plane] as usize;
            for row in data.chunks(stride).take(ph) {
                i420.extend_from_slice(&row[..pw]);
            }
        }
        Ok(Frame {
            stream_id: self.stream_id,
            index,
            pts_ns: buffer.pts().map(|t| t.nseconds()),
            duration_ns: buffer.duration().map(|t| t.nseconds()),
            width: w,
            height: h,
            colour: colour_space(&info),
            i420,
        })
    }
}

impl Drop for VideoSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The colour space the caps declare; BT.601 when they do not say (as swscale
/// and most players assume).
fn colour_space(info: &gst_video::VideoInfo) -> ColourSpace {
    let colorimetry = info.colorimetry();
    let matrix = match colorimetry.matrix() {
        gst_video::VideoColorMatrix::Bt709 => ColourSpace::BT709,
        gst_video::VideoColorMatrix::Bt2020 => ColourSpace::BT2020,
        _ => ColourSpace::BT601,
    };
    if colorimetry.range() == gst_video::VideoColorRange::Range0_255 {
        matrix.full_range()
    } else {
        matrix
    }
}

/// One line from a GStreamer error message: the error, plus the debug detail's last
/// clause when it adds something.
fn error_text(err: &gst::message::Error) -> String {
    let mut text = err.error().to_string();
    if let Some(debug) = err.debug() {
        let detail = debug.lines().last().unwrap_or_default().trim().to_string();
        if !detail.is_empty() && !text.contains(&detail) {
            text = format!("{text} ({detail})");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_passes_through_and_missing_path_is_named() {
        assert_eq!(input_uri("rtsp://cam/stream").unwrap(), "rtsp://cam/stream");
        let err = input_uri("/nonexistent/clip.mp4").unwrap_err();
        assert_eq!(err.to_string(), "input not found: /nonexistent/clip.mp4");
    }
}
