//! YUV <-> RGB for the I420 frames that travel through the pipeline. Frames stay in
//! the decoder's YUV from decode to encode (no full-frame colour conversion at
//! either end); only the network input (512×384 for NanoDet-g) and the overlay's pixels are
//! converted, with the matrix and range the stream's caps declare.

/// A Y'CbCr colour space: matrix coefficients and quantisation range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourSpace {
    kr: f32,
    kb: f32,
    full_range: bool,
}

/// The standard Y'CbCr matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    Bt601,
    Bt709,
    Bt2020,
}

impl Default for ColourSpace {
    fn default() -> Self {
        Self::BT601
    }
}

impl ColourSpace {
    /// ITU-R BT.601, limited range (SD video, and what most decoders assume).
    pub const BT601: Self = Self {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    /// ITU-R BT.709, limited range (HD video).
    pub const BT709: Self = Self {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };
    /// ITU-R BT.2020 (non-constant luminance), limited range.
    pub const BT2020: Self = Self {
        kr: 0.2627,
        kb: 0.0593,
        full_range: false,
    };

    /// The same matrix with full-range (0..255) quantisation.
    pub fn full_range(self) -> Self {
        Self {
            full_range: true,
            ..self
        }
    }

    /// Which standard matrix this is (by its luma coefficients).
    pub fn matrix(&self) -> Matrix {
        if *self == Self::BT709 || *self == Self::BT709.full_range() {
            Matrix::Bt709
        } else if *self == Self::BT2020 || *self == Self::BT2020.full_range() {
            Matrix::Bt2020
        } else {
            Matrix::Bt601
        }
    }

    /// Whether samples use the full 0..255 range.
    pub fn is_full_range(&self) -> bool {
        self.full_range
    }

    /// Coefficients for [`ColourSpace::to_rgb`]: luma offset, luma scale, then
    /// chroma factors for R←V, G←U, G←V, B←U.
    pub fn to_rgb_coefficients(&self) -> [f32; 6] {
        let kg = 1.0 - self.kr - self.kb;
        let (y_off, y_scale, c_scale) = if self.full_range {
            (0.0, 1.0, 1.0)
        } else {
            (16.0, 255.0 / 219.0, 255.0 / 224.0)
        };
        [
            y_off,
            y_scale,
            2.0 * (1.0 - self.kr) * c_scale,
            2.0 * (1.0 - self.kb) * self.kb / kg * c_scale,
            2.0 * (1.0 - self.kr) * self.kr / kg * c_scale,
            2.0 * (1.0 - self.kb) * c_scale,
        ]
    }

    /// RGB in 0..=255 (clamped, not rounded) from Y, U, V samples.
    pub fn to_rgb(&self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let [y_off, y_scale, rv, gu, gv, bu] = self.to_rgb_coefficients();
        let (l, cb, cr) = ((y - y_off) * y_scale, u - 128.0, v - 128.0);
        [
            (l + rv * cr).clamp(0.0, 255.0),
            (l - gu * cb - gv * cr).clamp(0.0, 255.0),
            (l + bu * cb).clamp(0.0, 255.0),
        ]
    }

    /// Y, U, V samples from an RGB colour.
    pub fn from_rgb(&self, rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(|c| c as f32 / 255.0);
        let kg = 1.0 - self.kr - self.kb;
        let luma = self.kr * r + kg * g + self.kb * b;
        let cb = (b - luma) / (2.0 * (1.0 - self.kb));
        let cr = (r - luma) / (2.0 * (1.0 - self.kr));
        let (y, c) = if self.full_range {
            (luma * 255.0, 255.0)
        } else {
            (16.0 + luma * 219.0, 224.0)
        };
        [y, 128.0 + cb * c, 128.0 + cr * c].map(|v| v.round().clamp(0.0, 255.0) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_limited_matches_the_textbook_coefficients() {
        let [_, ys, rv, gu, gv, bu] = ColourSpace::BT601.to_rgb_coefficients();
        for (got, want) in [
            (ys, 1.164),
            (rv, 1.596),
            (gu, 0.392),
            (gv, 0.813),
            (bu, 2.017),
        ] {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        assert_eq!(
            ColourSpace::BT601.to_rgb(16.0, 128.0, 128.0),
            [0.0, 0.0, 0.0]
        );
        let white = ColourSpace::BT601.to_rgb(235.0, 128.0, 128.0);
        assert!(white.iter().all(|c| (c - 255.0).abs() < 1e-3), "{white:?}");
    }

    #[test]
    fn round_trips_within_a_level() {
        for cs in [
            ColourSpace::BT601,
            ColourSpace::BT709,
            ColourSpace::BT601.full_range(),
        ] {
            for rgb in [[0u8, 230, 64], [255, 160, 0], [10, 20, 30], [200, 200, 200]] {
                let [y, u, v] = cs.from_rgb(rgb);
                let back = cs.to_rgb(y as f32, u as f32, v as f32);
                for (a, b) in rgb.iter().zip(back) {
                    assert!((*a as f32 - b).abs() <= 2.5, "{cs:?} {rgb:?} -> {back:?}");
                }
            }
        }
    }
}
