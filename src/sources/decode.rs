//! A decoding source: `<head> ! videoconvert ! I420 appsink`, where the head is
//! `uridecodebin` (files, RTSP, HTTP/HLS), `v4l2src ! decodebin` (cameras) or a live
//! `videotestsrc` (see [`super::spec`]). Frames stay in YUV (most decoders give I420,
//! so `videoconvert` passes them through) with the colour space the caps declare.
//!
//! [`VideoSource::open`] prerolls files, so a missing, unreadable or undecodable file
//! fails before any other stage starts. Live sources do not preroll; their errors
//! come while pumping. [`VideoSource::pump`] pulls samples on the calling thread
//! (nothing heavy runs on GStreamer's streaming threads) and queues them under the
//! stream's policy ([`super::queue`]).
//!
//! GStreamer's demuxers treat a cut-off file as a normal end of stream, so for files
//! `pump` compares how far decoding got with the container's declared duration and
//! reports a truncated input as an error after the frames that did decode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::clock::StreamClock;
use super::queue::{Closed, StreamQueue};
use super::spec::{RtspOptions, RtspTransport, SourceKind, SourceSpec};
use super::stop::{SourceEnd, StopFlags};
use crate::frame::{Frame, chroma_size, colour::ColourSpace, i420_len};

/// How long opening a file (preroll) may take.
const PREROLL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a waiting pump looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Errors from opening or decoding an input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error("cannot set up GStreamer: {0}")]
    Gstreamer(String),
    #[error("cannot decode {input}: {message}")]
    Decode { input: String, message: String },
    #[error("{input}: {message}")]
    Stream { input: String, message: String },
    #[error("{input} has no video stream")]
    NoVideo { input: String },
    #[error("timed out after {secs} s opening {input}")]
    Timeout { input: String, secs: u64 },
    #[error("{input} stalled: no frame for {secs:.1} s")]
    Stalled { input: String, secs: f64 },
    #[error(
        "{input} ended early: decoded {decoded:.2} s of the {declared:.2} s its container declares ({frames} frames); the file is truncated or corrupt"
    )]
    Truncated {
        input: String,
        decoded: f64,
        declared: f64,
        frames: u64,
    },
    #[error("{input}: gave up after {attempts} reconnection attempts; last error: {last}")]
    GaveUp {
        input: String,
        attempts: u32,
        last: String,
    },
}

/// What is known about a source after it opened (files; live sources learn their
/// size from the first frame).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    /// Frame rate as a fraction; `0/1` when the stream does not say.
    pub fps: (i32, i32),
    /// Duration the container declares, when it does.
    pub duration_ns: Option<u64>,
}

impl SourceInfo {
    /// Frames a file should hold, from its declared duration and rate.
    pub fn expected_frames(&self) -> Option<u64> {
        let (n, d) = self.fps;
        let duration = self.duration_ns?;
        (n > 0 && d > 0).then(|| (duration as f64 * n as f64 / (d as f64 * 1e9)).round() as u64)
    }
}

/// An opened decoding source.
pub struct VideoSource {
    name: String,
    stream_id: u32,
    live: bool,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    info: Option<SourceInfo>,
}

impl VideoSource {
    /// Builds the decode pipeline for `spec` and starts it (files are prerolled
    /// first, so their errors surface here).
    pub fn open(spec: &SourceSpec, rtsp: &RtspOptions) -> Result<Self, SourceError> {
        gst::init().map_err(|e| SourceError::Gstreamer(e.to_string()))?;
        let description = format!(
            "{} ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=4 enable-last-sample=false",
            spec.launch_head()
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| SourceError::Gstreamer(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| SourceError::Gstreamer("launch did not give a pipeline".into()))?;
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| SourceError::Gstreamer(format!("element {name} missing")))
        };
        if let Some(uri) = spec.uri() {
            let src = by_name("src")?;
            src.set_property("uri", &uri);
            if matches!(spec.kind, SourceKind::Rtsp(_)) {
                let rtsp = rtsp.clone();
                src.connect("source-setup", false, move |args| {
                    if let Some(element) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                        configure_rtspsrc(&element, &rtsp);
                    }
                    None
                });
            }
        }
        let sink = by_name("sink")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| SourceError::Gstreamer("sink is not an appsink".into()))?;
        let mut source = Self {
            name: spec.name(),
            stream_id: spec.id,
            live: spec.is_live(),
            pipeline,
            sink,
            info: None,
        };
        // A URI is live or not depending on what it turns out to be (an RTSP camera
        // or live HLS is, an MP4 over HTTP is not): GStreamer says so when pausing.
        if matches!(spec.kind, SourceKind::Uri { .. }) {
            source.live = source.pipeline.set_state(gst::State::Paused)
                == Ok(gst::StateChangeSuccess::NoPreroll);
        }
        if source.live {
            source
                .pipeline
                .set_state(gst::State::Playing)
                .map_err(|_| {
                    source
                        .bus_error()
                        .unwrap_or_else(|| source.decode_error("cannot start the source".into()))
                })?;
        } else {
            source.preroll()?;
            source
                .pipeline
                .set_state(gst::State::Playing)
                .map_err(|_| source.decode_error("cannot start playback".into()))?;
        }
        Ok(source)
    }

    fn preroll(&mut self) -> Result<(), SourceError> {
        let bus = self.bus()?;
        if self.pipeline.set_state(gst::State::Paused).is_err() {
            return Err(self
                .bus_error()
                .unwrap_or_else(|| self.decode_error("cannot start decoding".into())));
        }
        let deadline = Instant::now() + PREROLL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SourceError::Timeout {
                    input: self.name.clone(),
                    secs: PREROLL_TIMEOUT.as_secs(),
                });
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::AsyncDone(_) => break,
                gst::MessageView::Error(err) => return Err(self.classify(err)),
                gst::MessageView::Eos(_) => {
                    return Err(SourceError::NoVideo {
                        input: self.name.clone(),
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
                input: self.name.clone(),
            })?;
        let info =
            gst_video::VideoInfo::from_caps(&caps).map_err(|e| self.decode_error(e.to_string()))?;
        self.info = Some(SourceInfo {
            width: info.width(),
            height: info.height(),
            fps: (info.fps().numer(), info.fps().denom()),
            duration_ns: self
                .pipeline
                .query_duration::<gst::ClockTime>()
                .map(|d| d.nseconds()),
        });
        tracing::info!(stream = self.stream_id, input = %self.name, width = info.width(), height = info.height(),
            fps = %format!("{}/{}", info.fps().numer(), info.fps().denom()), "source opened");
        Ok(())
    }

    /// Whether this source turned out to be live (see [`SourceSpec::is_live`]).
    pub fn is_live(&self) -> bool {
        self.live
    }

    fn bus(&self) -> Result<gst::Bus, SourceError> {
        self.pipeline
            .bus()
            .ok_or_else(|| SourceError::Gstreamer("pipeline without a bus".into()))
    }

    fn decode_error(&self, message: String) -> SourceError {
        SourceError::Decode {
            input: self.name.clone(),
            message,
        }
    }

    /// A GStreamer error as a source error: "not-linked" means nothing reached the
    /// video branch, i.e. the input has no video stream (an audio-only file, say).
    fn classify(&self, err: &gst::message::Error) -> SourceError {
        let text = error_text(err);
        if text.contains("not-linked") {
            return SourceError::NoVideo {
                input: self.name.clone(),
            };
        }
        if self.live {
            // A camera or network stream: the problem is reaching it, not decoding.
            return SourceError::Stream {
                input: self.name.clone(),
                message: text,
            };
        }
        self.decode_error(text)
    }

    fn bus_error(&self) -> Option<SourceError> {
        let bus = self.pipeline.bus()?;
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(err) => Some(self.classify(err)),
                _ => None,
            })
    }

    /// Decodes until the end, a stop flag or an error, queueing every frame.
    /// Frame indices continue from `next_index` and timestamps follow `clock` (both
    /// kept across reconnections). A live source that gives no frame for `stall` is
    /// an error.
    pub fn pump(
        &self,
        queue: &StreamQueue,
        next_index: &mut u64,
        clock: &mut StreamClock,
        stop: StopFlags<'_>,
        stall: Duration,
    ) -> Result<SourceEnd, SourceError> {
        let first_index = *next_index;
        let mut decoded_until_ns = 0u64;
        let mut last_frame = Instant::now();
        let mut size: Option<(u32, u32)> = self.info.as_ref().map(|i| (i.width, i.height));
        if let Some(expected) = self.info.as_ref().and_then(SourceInfo::expected_frames) {
            queue.metrics().frames_expected.set(expected as i64);
        }
        loop {
            if let Some(end) = stop.raised() {
                return Ok(end);
            }
            let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64))
            else {
                if let Some(err) = self.bus_error() {
                    return Err(err);
                }
                if self.sink.is_eos() {
                    if !self.live {
                        self.check_complete(decoded_until_ns, *next_index - first_index)?;
                    }
                    return Ok(SourceEnd::EndOfStream);
                }
                if self.live && last_frame.elapsed() > stall {
                    return Err(SourceError::Stalled {
                        input: self.name.clone(),
                        secs: last_frame.elapsed().as_secs_f64(),
                    });
                }
                continue;
            };
            let frame = self.frame_from(&sample, *next_index, &mut size, clock)?;
            if let Some(pts) = frame.pts_ns {
                decoded_until_ns = decoded_until_ns.max(pts + frame.duration_ns.unwrap_or(0));
            }
            if *next_index == first_index {
                queue.metrics().up.set(1);
            }
            if *next_index == first_index && self.live {
                tracing::info!(stream = self.stream_id, input = %self.name, width = frame.width, height = frame.height, "source connected");
            }
            *next_index += 1;
            last_frame = Instant::now();
            if queue.push(frame) == Err(Closed) {
                return Ok(SourceEnd::DownstreamGone);
            }
        }
    }

    /// Errors when a file's decoding stopped well short of its declared duration:
    /// more than two frame intervals or a quarter second, whichever is larger.
    fn check_complete(&self, decoded_ns: u64, frames: u64) -> Result<(), SourceError> {
        let Some(info) = &self.info else {
            return Ok(());
        };
        let Some(declared) = info.duration_ns else {
            return Ok(());
        };
        let frame_ns = match info.fps {
            (n, d) if n > 0 && d > 0 => 1_000_000_000 * d as u64 / n as u64,
            _ => 0,
        };
        let slack = (2 * frame_ns).max(250_000_000);
        if decoded_ns + slack < declared {
            return Err(SourceError::Truncated {
                input: self.name.clone(),
                decoded: decoded_ns as f64 / 1e9,
                declared: declared as f64 / 1e9,
                frames,
            });
        }
        Ok(())
    }

    /// Wall-clock time at which a live buffer with running time `running` was
    /// captured: now, minus how far the pipeline clock has run past it.
    fn captured_at(&self, running: Option<gst::ClockTime>) -> Option<u64> {
        if !self.live {
            return None;
        }
        let running_now = self.pipeline.current_running_time()?;
        let age = running_now.nseconds().saturating_sub(running?.nseconds());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos() as u64;
        Some(now.saturating_sub(age))
    }

    fn frame_from(
        &self,
        sample: &gst::Sample,
        index: u64,
        size: &mut Option<(u32, u32)>,
        clock: &mut StreamClock,
    ) -> Result<Frame, SourceError> {
        let caps = sample
            .caps()
            .ok_or_else(|| self.decode_error("sample without caps".into()))?;
        let info =
            gst_video::VideoInfo::from_caps(caps).map_err(|e| self.decode_error(e.to_string()))?;
        let (w, h) = (info.width(), info.height());
        // HLS switching variants, a camera reconfigured: every stage handles a new
        // size (the MP4 scales to its first one), so it is only logged.
        if let Some((pw, ph)) = *size
            && (pw, ph) != (w, h)
        {
            tracing::warn!(stream = self.stream_id, input = %self.name, from = %format!("{pw}x{ph}"),
                to = %format!("{w}x{h}"), "frame size changed");
        }
        *size = Some((w, h));
        let buffer = sample
            .buffer()
            .ok_or_else(|| self.decode_error("sample without buffer".into()))?;
        let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| self.decode_error(e.to_string()))?;
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
        let running = running_time(sample, buffer.pts());
        let captured_unix_ns = self.captured_at(running);
        Ok(Frame {
            stream_id: self.stream_id,
            index,
            pts_ns: clock.stamp(captured_unix_ns, running.map(|t| t.nseconds())),
            duration_ns: buffer.duration().map(|t| t.nseconds()),
            captured_unix_ns,
            width: w,
            height: h,
            fps: (info.fps().numer(), info.fps().denom()),
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

/// A buffer's running time through its sample's segment (raw PTS is wrong after a
/// seek and for HLS); the PTS itself when the segment is not in time format.
fn running_time(sample: &gst::Sample, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    let pts = pts?;
    match sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
    {
        Some(segment) => segment.to_running_time(pts).or(Some(pts)),
        None => Some(pts),
    }
}

/// Applies the RTSP options to the `rtspsrc` that `uridecodebin` made.
fn configure_rtspsrc(element: &gst::Element, rtsp: &RtspOptions) {
    if element.find_property("latency").is_none() {
        return;
    }
    element.set_property("latency", rtsp.latency_ms);
    match rtsp.transport {
        RtspTransport::Tcp => element.set_property_from_str("protocols", "tcp"),
        RtspTransport::Udp => element.set_property_from_str("protocols", "udp"),
        // UDP first; after `timeout` µs without data rtspsrc retries over TCP.
        RtspTransport::Auto => {
            element.set_property("timeout", u64::from(rtsp.udp_timeout_ms) * 1000)
        }
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
    crate::redact::text(&text.replace('\n', " "))
}

/// Decodes a whole file into memory (for benchmarks, tests and tools; a run
/// streams instead). At most `limit` frames when given.
pub fn read_frames(input: &str, limit: Option<usize>) -> Result<Vec<Frame>, SourceError> {
    let spec = SourceSpec::parse(0, input)?;
    let source = VideoSource::open(&spec, &RtspOptions::default())?;
    let (queue, rx) = StreamQueue::new(8, false, crate::telemetry::StreamMetrics::default());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop_pump = stop.clone();
    let pump = std::thread::spawn(move || {
        let mut index = 0;
        let (removed, abort) = (AtomicBool::new(false), AtomicBool::new(false));
        let flags = StopFlags {
            user: &stop_pump,
            removed: &removed,
            abort: &abort,
        };
        let mut clock = StreamClock::default();
        source.pump(
            &queue,
            &mut index,
            &mut clock,
            flags,
            Duration::from_secs(10),
        )
    });
    let mut frames = Vec::new();
    for frame in rx.iter() {
        frames.push(frame);
        if limit.is_some_and(|l| frames.len() >= l) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    drop(rx);
    pump.join()
        .map_err(|_| SourceError::Gstreamer("decoder thread panicked".into()))??;
    Ok(frames)
}
