//! Cost of tracking and analytics per frame, with 50 people in view.
//!
//! 50 walkers with constant velocities bounce around a 1920×1080 frame at 30 fps;
//! their boxes jitter by a few pixels and 5% of detections are missed. Each frame
//! goes through ByteTrack and a stream's analytics with two lines and two zones,
//! exactly as the post stage calls them. Reports the mean, median and p99 time per
//! frame. Run with `cargo bench --bench tracker` (release).
//!
//! Plain timing, no criterion: the figure of interest is one number per frame,
//! and criterion would add its dependency tree to every `cargo test` build.

use std::time::Instant;

use pedvision::analytics::{Rules, StreamAnalytics};
use pedvision::config::rules::{LineConfig, ZoneConfig};
use pedvision::model::Detection;
use pedvision::model::classes::ClassFilter;
use pedvision::pipeline::people::observed;
use pedvision::track::{Tracker, TrackerSettings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PEOPLE: usize = 50;
const FRAMES: usize = 3000;
const FPS: f64 = 30.0;
const SIZE: (f32, f32) = (1920.0, 1080.0);

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut walkers: Vec<[f32; 4]> = (0..PEOPLE)
        .map(|_| {
            [
                rng.random_range(0.0..SIZE.0 - 40.0),
                rng.random_range(0.0..SIZE.1 - 100.0),
                rng.random_range(-3.0..3.0),
                rng.random_range(-2.0..2.0),
            ]
        })
        .collect();
    let labels = vec!["person".to_string()];
    let lines = [
        LineConfig::parse_shorthand("a:0.05,0.5,0.95,0.5").unwrap(),
        LineConfig::parse_shorthand("b:0.5,0.05,0.5,0.95").unwrap(),
    ];
    let zones = [
        ZoneConfig::parse_shorthand("z1:0.1,0.1,0.4,0.1,0.4,0.4,0.1,0.4").unwrap(),
        ZoneConfig::parse_shorthand("z2:0.6,0.6,0.9,0.6,0.8,0.9,0.6,0.9,0.55,0.75").unwrap(),
    ];
    let rules = Rules::validate(&lines, &zones, 1, &labels, &ClassFilter::only([0])).unwrap();
    let mut analytics = StreamAnalytics::new(0, &rules, &labels);
    let mut tracker = Tracker::new(TrackerSettings {
        high: 0.35,
        new_track: 0.35,
        interval_s: 1.0 / FPS,
        ..Default::default()
    });
    let mut times = Vec::with_capacity(FRAMES);
    let (mut events, mut live) = (0usize, 0usize);
    for frame in 0..FRAMES {
        let mut dets = Vec::with_capacity(PEOPLE + 5);
        for w in &mut walkers {
            w[0] += w[2];
            w[1] += w[3];
            if w[0] < 0.0 || w[0] > SIZE.0 - 40.0 {
                w[2] = -w[2];
            }
            if w[1] < 0.0 || w[1] > SIZE.1 - 100.0 {
                w[3] = -w[3];
            }
            if rng.random_bool(0.05) {
                continue;
            }
            let j = |rng: &mut ChaCha8Rng| rng.random_range(-2.0..2.0);
            let (x, y) = (w[0] + j(&mut rng), w[1] + j(&mut rng));
            dets.push(Detection {
                class_id: 0,
                score: rng.random_range(0.2..0.95),
                bbox: [x, y, x + 40.0 + j(&mut rng), y + 100.0 + j(&mut rng)],
            });
        }
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        let started = Instant::now();
        let t = tracker.update(frame as f64 / FPS, &dets);
        let observed = observed(&t, &dets, 0.35);
        events += analytics
            .observe((1920, 1080), frame as f64 / FPS, &observed, &t.ended)
            .unwrap()
            .len();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        live += tracker.live_tracks();
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "tracker + analytics (2 lines, 2 zones), {PEOPLE} people, {FRAMES} frames: mean {:.4} ms/frame, median {:.4}, p99 {:.4}; {:.1} live tracks on average, {} tracks, {events} events",
        mean,
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        live as f64 / FRAMES as f64,
        tracker.confirmed()
    );
}
