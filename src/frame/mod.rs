//! The decoded video frame every stage shares: [`Frame`] (I420, as the decoder gives
//! it) and its colour space ([`colour`]). A leaf module: sources make frames,
//! infer, sinks, train and the pipeline read them, and it imports none of them.

pub mod colour;

use colour::ColourSpace;

/// One decoded video frame in planar YUV 4:2:0 (I420), planes packed without row
/// padding: Y (`width × height`), then U and V (`ceil(width/2) × ceil(height/2)`).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which input this frame came from (0 for the first `--input`).
    pub stream_id: u32,
    /// 0-based index within its stream, without gaps.
    pub index: u64,
    /// Presentation timestamp in nanoseconds, as the decoder gave it.
    pub pts_ns: Option<u64>,
    /// Frame duration in nanoseconds, when known.
    pub duration_ns: Option<u64>,
    /// For live sources: when the frame was captured, as Unix time in nanoseconds
    /// (the pipeline clock's view, so it includes network and jitter-buffer delay).
    pub captured_unix_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    /// Frame rate the stream declares, as a fraction (`0/1` when it does not).
    pub fps: (i32, i32),
    /// How to turn the YUV samples into RGB.
    pub colour: ColourSpace,
    /// The three planes, back to back.
    pub i420: Vec<u8>,
}

/// Width and height of the chroma planes of a `width × height` I420 frame.
pub fn chroma_size(width: u32, height: u32) -> (usize, usize) {
    (width.div_ceil(2) as usize, height.div_ceil(2) as usize)
}

/// Bytes of a packed `width × height` I420 frame.
pub fn i420_len(width: u32, height: u32) -> usize {
    let (cw, ch) = chroma_size(width, height);
    width as usize * height as usize + 2 * cw * ch
}

impl Frame {
    /// A frame made outside a decoder (tools, tests): no timestamps, no declared
    /// rate, `i420` as [`Frame::i420`] describes it.
    pub fn from_i420(
        stream_id: u32,
        index: u64,
        width: u32,
        height: u32,
        colour: ColourSpace,
        i420: Vec<u8>,
    ) -> Self {
        Self {
            stream_id,
            index,
            pts_ns: None,
            duration_ns: None,
            captured_unix_ns: None,
            width,
            height,
            fps: (0, 1),
            colour,
            i420,
        }
    }

    /// The frame's time on its stream's timeline, in seconds: the capture time for
    /// live sources (it keeps running across reconnections), the presentation
    /// timestamp otherwise; `None` when the decoder gave neither.
    pub fn time_s(&self) -> Option<f64> {
        self.captured_unix_ns
            .or(self.pts_ns)
            .map(|ns| ns as f64 / 1e9)
    }

    /// The nominal frame interval in seconds: the buffer's duration, else the
    /// declared rate; `None` when neither is known.
    pub fn interval_s(&self) -> Option<f64> {
        match (self.duration_ns, self.fps) {
            (Some(d), _) if d > 0 => Some(d as f64 / 1e9),
            (_, (n, d)) if n > 0 && d > 0 => Some(f64::from(d) / f64::from(n)),
            _ => None,
        }
    }

    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = self.width as usize * self.height as usize;
        let (cw, ch) = chroma_size(self.width, self.height);
        let (y, rest) = self.i420.split_at(luma);
        let (u, v) = rest.split_at(cw * ch);
        (y, u, v)
    }

    /// The Y, U and V planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width as usize * self.height as usize;
        let (cw, ch) = chroma_size(self.width, self.height);
        let (y, rest) = self.i420.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(cw * ch);
        (y, u, v)
    }
}
