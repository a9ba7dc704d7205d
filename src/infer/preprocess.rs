//! Frame to network input: a bilinear resize of a packed RGB frame straight into the
//! network's planar, normalised float layout (one pass, no intermediate image).
//!
//! The resize follows the half-pixel-centre convention of OpenCV's `INTER_LINEAR`
//! (source coordinate `(dst + 0.5)·scale − 0.5`, clamped at the borders), which is
//! what the independent reference in `tests/reference/` uses.

use crate::config::{ChannelOrder, InputSpec};

/// Precomputed tap positions and weights along one axis.
#[derive(Debug, Clone)]
struct Taps {
    lo: Vec<usize>,
    hi: Vec<usize>,
    frac: Vec<f32>,
}

impl Taps {
    fn new(src: u32, dst: u32) -> Self {
        let scale = src as f32 / dst as f32;
        let last = src.saturating_sub(1) as usize;
        let (mut lo, mut hi, mut frac) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..dst {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i = (s.floor() as usize).min(last);
            lo.push(i);
            hi.push((i + 1).min(last));
            frac.push(if i >= last { 0.0 } else { s - i as f32 });
        }
        Self { lo, hi, frac }
    }
}

/// Converts frames of one size to the network input; build once per source size.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    src_w: u32,
    src_h: u32,
    dst_w: usize,
    dst_h: usize,
    xs: Taps,
    ys: Taps,
    /// For output plane p: which RGB channel feeds it, and its scale and offset
    /// (`value · scale + offset` = `(value − mean) / std`).
    planes: [(usize, f32, f32); 3],
}

impl Preprocessor {
    /// A preprocessor for `src_w`×`src_h` RGB frames into the input `spec`.
    pub fn new(src_w: u32, src_h: u32, spec: &InputSpec) -> Self {
        let order = match spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let planes =
            std::array::from_fn(|p| (order[p], 1.0 / spec.std[p], -spec.mean[p] / spec.std[p]));
        Self {
            src_w,
            src_h,
            dst_w: spec.width as usize,
            dst_h: spec.height as usize,
            xs: Taps::new(src_w, spec.width),
            ys: Taps::new(src_h, spec.height),
            planes,
        }
    }

    /// Source frame size this preprocessor was built for.
    pub fn source_size(&self) -> (u32, u32) {
        (self.src_w, self.src_h)
    }

    /// Number of floats of one frame's input (`3·H·W`).
    pub fn input_len(&self) -> usize {
        3 * self.dst_w * self.dst_h
    }

    /// Writes one frame (packed RGB, `src_w·src_h·3` bytes) into `out` (`3·H·W`
    /// floats, planar in the network's channel order).
    pub fn run(&self, rgb: &[u8], out: &mut [f32]) {
        let (sw, dw, dh) = (self.src_w as usize, self.dst_w, self.dst_h);
        assert_eq!(
            rgb.len(),
            sw * self.src_h as usize * 3,
            "frame size does not match the preprocessor"
        );
        assert_eq!(out.len(), self.input_len(), "output buffer size");
        let plane_len = dw * dh;
        // One horizontally-resized row per source row used, per channel, reused.
        let mut row_a = vec![0.0f32; dw * 3];
        let mut row_b = vec![0.0f32; dw * 3];
        let horizontal = |src_row: usize, dst: &mut [f32]| {
            let row = &rgb[src_row * sw * 3..(src_row + 1) * sw * 3];
            for x in 0..dw {
                let (l, h, f) = (self.xs.lo[x] * 3, self.xs.hi[x] * 3, self.xs.frac[x]);
                for c in 0..3 {
                    let a = row[l + c] as f32;
                    let b = row[h + c] as f32;
                    dst[x * 3 + c] = a + (b - a) * f;
                }
            }
        };
        let (mut cached_a, mut cached_b) = (usize::MAX, usize::MAX);
        for y in 0..dh {
            let (lo, hi, fy) = (self.ys.lo[y], self.ys.hi[y], self.ys.frac[y]);
            if cached_a != lo {
                if cached_b == lo {
                    std::mem::swap(&mut row_a, &mut row_b);
                    cached_b = usize::MAX;
                } else {
                    horizontal(lo, &mut row_a);
                }
                cached_a = lo;
            }
            if cached_b != hi {
                horizontal(hi, &mut row_b);
                cached_b = hi;
            }
            for (p, &(c, scale, offset)) in self.planes.iter().enumerate() {
                let dst = &mut out[p * plane_len + y * dw..p * plane_len + (y + 1) * dw];
                for (x, d) in dst.iter_mut().enumerate() {
                    let a = row_a[x * 3 + c];
                    let b = row_b[x * 3 + c];
                    *d = (a + (b - a) * fy) * scale + offset;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: u32, h: u32, order: ChannelOrder) -> InputSpec {
        InputSpec {
            name: "x".into(),
            width: w,
            height: h,
            channel_order: order,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn identity_size_copies_and_reorders_channels() {
        let rgb: Vec<u8> = (0..2 * 2 * 3).map(|v| v as u8).collect();
        let p = Preprocessor::new(2, 2, &spec(2, 2, ChannelOrder::Bgr));
        let mut out = vec![0.0; 12];
        p.run(&rgb, &mut out);
        // Plane 0 is blue (RGB channel 2): pixels 2, 5, 8, 11.
        assert_eq!(&out[0..4], &[2.0, 5.0, 8.0, 11.0]);
        assert_eq!(&out[8..12], &[0.0, 3.0, 6.0, 9.0]);
    }

    #[test]
    fn downscale_by_two_averages_pairs_like_opencv() {
        // 4×1 grey ramp 0, 10, 20, 30 -> 2×1: centres at src 0.5 and 2.5 -> 5, 25.
        let rgb: Vec<u8> = [0u8, 10, 20, 30].iter().flat_map(|&v| [v, v, v]).collect();
        let p = Preprocessor::new(4, 1, &spec(2, 1, ChannelOrder::Rgb));
        let mut out = vec![0.0; 6];
        p.run(&rgb, &mut out);
        assert_eq!(&out[0..2], &[5.0, 25.0]);
    }

    #[test]
    fn upscale_clamps_at_borders() {
        // 2×1 (0, 100) -> 4×1: src x = -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped).
        let rgb: Vec<u8> = [0u8, 100].iter().flat_map(|&v| [v, v, v]).collect();
        let p = Preprocessor::new(2, 1, &spec(4, 1, ChannelOrder::Rgb));
        let mut out = vec![0.0; 12];
        p.run(&rgb, &mut out);
        assert_eq!(&out[0..4], &[0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn normalises_with_mean_and_std() {
        let rgb = vec![10u8, 20, 30];
        let mut s = spec(1, 1, ChannelOrder::Rgb);
        s.mean = [10.0, 10.0, 10.0];
        s.std = [2.0, 5.0, 10.0];
        let p = Preprocessor::new(1, 1, &s);
        let mut out = vec![0.0; 3];
        p.run(&rgb, &mut out);
        assert_eq!(out, vec![0.0, 2.0, 2.0]);
    }
}
