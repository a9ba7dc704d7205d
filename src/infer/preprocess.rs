//! Frame to network input, the one preprocessing of `run`, `bench`, `eval` and
//! `retrain` (still images become I420 frames first, see `train::images`).
//!
//! The manifest's `input.resize` places the frame in the input ([`Placement`]):
//! stretched over all of it, or letterboxed (scaled keeping its aspect ratio,
//! centred, the bars filled with `input.pad`). Each I420 plane is resized
//! (bilinear) straight to the placed size, then every placed pixel is converted to
//! RGB with the stream's colour space and written into the network's planar,
//! normalised float layout. Converting after resizing touches at most the input's
//! pixels instead of the whole frame. Boxes map back through the same placement
//! (`model::geometry::InputToSource`).
//!
//! The resize follows the half-pixel-centre convention of OpenCV's `INTER_LINEAR`
//! (source coordinate `(dst + 0.5)·scale − 0.5`, clamped at the borders), which is
//! what the independent reference in `tests/reference/` uses. Chroma samples are
//! taken as centred in their 2×2 block.

use crate::config::{ChannelOrder, InputSpec};
use crate::frame::{Frame, chroma_size};
use crate::model::geometry::Placement;

/// Precomputed tap positions and weights along one axis.
#[derive(Debug, Clone)]
struct Taps {
    /// Per destination sample: the two source indices and the weight of the second.
    taps: Vec<(usize, usize, f32)>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Self {
        let scale = src as f32 / dst as f32;
        let last = src.saturating_sub(1);
        let taps = (0..dst)
            .map(|d| {
                let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i = (s.floor() as usize).min(last);
                (
                    i,
                    (i + 1).min(last),
                    if i >= last { 0.0 } else { s - i as f32 },
                )
            })
            .collect();
        Self { taps }
    }
}

/// One plane's resize: source width, the taps along each axis, and a row buffer.
///
/// Each output row first blends its two source rows (a contiguous loop the
/// compiler vectorises), then samples that blend horizontally: one gather per
/// output sample instead of two.
#[derive(Debug, Clone)]
struct PlaneResize {
    src_w: usize,
    xs: Taps,
    ys: Taps,
    blended: Vec<f32>,
}

impl PlaneResize {
    fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        Self {
            src_w,
            xs: Taps::new(src_w, dst_w),
            ys: Taps::new(src_h, dst_h),
            blended: vec![0.0; src_w],
        }
    }

    /// Bilinear resize of `plane` into `out` (`dst_w × dst_h` floats).
    fn run(&mut self, plane: &[u8], out: &mut [f32]) {
        let (w, dst_w) = (self.src_w, self.xs.taps.len());
        for (row_out, &(top, bottom, fy)) in out.chunks_exact_mut(dst_w).zip(&self.ys.taps) {
            let (t, b) = (
                &plane[top * w..(top + 1) * w],
                &plane[bottom * w..(bottom + 1) * w],
            );
            for ((m, &a), &c) in self.blended.iter_mut().zip(t).zip(b) {
                let a = a as f32;
                *m = a + (c as f32 - a) * fy;
            }
            for (o, &(l, h, fx)) in row_out.iter_mut().zip(&self.xs.taps) {
                let (a, c) = (self.blended[l], self.blended[h]);
                *o = a + (c - a) * fx;
            }
        }
    }
}

/// Converts frames of one size to the network input; build once per source size.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    src_size: (u32, u32),
    /// Network input width and height.
    net_size: (usize, usize),
    /// Where the frame's pixels go in the input.
    placement: Placement,
    /// Per output plane, the normalised value of the bars (letterbox only).
    pad: [f32; 3],
    luma: PlaneResize,
    chroma: PlaneResize,
    /// Channel order of the output planes.
    order: ChannelOrder,
    /// Per RGB channel: scale and offset (`value · scale + offset` =
    /// `(value − mean) / std`).
    norm: [(f32, f32); 3],
    /// Resized Y, U, V at the placed size, reused between frames.
    scratch: [Vec<f32>; 3],
}

impl Preprocessor {
    /// A preprocessor for `src_w`×`src_h` I420 frames into the input `spec`.
    pub fn new(src_w: u32, src_h: u32, spec: &InputSpec) -> Self {
        // The manifest gives mean and std in the network's channel order.
        let plane_of_rgb = match spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let norm = plane_of_rgb.map(|p| (1.0 / spec.std[p], -spec.mean[p] / spec.std[p]));
        let pad = std::array::from_fn(|c| (spec.pad - spec.mean[c]) / spec.std[c]);
        let placement = Placement::new((src_w, src_h), (spec.width, spec.height), spec.resize);
        let (dw, dh) = (placement.width as usize, placement.height as usize);
        let (cw, ch) = chroma_size(src_w, src_h);
        Self {
            src_size: (src_w, src_h),
            net_size: (spec.width as usize, spec.height as usize),
            placement,
            pad,
            luma: PlaneResize::new(src_w as usize, src_h as usize, dw, dh),
            chroma: PlaneResize::new(cw, ch, dw, dh),
            order: spec.channel_order,
            norm,
            scratch: std::array::from_fn(|_| vec![0.0; dw * dh]),
        }
    }

    /// Number of floats of one frame's input (`3·H·W`).
    pub fn input_len(&self) -> usize {
        3 * self.net_size.0 * self.net_size.1
    }

    /// Where the frame lands in the input.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Writes one frame into `out` (`3·H·W` floats, planar in the network's
    /// channel order, normalised).
    pub fn run(&mut self, frame: &Frame, out: &mut [f32]) {
        assert_eq!(
            (frame.width, frame.height),
            self.src_size,
            "frame size does not match the preprocessor"
        );
        assert_eq!(out.len(), self.input_len(), "output buffer size");
        let (y, u, v) = frame.planes();
        let [sy, su, sv] = &mut self.scratch;
        self.luma.run(y, sy);
        self.chroma.run(u, su);
        self.chroma.run(v, sv);
        let coefficients = frame.colour.to_rgb_coefficients();
        let (net_w, net_h) = self.net_size;
        let n = net_w * net_h;
        let (p0, rest) = out.split_at_mut(n);
        let (p1, p2) = rest.split_at_mut(n);
        let Placement {
            x, y: top, width, ..
        } = self.placement;
        let (x, top, width) = (x as usize, top as usize, width as usize);
        if width != net_w || self.scratch[0].len() != n {
            for (plane, &value) in [&mut *p0, &mut *p1, &mut *p2].into_iter().zip(&self.pad) {
                plane.fill(value);
            }
        }
        // Fixed roles per loop (no per-pixel channel lookup) so the loop vectorises.
        let (r_out, g_out, b_out) = match self.order {
            ChannelOrder::Rgb => (p0, p1, p2),
            ChannelOrder::Bgr => (p2, p1, p0),
        };
        let [sy, su, sv] = &self.scratch;
        let rows = sy
            .chunks_exact(width)
            .zip(su.chunks_exact(width))
            .zip(sv.chunks_exact(width));
        for (row, ((ys, us), vs)) in rows.enumerate() {
            let at = (top + row) * net_w + x;
            let span = at..at + width;
            convert_row(
                (ys, us, vs),
                (
                    &mut r_out[span.clone()],
                    &mut g_out[span.clone()],
                    &mut b_out[span],
                ),
                coefficients,
                self.norm,
            );
        }
    }
}

/// One row of resized Y, U, V to normalised R, G, B.
fn convert_row(
    (ys, us, vs): (&[f32], &[f32], &[f32]),
    (r_out, g_out, b_out): (&mut [f32], &mut [f32], &mut [f32]),
    [y_off, y_scale, rv, gu, gv, bu]: [f32; 6],
    [(rs, ro), (gs, go), (bs, bo)]: [(f32, f32); 3],
) {
    let outs = r_out.iter_mut().zip(g_out.iter_mut()).zip(b_out.iter_mut());
    let ins = ys.iter().zip(us.iter()).zip(vs.iter());
    for (((r, g), b), ((&y, &u), &v)) in outs.zip(ins) {
        let l = (y - y_off) * y_scale;
        let (cb, cr) = (u - 128.0, v - 128.0);
        *r = (l + rv * cr).clamp(0.0, 255.0) * rs + ro;
        *g = (l - gu * cb - gv * cr).clamp(0.0, 255.0) * gs + go;
        *b = (l + bu * cb).clamp(0.0, 255.0) * bs + bo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{colour::ColourSpace, i420_len};
    use crate::model::geometry::Resize;

    fn spec(w: u32, h: u32, order: ChannelOrder) -> InputSpec {
        InputSpec {
            name: "x".into(),
            width: w,
            height: h,
            channel_order: order,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: Resize::Stretch,
            pad: 0.0,
            tta: Default::default(),
        }
    }

    /// An I420 frame from a luma plane and constant chroma.
    fn frame(w: u32, h: u32, luma: &[u8], u: u8, v: u8, colour: ColourSpace) -> Frame {
        let mut i420 = luma.to_vec();
        i420.resize(i420_len(w, h), 0);
        let (cw, ch) = chroma_size(w, h);
        let start = (w * h) as usize;
        i420[start..start + cw * ch].fill(u);
        i420[start + cw * ch..].fill(v);
        Frame::from_i420(0, 0, w, h, colour, i420)
    }

    #[test]
    fn grey_full_range_passes_luma_through() {
        let f = frame(
            2,
            2,
            &[0, 50, 100, 255],
            128,
            128,
            ColourSpace::BT601.full_range(),
        );
        let mut p = Preprocessor::new(2, 2, &spec(2, 2, ChannelOrder::Bgr));
        let mut out = vec![0.0; 12];
        p.run(&f, &mut out);
        for plane in out.chunks(4) {
            assert_eq!(plane, &[0.0, 50.0, 100.0, 255.0]);
        }
    }

    #[test]
    fn limited_range_colour_lands_in_the_right_planes() {
        // BT.601 limited: pure red is Y 81, U 90, V 240.
        let f = frame(2, 2, &[81; 4], 90, 240, ColourSpace::BT601);
        let mut p = Preprocessor::new(2, 2, &spec(1, 1, ChannelOrder::Bgr));
        let mut out = vec![0.0; 3];
        p.run(&f, &mut out);
        let [b, g, r] = [out[0], out[1], out[2]];
        assert!(r > 250.0 && g < 3.0 && b < 3.0, "bgr = {b} {g} {r}");
    }

    #[test]
    fn downscale_by_two_averages_pairs_like_opencv() {
        // 4×1 luma ramp 0, 10, 20, 30 -> 2×1: centres at src 0.5 and 2.5 -> 5, 25.
        let f = frame(
            4,
            1,
            &[0, 10, 20, 30],
            128,
            128,
            ColourSpace::BT601.full_range(),
        );
        let mut p = Preprocessor::new(4, 1, &spec(2, 1, ChannelOrder::Rgb));
        let mut out = vec![0.0; 6];
        p.run(&f, &mut out);
        assert_eq!(&out[0..2], &[5.0, 25.0]);
    }

    #[test]
    fn upscale_clamps_at_borders() {
        // 2×1 (0, 100) -> 4×1: src x = -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped).
        let f = frame(2, 1, &[0, 100], 128, 128, ColourSpace::BT601.full_range());
        let mut p = Preprocessor::new(2, 1, &spec(4, 1, ChannelOrder::Rgb));
        let mut out = vec![0.0; 12];
        p.run(&f, &mut out);
        assert_eq!(&out[0..4], &[0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn normalises_with_mean_and_std() {
        let f = frame(1, 1, &[30], 128, 128, ColourSpace::BT601.full_range());
        let mut s = spec(1, 1, ChannelOrder::Rgb);
        s.mean = [10.0, 20.0, 30.0];
        s.std = [2.0, 5.0, 10.0];
        let mut p = Preprocessor::new(1, 1, &s);
        let mut out = vec![0.0; 3];
        p.run(&f, &mut out);
        assert_eq!(out, vec![10.0, 2.0, 0.0]);
    }

    #[test]
    fn letterbox_pads_the_bars_and_keeps_the_aspect_ratio() {
        // 4×2 ramp onto 4×4: content 4×2 at rows 1–2, bars of 114 (normalised) above and below.
        let f = frame(
            4,
            2,
            &[0, 10, 20, 30, 0, 10, 20, 30],
            128,
            128,
            ColourSpace::BT601.full_range(),
        );
        let mut s = spec(4, 4, ChannelOrder::Rgb);
        s.resize = Resize::Letterbox;
        s.pad = 114.0;
        s.mean = [14.0; 3];
        s.std = [2.0; 3];
        let mut p = Preprocessor::new(4, 2, &s);
        let mut out = vec![f32::NAN; 48];
        p.run(&f, &mut out);
        for plane in out.chunks(16) {
            assert_eq!(&plane[0..4], &[50.0; 4], "top bar");
            assert_eq!(&plane[12..16], &[50.0; 4], "bottom bar");
            for row in plane[4..12].chunks(4) {
                assert_eq!(row, &[-7.0, -2.0, 3.0, 8.0]);
            }
        }
        // A frame of the input's own aspect ratio fills it like a stretch.
        let mut square = Preprocessor::new(4, 4, &s);
        assert_eq!(square.placement().width, 4);
        let f = frame(4, 4, &[7; 16], 128, 128, ColourSpace::BT601.full_range());
        square.run(&f, &mut out);
        assert!(out.iter().all(|&v| v == -3.5));
    }
}
