//! Still images (JPEG, PNG) to the network's input: decode, stretch to the input
//! size (bilinear, no letterbox, as `run` does with video frames), and write planar
//! normalised floats in the manifest's channel order.

use std::path::Path;

use image::RgbImage;
use image::imageops::FilterType;
use ndarray::ArrayView4;

use super::TrainError;
use crate::config::{ChannelOrder, InputSpec};

/// Decodes an image file to 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, TrainError> {
    image::open(path)
        .map(|i| i.to_rgb8())
        .map_err(|e| TrainError::Image {
            path: path.to_path_buf(),
            reason: format!("cannot decode: {e}"),
        })
}

/// Writes `img` into `out` (`3 × H × W` floats) as the network expects it.
pub fn to_input(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
    let (w, h) = (spec.width, spec.height);
    let resized = if img.dimensions() == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, FilterType::Triangle)
    };
    let plane = (w * h) as usize;
    // Source channel (R=0, G=1, B=2) of each output plane.
    let order = match spec.channel_order {
        ChannelOrder::Bgr => [2usize, 1, 0],
        ChannelOrder::Rgb => [0, 1, 2],
    };
    for (c, &src) in order.iter().enumerate() {
        let (mean, inv_std) = (spec.mean[c], 1.0 / spec.std[c]);
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, px) in dst.iter_mut().zip(resized.pixels()) {
            *d = (px.0[src] as f32 - mean) * inv_std;
        }
    }
}

/// An image's width and height in pixels.
pub type ImageSize = (u32, u32);

/// Loads `paths` into one `[N, 3, H, W]` tensor kept in `tensor` (reused between
/// calls); returns a view of it and each image's size.
pub fn load_batch<'t>(
    paths: &[&Path],
    spec: &InputSpec,
    tensor: &'t mut Vec<f32>,
) -> Result<(ArrayView4<'t, f32>, Vec<ImageSize>), TrainError> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let per = 3 * w * h;
    tensor.clear();
    tensor.resize(paths.len() * per, 0.0);
    let mut sizes = Vec::with_capacity(paths.len());
    for (path, chunk) in paths.iter().zip(tensor.chunks_exact_mut(per)) {
        let img = load_rgb(path)?;
        sizes.push(img.dimensions());
        to_input(&img, spec, chunk);
    }
    let view = ArrayView4::from_shape((paths.len(), 3, h, w), tensor.as_slice())
        .expect("the tensor was sized for this shape");
    Ok((view, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_in_channel_order() {
        let spec = InputSpec {
            name: "x".into(),
            width: 2,
            height: 1,
            channel_order: ChannelOrder::Bgr,
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
        };
        let img = RgbImage::from_raw(2, 1, vec![130, 60, 20, 30, 20, 10]).unwrap();
        let mut out = vec![0.0; 6];
        to_input(&img, &spec, &mut out);
        // Plane 0 is blue: (20 - 10) / 2, (10 - 10) / 2; green (60-20)/4, (20-20)/4; red (130-30)/5, 0.
        assert_eq!(out, vec![5.0, 0.0, 10.0, 0.0, 20.0, 0.0]);
    }
}
