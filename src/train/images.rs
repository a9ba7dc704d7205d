//! Still images (JPEG, PNG) to the network's input through the same preprocessing
//! as `run` ([`Preprocessor`]): the decoded RGB image becomes the I420 frame a
//! video decoder would give (BT.601 full range, JPEG's own colour space; chroma
//! averaged over 2×2 blocks, as JPEG's usual 4:2:0), which is then resized,
//! placed (stretch or letterbox, per the manifest), converted and normalised
//! exactly as video frames are. A head is thus trained and scored on the inputs it
//! sees in production.

use std::path::Path;

use image::RgbImage;
use ndarray::ArrayView4;

use super::TrainError;
use crate::config::InputSpec;
use crate::frame::{Frame, chroma_size, colour::ColourSpace, i420_len};
use crate::infer::preprocess::Preprocessor;

/// Decodes an image file to 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, TrainError> {
    image::open(path)
        .map(|i| i.to_rgb8())
        .map_err(|e| TrainError::Image {
            path: path.to_path_buf(),
            reason: format!("cannot decode: {e}"),
        })
}

/// The I420 frame (BT.601 full range) a decoder would give for `img`.
pub fn to_frame(img: &RgbImage) -> Frame {
    let (w, h) = img.dimensions();
    let colour = ColourSpace::BT601.full_range();
    let mut i420 = vec![0u8; i420_len(w, h)];
    let (cw, ch) = chroma_size(w, h);
    let (luma, chroma) = i420.split_at_mut((w * h) as usize);
    let (us, vs) = chroma.split_at_mut(cw * ch);
    for (cy, (u_row, v_row)) in us
        .chunks_exact_mut(cw)
        .zip(vs.chunks_exact_mut(cw))
        .enumerate()
    {
        for cx in 0..cw {
            let (mut u, mut v, mut count) = (0u32, 0u32, 0u32);
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (px, py) = (2 * cx as u32 + x, 2 * cy as u32 + y);
                if px < w && py < h {
                    let [_, pu, pv] = colour.from_rgb(img.get_pixel(px, py).0);
                    (u, v, count) = (u + pu as u32, v + pv as u32, count + 1);
                }
            }
            u_row[cx] = ((u + count / 2) / count) as u8;
            v_row[cx] = ((v + count / 2) / count) as u8;
        }
    }
    for (l, px) in luma.iter_mut().zip(img.pixels()) {
        *l = colour.from_rgb(px.0)[0];
    }
    Frame::from_i420(0, 0, w, h, colour, i420)
}

/// Writes `img` into `out` (`3 × H × W` floats) as `run` would give it to the
/// network.
pub fn to_input(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    Preprocessor::new(w, h, spec).run(&to_frame(img), out);
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
    let indices: Vec<usize> = (0..paths.len()).collect();
    prepare_batch(&indices, &|i| load_rgb(paths[i]), spec, (tensor, 1))
}

/// Images `indices`, each made by `load`, into one `[N, 3, H, W]` tensor kept in
/// `tensor`, shared among `workers` threads (decoding, augmenting and
/// preprocessing a batch take a sixth of feature extraction's time, and the
/// inference that follows waits for them). The first error in `indices`' order
/// wins.
pub fn prepare_batch<'t>(
    indices: &[usize],
    load: &(impl Fn(usize) -> Result<RgbImage, TrainError> + Sync),
    spec: &InputSpec,
    (tensor, workers): (&'t mut Vec<f32>, usize),
) -> Result<(ArrayView4<'t, f32>, Vec<ImageSize>), TrainError> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let per = 3 * w * h;
    tensor.clear();
    tensor.resize(indices.len() * per, 0.0);
    let one = |i: usize, out: &mut [f32]| -> Result<ImageSize, TrainError> {
        let img = load(i)?;
        to_input(&img, spec, out);
        Ok(img.dimensions())
    };
    let share = indices.len().div_ceil(workers.max(1)).max(1);
    let sizes: Vec<Result<ImageSize, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (indices.chunks(share))
            .zip(tensor.chunks_mut(share * per))
            .map(|(mine, out)| {
                let one = &one;
                scope.spawn(move || {
                    (mine.iter().zip(out.chunks_exact_mut(per)))
                        .map(|(&i, out)| one(i, out))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let sizes = sizes.into_iter().collect::<Result<Vec<_>, _>>()?;
    let view = ArrayView4::from_shape((indices.len(), 3, h, w), tensor.as_slice())
        .expect("the tensor was sized for this shape");
    Ok((view, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ChannelOrder;
    use crate::model::geometry::Resize;

    #[test]
    fn normalises_in_channel_order_within_a_level_of_the_rgb() {
        let spec = InputSpec {
            name: "x".into(),
            width: 2,
            height: 2,
            channel_order: ChannelOrder::Bgr,
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
            resize: Resize::Stretch,
            pad: 0.0,
            tta: Default::default(),
        };
        // A flat colour survives the trip through I420 to within rounding.
        let img = RgbImage::from_pixel(2, 2, image::Rgb([130, 60, 20]));
        let mut out = vec![0.0; 12];
        to_input(&img, &spec, &mut out);
        // Plane 0 is blue (20 - 10) / 2, plane 1 green (60 - 20) / 4, plane 2 red (130 - 30) / 5.
        for (plane, (want, std)) in out.chunks(4).zip([(5.0, 2.0), (10.0, 4.0), (20.0, 5.0)]) {
            for v in plane {
                assert!((v - want).abs() <= 1.5 / std, "{v} vs {want}");
            }
        }
    }

    #[test]
    fn a_batch_prepared_by_several_threads_is_the_images_in_order() {
        let spec = InputSpec {
            name: "x".into(),
            width: 4,
            height: 4,
            channel_order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: Resize::Stretch,
            pad: 0.0,
            tta: Default::default(),
        };
        let image =
            |i: usize| RgbImage::from_pixel(4 + i as u32, 4, image::Rgb([40 * i as u8, 9, 200]));
        let load = |i: usize| match i {
            7 => Err(TrainError::Invalid("seven".into())),
            i => Ok(image(i)),
        };
        let mut tensor = Vec::new();
        let (view, sizes) =
            prepare_batch(&[0, 1, 2, 3, 4], &load, &spec, (&mut tensor, 2)).unwrap();
        assert_eq!(sizes, [(4, 4), (5, 4), (6, 4), (7, 4), (8, 4)]);
        for (k, i) in (0..5).enumerate() {
            let mut want = vec![0.0; 48];
            to_input(&image(i), &spec, &mut want);
            assert_eq!(
                view.index_axis(ndarray::Axis(0), k)
                    .iter()
                    .copied()
                    .collect::<Vec<_>>(),
                want
            );
        }
        let err = prepare_batch(&[1, 7, 2], &load, &spec, (&mut tensor, 3)).unwrap_err();
        assert_eq!(err.to_string(), "seven");
    }
}
