//! The video encoder: `appsrc ! videoscale ! videoconvert ! x264enc ! h264parse !
//! mp4mux ! filesink`, fed with annotated I420 frames (x264's own format, so
//! `videoconvert` passes them through). The MP4 is written to a staged name and
//! finished with a real EOS (the muxer writes its index on EOS), so a file under the
//! final name is always complete and playable.
//!
//! The MP4 keeps the size of the stream's first frame. A camera that comes back at
//! another size renegotiates the appsrc's caps, and `videoscale` scales its frames
//! to the first size (letterboxed when the aspect ratio changed): one file per
//! stream with one timeline, which players and editors handle, where an MP4 whose
//! track changes size mid-way is something mp4mux cannot write and few players
//! show. The metadata keeps each frame's own size and pixel coordinates.

use std::path::PathBuf;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{SinkError, staging::StagedFile};
use crate::frame::colour::{ColourSpace, Matrix};
use crate::frame::{Frame, chroma_size};

/// How long the muxer may take to finish after EOS.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// An H.264/MP4 file encoder.
pub struct Mp4Encoder {
    /// Taken by [`Mp4Encoder::finish`].
    staged: Option<StagedFile>,
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    /// The caps of the frames pushed now (they follow the input's size).
    info: gst_video::VideoInfo,
    /// The size written to the file: the first frame's.
    out_size: (u32, u32),
    frame_ns: u64,
    /// The input declared a frame rate: output timestamps are `n / fps`.
    constant_rate: bool,
    /// The last timestamp pushed.
    last_pts: Option<u64>,
    frames: u64,
}

impl Mp4Encoder {
    /// Starts an encoder for `width`×`height` I420 frames at `fps`. With a `0/1`
    /// (variable) rate the decoder's timestamps are kept, and 25 fps fills in for
    /// missing ones.
    pub fn create(
        staged: StagedFile,
        width: u32,
        height: u32,
        fps: (i32, i32),
        colour: ColourSpace,
    ) -> Result<Self, SinkError> {
        let setup = |e: &dyn std::fmt::Display| SinkError::EncoderSetup(e.to_string());
        gst::init().map_err(|e| setup(&e))?;
        let constant_rate = fps.0 > 0 && fps.1 > 0;
        let fps = if constant_rate {
            gst::Fraction::new(fps.0, fps.1)
        } else {
            gst::Fraction::new(25, 1)
        };
        let colorimetry = colorimetry(colour);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
            .colorimetry(&colorimetry)
            .fps(fps)
            .build()
            .map_err(|e| setup(&e))?;
        let caps = info.to_caps().map_err(|e| setup(&e))?;
        let pipeline = launch(width, height)?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| SinkError::EncoderSetup("appsrc missing".into()))?;
        appsrc.set_caps(Some(&caps));
        pipeline
            .by_name("sink")
            .ok_or_else(|| SinkError::EncoderSetup("filesink missing".into()))?
            .set_property("location", staged.temp_path().to_string_lossy().as_ref());
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| setup(&e))?;
        let frame_ns = 1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64;
        Ok(Self {
            staged: Some(staged),
            pipeline,
            appsrc,
            info,
            out_size: (width, height),
            frame_ns,
            constant_rate,
            last_pts: None,
            frames: 0,
        })
    }

    /// Encodes one frame (blocks while the encoder's queue is full).
    pub fn push(&mut self, frame: Frame) -> Result<(), SinkError> {
        if let Some(err) = self.bus_error() {
            return Err(err);
        }
        if (frame.width, frame.height) != (self.info.width(), self.info.height()) {
            self.renegotiate(frame.width, frame.height)?;
        }
        let data = layout_i420(&self.info, frame.i420, frame.width, frame.height);
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            let (pts, duration) = if self.constant_rate && frame.captured_unix_ns.is_none() {
                // A file: frame n at n / fps, so the MP4 keeps the input's frame count
                // and rate even when the decoder's timestamps have gaps (a damaged
                // input).
                (self.frames * self.frame_ns, self.frame_ns)
            } else {
                // A live stream follows its capture timeline (see
                // sources::clock): dropped frames and outages stay gaps instead of
                // compressing time. Made monotonic for safety.
                let source = frame.pts_ns.unwrap_or(self.frames * self.frame_ns);
                let pts = match self.last_pts {
                    Some(last) if source <= last => {
                        last + frame.duration_ns.unwrap_or(self.frame_ns)
                    }
                    _ => source,
                };
                (pts, frame.duration_ns.unwrap_or(self.frame_ns))
            };
            self.last_pts = Some(pts);
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        self.appsrc
            .push_buffer(buffer)
            .map_err(|e| self.encode_error(format!("{e:?}")))?;
        self.frames += 1;
        Ok(())
    }

    /// New caps on the appsrc for frames of another size (a camera that came back
    /// at another resolution); downstream scales them to the file's size.
    fn renegotiate(&mut self, width: u32, height: u32) -> Result<(), SinkError> {
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
            .colorimetry(&self.info.colorimetry())
            .fps(self.info.fps())
            .build()
            .map_err(|e| self.encode_error(e.to_string()))?;
        let caps = info
            .to_caps()
            .map_err(|e| self.encode_error(e.to_string()))?;
        tracing::warn!(
            file = %self.staged.as_ref().map_or(String::new(), |s| s.final_path().display().to_string()),
            from = %format!("{}x{}", self.info.width(), self.info.height()),
            to = %format!("{width}x{height}"),
            kept = %format!("{}x{}", self.out_size.0, self.out_size.1),
            "frame size changed; the video is scaled to its first size"
        );
        self.appsrc.set_caps(Some(&caps));
        self.info = info;
        Ok(())
    }

    /// Sends EOS, waits for the muxer to finish the file, and gives it its final
    /// name (or `STEM.incomplete.mp4` when `complete` is false). A file with no
    /// frames is removed instead and `None` returned.
    pub fn finish(mut self, complete: bool) -> Result<Option<PathBuf>, SinkError> {
        let ended = self.end_stream();
        let _ = self.pipeline.set_state(gst::State::Null);
        ended?;
        let Some(staged) = self.staged.take() else {
            return Ok(None);
        };
        if self.frames == 0 {
            return Ok(None);
        }
        let path = if complete {
            staged.commit()?
        } else {
            staged.keep_incomplete()?
        };
        Ok(Some(path))
    }

    fn end_stream(&self) -> Result<(), SinkError> {
        self.appsrc
            .end_of_stream()
            .map_err(|e| self.encode_error(format!("{e:?}")))?;
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| self.encode_error("pipeline without a bus".into()))?;
        let timeout = gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64);
        match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(err) => Err(self.encode_error(err.error().to_string())),
                _ => Ok(()),
            },
            None => Err(self.encode_error(format!(
                "no end of stream after {} s",
                FINISH_TIMEOUT.as_secs()
            ))),
        }
    }

    fn bus_error(&self) -> Option<SinkError> {
        let bus = self.pipeline.bus()?;
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(err) => Some(self.encode_error(err.error().to_string())),
                _ => None,
            })
    }

    fn encode_error(&self, message: String) -> SinkError {
        let path = self
            .staged
            .as_ref()
            .map(|s| s.final_path().to_path_buf())
            .unwrap_or_default();
        SinkError::Encode { path, message }
    }
}

impl Drop for Mp4Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The colorimetry to tag the stream with: the source's colour space, so players
/// convert it back the way the decoder meant it.
fn colorimetry(colour: ColourSpace) -> gst_video::VideoColorimetry {
    let (matrix, transfer, primaries) = match colour.matrix() {
        Matrix::Bt601 => (
            gst_video::VideoColorMatrix::Bt601,
            gst_video::VideoTransferFunction::Bt709,
            gst_video::VideoColorPrimaries::Smpte170m,
        ),
        Matrix::Bt709 => (
            gst_video::VideoColorMatrix::Bt709,
            gst_video::VideoTransferFunction::Bt709,
            gst_video::VideoColorPrimaries::Bt709,
        ),
        Matrix::Bt2020 => (
            gst_video::VideoColorMatrix::Bt2020,
            gst_video::VideoTransferFunction::Bt202010,
            gst_video::VideoColorPrimaries::Bt2020,
        ),
    };
    let range = if colour.is_full_range() {
        gst_video::VideoColorRange::Range0_255
    } else {
        gst_video::VideoColorRange::Range16_235
    };
    gst_video::VideoColorimetry::new(range, matrix, transfer, primaries)
}

/// The encoding pipeline, its caps fixed to `width`×`height`.
fn launch(width: u32, height: u32) -> Result<gst::Pipeline, SinkError> {
    // 4:2:0 H.264 needs even sizes; odd ones are encoded as 4:4:4 instead.
    let format = if width.is_multiple_of(2) && height.is_multiple_of(2) {
        "I420"
    } else {
        "Y444"
    };
    // x264 on one thread, ultrafast: on a small machine the encoder's extra threads
    // would preempt inference, which is the bottleneck. videoscale passes frames
    // of the first size through untouched.
    gst::parse::launch(&format!(
        "appsrc name=src format=time block=true max-bytes=20000000 ! videoscale add-borders=true ! videoconvert ! \
         video/x-raw,format={format},width={width},height={height},pixel-aspect-ratio=1/1 ! \
         x264enc speed-preset=ultrafast pass=qual quantizer=23 threads=1 ! h264parse ! mp4mux ! filesink name=sink"
    ))
    .map_err(|e| SinkError::EncoderSetup(e.to_string()))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| SinkError::EncoderSetup("launch did not give a pipeline".into()))
}

/// Lays packed I420 planes out the way GStreamer's default video info expects
/// (rows padded to 4 bytes); no copy when they already agree.
pub fn layout_i420(
    info: &gst_video::VideoInfo,
    packed: Vec<u8>,
    width: u32,
    height: u32,
) -> Vec<u8> {
    let (cw, ch) = chroma_size(width, height);
    let dims = [(width as usize, height as usize), (cw, ch), (cw, ch)];
    let strides = info.stride();
    let offsets = info.offset();
    let mut packed_offset = 0;
    let mut same = packed.len() == info.size();
    for (plane, &(w, _)) in dims.iter().enumerate() {
        same &= strides[plane] as usize == w && offsets[plane] == packed_offset;
        packed_offset += w * dims[plane].1;
    }
    if same {
        return packed;
    }
    let mut out = vec![0u8; info.size()];
    let mut src = 0;
    for (plane, &(w, h)) in dims.iter().enumerate() {
        let stride = strides[plane] as usize;
        for row in 0..h {
            let dst = offsets[plane] + row * stride;
            out[dst..dst + w].copy_from_slice(&packed[src..src + w]);
            src += w;
        }
    }
    out
}
