//! Multi-object tracking: identities for detections over time, per stream.
//!
//! Data flow: the post stage hands each frame's detections (after NMS, scores down
//! to the tracker's low threshold) and the frame's time in seconds to that
//! stream's [`Tracker`]; it gets back which detections belong to which confirmed
//! track ([`FrameTracks`]), and which tracks ended. [`kalman`] is the motion model,
//! [`assign`] the optimal assignment, [`bytetrack`] the association rules, [`mot`]
//! the MOTChallenge text formats used by `pedvision track`.
//!
//! This module depends only on `model` (boxes, IoU), so everything downstream
//! (analytics, sinks, the pipeline) can use its types without import circles.

pub mod assign;
pub mod bytetrack;
pub mod kalman;
pub mod mot;

pub use bytetrack::{FrameTracks, TrackedObject, Tracker, TrackerKind, TrackerSettings};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Detection;

    fn person(x: f32, y: f32, score: f32) -> Detection {
        Detection {
            class_id: 0,
            score,
            bbox: [x, y, x + 40.0, y + 100.0],
        }
    }

    fn settings() -> TrackerSettings {
        TrackerSettings {
            interval_s: 0.1,
            buffer_s: 1.5,
            ..Default::default()
        }
    }

    #[test]
    fn confirms_after_min_hits_and_keeps_the_id_while_moving() {
        let mut t = Tracker::new(settings());
        // Frame 0 is empty, so the stream's first-frame rule does not apply.
        assert!(t.update(0.0, &[]).objects.is_empty());
        let f1 = t.update(0.1, &[person(100.0, 100.0, 0.9)]);
        assert_eq!(f1.ids, vec![None], "tentative after one hit");
        let mut id = None;
        for i in 2..30 {
            let f = t.update(
                0.1 * i as f64,
                &[person(100.0 + 8.0 * i as f32, 100.0, 0.9)],
            );
            assert_eq!(f.objects.len(), 1);
            let got = f.ids[0].expect("confirmed from the second hit");
            assert_eq!(*id.get_or_insert(got), got, "frame {i}");
        }
        assert_eq!(id, Some(1));
    }

    #[test]
    fn an_id_survives_a_ten_frame_occlusion() {
        let mut t = Tracker::new(settings());
        let x = |i: usize| 50.0 + 10.0 * i as f32;
        let mut before = None;
        for i in 0..10 {
            before = t.update(0.1 * i as f64, &[person(x(i), 200.0, 0.8)]).ids[0];
        }
        // Ten frames without a detection (one second at 10 fps): the person walks on.
        for i in 10..20 {
            let f = t.update(0.1 * i as f64, &[]);
            assert!(f.ended.is_empty(), "ended at frame {i}");
        }
        let after = t.update(2.0, &[person(x(20), 200.0, 0.8)]);
        assert_eq!(after.ids[0], before, "the same id after the occlusion");
        assert!(before.is_some());
    }

    #[test]
    fn a_lost_track_ends_after_the_buffer_and_its_id_is_never_reused() {
        let mut t = Tracker::new(settings());
        for i in 0..5 {
            t.update(0.1 * i as f64, &[person(100.0, 100.0, 0.9)]);
        }
        let mut ended = Vec::new();
        for i in 5..30 {
            ended.extend(t.update(0.1 * i as f64, &[]).ended);
        }
        assert_eq!(ended, vec![(1, 0)]);
        // The same place again: a new person, a new id.
        let mut ids = Vec::new();
        for i in 30..34 {
            ids.extend(t.update(0.1 * i as f64, &[person(100.0, 100.0, 0.9)]).ids);
        }
        assert_eq!(ids.last().copied().flatten(), Some(2));
    }

    #[test]
    fn weak_detections_keep_a_track_alive_only_with_bytetrack() {
        for (kind, expect_alive) in [(TrackerKind::Bytetrack, true), (TrackerKind::Sort, false)] {
            let mut t = Tracker::new(TrackerSettings { kind, ..settings() });
            for i in 0..5 {
                t.update(0.1 * i as f64, &[person(100.0, 100.0, 0.9)]);
            }
            // Half hidden: the detector is unsure for 20 frames (2 s > the buffer).
            let mut ended = Vec::new();
            for i in 5..25 {
                let f = t.update(0.1 * i as f64, &[person(100.0, 100.0, 0.3)]);
                ended.extend(f.ended);
                if expect_alive {
                    assert_eq!(f.ids, vec![Some(1)], "{kind} frame {i}");
                }
            }
            assert_eq!(ended.is_empty(), expect_alive, "{kind}");
        }
    }

    #[test]
    fn classes_never_share_a_track() {
        let mut t = Tracker::new(settings());
        let mut car = person(100.0, 100.0, 0.9);
        car.class_id = 2;
        for i in 0..6 {
            let f = t.update(0.1 * i as f64, &[person(100.0, 100.0, 0.9), car.clone()]);
            if i > 0 {
                let (a, b) = (f.ids[0].unwrap(), f.ids[1].unwrap());
                assert_ne!(a, b);
                assert_eq!(
                    f.objects.iter().map(|o| o.class_id).collect::<Vec<_>>(),
                    [0, 2]
                );
            }
        }
    }

    #[test]
    fn dropped_frames_are_bridged_by_time_not_frame_count() {
        // 200 px/s; frames 0.1 s apart, then a 0.5 s gap (four frames dropped by a
        // live queue). A step-counting filter would predict 20 px ahead and miss
        // the 100 px jump at this box size; a timed one lands on it.
        let mut t = Tracker::new(TrackerSettings {
            low: 0.5,
            ..settings()
        });
        let at = |s: f64| Detection {
            class_id: 0,
            score: 0.9,
            bbox: [
                20.0 + 200.0 * s as f32,
                50.0,
                40.0 + 200.0 * s as f32,
                100.0,
            ],
        };
        let mut id = None;
        for i in 0..10 {
            id = t.update(0.1 * i as f64, &[at(0.1 * i as f64)]).ids[0];
        }
        let f = t.update(1.4, &[at(1.4)]);
        assert_eq!(f.ids[0], id);
    }

    #[test]
    fn a_time_that_goes_backwards_counts_as_one_interval() {
        let mut t = Tracker::new(settings());
        for i in 0..4 {
            t.update(10.0 + 0.1 * i as f64, &[person(100.0, 100.0, 0.9)]);
        }
        // A source that restarted its clock at 0.
        let f = t.update(0.0, &[person(101.0, 100.0, 0.9)]);
        assert_eq!(f.ids[0], Some(1));
    }
}
