//! The dynamic batch dimension: a batch of 4 frames through one session `run` gives
//! the same outputs as 4 single-frame runs, on real decoded frames; and the whole
//! pipeline with `--batch 4` writes the same detections as with `--batch 1`.

mod common;

use std::path::Path;

use common::*;
use ndarray::ArrayView4;
use pedvision::config::Manifest;
use pedvision::infer::{Detector, Device, RuntimeOptions, preprocess::Preprocessor, runtime};
use pedvision::sources::read_frames;

#[test]
fn batch_of_four_equals_four_single_runs() {
    runtime::init(None, Device::Cpu).expect("ONNX Runtime (make setup)");
    let manifest = Manifest::load(Path::new(MODEL)).unwrap();
    let mut detector = Detector::load(
        &manifest,
        &RuntimeOptions {
            device: Device::Cpu,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();

    let all = read_frames(CLIP, None).unwrap();
    assert_eq!(all.len(), CLIP_FRAMES);
    let frames: Vec<_> = all.into_iter().step_by(9).take(4).collect();
    assert_eq!(frames.len(), 4);

    let mut pre = Preprocessor::new(768, 576, &manifest.input);
    let mut batch = vec![0.0f32; 4 * pre.input_len()];
    for (f, chunk) in frames.iter().zip(batch.chunks_exact_mut(pre.input_len())) {
        pre.run(f, chunk);
    }
    let (w, h) = (
        manifest.input.width as usize,
        manifest.input.height as usize,
    );
    let shape = |n| (n, 3, h, w);
    let together = detector
        .run(ArrayView4::from_shape(shape(4), &batch).unwrap())
        .unwrap();
    assert_eq!(together.len(), 4);
    for (i, chunk) in batch.chunks_exact(pre.input_len()).enumerate() {
        let single = detector
            .run(ArrayView4::from_shape(shape(1), chunk).unwrap())
            .unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(together[i].tensors.len(), 6);
        for (a, b) in together[i].tensors.iter().zip(&single[0].tensors) {
            assert_eq!(a.len(), b.len());
            let max_diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(max_diff < 1e-4, "frame {i}: outputs differ by {max_diff}");
        }
        // The frames differ, so equal outputs are not a constant model.
        if i > 0 {
            assert_ne!(together[i].tensors[3], together[0].tensors[3]);
        }
    }
}

#[test]
fn pipeline_batch_four_matches_batch_one() {
    let dir = scratch();
    let one = dir.path().join("b1.jsonl");
    let four = dir.path().join("b4.jsonl");
    for (path, batch) in [(&one, "1"), (&four, "4")] {
        ok(&pedvision(&clip_metadata_args(
            path,
            &["--batch", batch, "--classes", "all"],
        )));
    }
    let (a, b) = (read_jsonl(&one), read_jsonl(&four));
    assert_eq!(a.len(), CLIP_FRAMES);
    assert_eq!(
        b.len(),
        CLIP_FRAMES,
        "40 frames = 10 full batches; nothing lost at the end"
    );
    for (x, y) in a.iter().zip(&b) {
        let (dx, dy) = (detections(x), detections(y));
        assert_eq!(dx.len(), dy.len(), "frame {}", x["frame_index"]);
        for (p, q) in dx.iter().zip(&dy) {
            assert_eq!(p.0, q.0);
            assert!(
                (p.1 - q.1).abs() < 1e-3 && iou(&p.2, &q.2) > 0.99,
                "{p:?} vs {q:?}"
            );
        }
    }
}

#[test]
fn partial_last_batch_is_processed() {
    let dir = scratch();
    let meta = dir.path().join("b3.jsonl");
    ok(&pedvision(&clip_metadata_args(&meta, &["--batch", "3"])));
    let lines = read_jsonl(&meta);
    assert_eq!(lines.len(), CLIP_FRAMES, "40 = 13 batches of 3 + 1");
    assert_eq!(lines.last().unwrap()["frame_index"], 39);
}
