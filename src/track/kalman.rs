//! A constant-velocity Kalman filter on a box, in continuous time.
//!
//! The state is ByteTrack's: box centre `x`, `y`, aspect ratio `a = w / h`, height
//! `h`, and their velocities, with the same noise model (standard deviations
//! proportional to the box height: 1/20 for positions, 1/160 for velocities, per
//! reference interval). Two things differ from ByteTrack's filter, and neither
//! changes its result at the nominal frame rate:
//!
//! - **Time, not steps.** Velocities are per second and [`BoxFilter::predict`] takes
//!   the elapsed time, so a dropped live frame or a gap in timestamps moves the box
//!   by the right amount. Process noise is a random walk: a gap of `k` reference
//!   intervals adds `k` times the one-interval noise. At `dt` = the reference
//!   interval the filter is ByteTrack's exactly.
//! - **Four 2×2 filters instead of one 8×8.** Every matrix of the model (transition,
//!   measurement, both noises, the initial covariance) is diagonal or couples a
//!   coordinate only with its own velocity, so the 8×8 covariance stays
//!   block-diagonal forever. Running one (position, velocity) filter per coordinate
//!   is the same filter, computed in a few dozen flops.

use crate::model::BBox;

/// Position noise per reference interval, as a fraction of the box height.
const STD_POSITION: f32 = 1.0 / 20.0;
/// Velocity noise per reference interval, as a fraction of the box height.
const STD_VELOCITY: f32 = 1.0 / 160.0;
/// ByteTrack's fixed noise of the aspect ratio (it does not scale with height).
const STD_ASPECT_POSITION: f32 = 1e-2;
const STD_ASPECT_VELOCITY: f32 = 1e-5;
const STD_ASPECT_MEASUREMENT: f32 = 1e-1;

/// One coordinate and its velocity: mean `(p, v)`, covariance `[[a, b], [b, c]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    p: f32,
    v: f32,
    a: f32,
    b: f32,
    c: f32,
}

impl Axis {
    fn new(p: f32, std_p: f32, std_v: f32) -> Self {
        Self {
            p,
            v: 0.0,
            a: std_p * std_p,
            b: 0.0,
            c: std_v * std_v,
        }
    }

    /// `dt` seconds ahead, adding process noise of variances `qp` and `qv`.
    fn predict(&mut self, dt: f32, qp: f32, qv: f32) {
        self.p += self.v * dt;
        self.a += 2.0 * dt * self.b + dt * dt * self.c + qp;
        self.b += dt * self.c;
        self.c += qv;
    }

    /// Folds in a measurement `z` of the position with variance `r`.
    fn update(&mut self, z: f32, r: f32) {
        let s = self.a + r;
        let (k0, k1) = (self.a / s, self.b / s);
        let innovation = z - self.p;
        self.p += k0 * innovation;
        self.v += k1 * innovation;
        let (a, b, c) = (self.a, self.b, self.c);
        self.a = (1.0 - k0) * a;
        self.b = (1.0 - k0) * b;
        self.c = c - k1 * b;
    }
}

/// The filter of one track's box.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxFilter {
    /// `x`, `y`, `a`, `h`.
    axes: [Axis; 4],
    /// Seconds of one reference interval (the nominal frame interval).
    interval: f32,
}

/// `[x1, y1, x2, y2]` -> centre x, centre y, aspect ratio, height.
pub fn to_xyah(b: &BBox) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], (b[3] - b[1]).max(1e-3));
    [b[0] + w / 2.0, b[1] + h / 2.0, w / h, h]
}

/// Centre x, centre y, aspect ratio, height -> `[x1, y1, x2, y2]`.
pub fn from_xyah(s: [f32; 4]) -> BBox {
    let (w, h) = (s[2] * s[3], s[3]);
    [
        s[0] - w / 2.0,
        s[1] - h / 2.0,
        s[0] + w / 2.0,
        s[1] + h / 2.0,
    ]
}

impl BoxFilter {
    /// A filter started at `bbox`, at rest, with ByteTrack's initial uncertainty;
    /// `interval` is the reference interval in seconds (> 0).
    pub fn new(bbox: &BBox, interval: f32) -> Self {
        let z = to_xyah(bbox);
        let h = z[3];
        // Velocity standard deviations are per reference interval in ByteTrack;
        // ours are per second.
        let vel = |std: f32| std / interval;
        let sp = 2.0 * STD_POSITION * h;
        let sv = vel(10.0 * STD_VELOCITY * h);
        Self {
            axes: [
                Axis::new(z[0], sp, sv),
                Axis::new(z[1], sp, sv),
                Axis::new(z[2], 1e-2, vel(1e-5)),
                Axis::new(z[3], sp, sv),
            ],
            interval,
        }
    }

    /// The box the filter holds now.
    pub fn bbox(&self) -> BBox {
        from_xyah(self.axes.map(|a| a.p))
    }

    /// Velocity of the box centre, in pixels per second.
    pub fn velocity(&self) -> (f32, f32) {
        (self.axes[0].v, self.axes[1].v)
    }

    /// Stops the height from growing or shrinking (ByteTrack does this for tracks
    /// that are not being seen, so a lost box does not balloon).
    pub fn freeze_height(&mut self) {
        self.axes[3].v = 0.0;
    }

    /// Moves the state `dt` seconds ahead (a negative `dt` counts as none).
    pub fn predict(&mut self, dt: f32) {
        let dt = dt.max(0.0);
        let steps = dt / self.interval;
        let h = self.axes[3].p;
        let pos = STD_POSITION * h;
        let vel = STD_VELOCITY * h / self.interval;
        let (qp, qv) = (pos * pos * steps, vel * vel * steps);
        let qa = (
            STD_ASPECT_POSITION * STD_ASPECT_POSITION * steps,
            (STD_ASPECT_VELOCITY / self.interval).powi(2) * steps,
        );
        for (i, axis) in self.axes.iter_mut().enumerate() {
            if i == 2 {
                axis.predict(dt, qa.0, qa.1);
            } else {
                axis.predict(dt, qp, qv);
            }
        }
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, bbox: &BBox) {
        let z = to_xyah(bbox);
        let std = STD_POSITION * self.axes[3].p;
        let r = std * std;
        for (i, axis) in self.axes.iter_mut().enumerate() {
            let r = if i == 2 {
                STD_ASPECT_MEASUREMENT * STD_ASPECT_MEASUREMENT
            } else {
                r
            };
            axis.update(z[i], r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// The textbook 8×8 filter (ByteTrack's `KalmanFilter`), written out with dense
    /// matrices, as an independent check of the per-axis arithmetic. Index loops on
    /// purpose: they read like the formulas.
    struct Dense {
        mean: [f64; 8],
        cov: [[f64; 8]; 8],
    }

    #[allow(clippy::needless_range_loop)]
    impl Dense {
        fn new(b: &BBox) -> Self {
            let z = to_xyah(b).map(f64::from);
            let h = z[3];
            let (wp, wv) = (1.0 / 20.0, 1.0 / 160.0);
            let std = [
                2.0 * wp * h,
                2.0 * wp * h,
                1e-2,
                2.0 * wp * h,
                10.0 * wv * h,
                10.0 * wv * h,
                1e-5,
                10.0 * wv * h,
            ];
            let mut cov = [[0.0; 8]; 8];
            for i in 0..8 {
                cov[i][i] = std[i] * std[i];
            }
            let mut mean = [0.0; 8];
            mean[..4].copy_from_slice(&z);
            Self { mean, cov }
        }

        fn predict(&mut self) {
            let h = self.mean[3];
            let (wp, wv) = (1.0 / 20.0, 1.0 / 160.0);
            let q = [wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h];
            let mut f = [[0.0; 8]; 8];
            for i in 0..8 {
                f[i][i] = 1.0;
            }
            for i in 0..4 {
                f[i][i + 4] = 1.0;
            }
            let mut mean = [0.0; 8];
            for i in 0..8 {
                mean[i] = (0..8).map(|j| f[i][j] * self.mean[j]).sum();
            }
            let mut fp = [[0.0; 8]; 8];
            for i in 0..8 {
                for j in 0..8 {
                    fp[i][j] = (0..8).map(|k| f[i][k] * self.cov[k][j]).sum();
                }
            }
            for i in 0..8 {
                for j in 0..8 {
                    self.cov[i][j] = (0..8).map(|k| fp[i][k] * f[j][k]).sum();
                }
                self.cov[i][i] += q[i] * q[i];
            }
            self.mean = mean;
        }

        fn update(&mut self, b: &BBox) {
            let z = to_xyah(b).map(f64::from);
            let h = self.mean[3];
            let wp = 1.0 / 20.0;
            let r = [wp * h, wp * h, 1e-1, wp * h];
            // S = H P H^T + R (4×4, the top-left block); K = P H^T S^-1.
            let mut s = [[0.0; 4]; 4];
            for i in 0..4 {
                for j in 0..4 {
                    s[i][j] = self.cov[i][j];
                }
                s[i][i] += r[i] * r[i];
            }
            let inv = invert4(s);
            let mut k = [[0.0; 4]; 8];
            for i in 0..8 {
                for j in 0..4 {
                    k[i][j] = (0..4).map(|m| self.cov[i][m] * inv[m][j]).sum();
                }
            }
            let y: Vec<f64> = (0..4).map(|i| z[i] - self.mean[i]).collect();
            for i in 0..8 {
                self.mean[i] += (0..4).map(|j| k[i][j] * y[j]).sum::<f64>();
            }
            let old = self.cov;
            for i in 0..8 {
                for j in 0..8 {
                    self.cov[i][j] = old[i][j] - (0..4).map(|m| k[i][m] * old[m][j]).sum::<f64>();
                }
            }
        }
    }

    /// Gauss-Jordan inverse of a 4×4 matrix.
    #[allow(clippy::needless_range_loop)]
    fn invert4(m: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 8]; 4];
        for i in 0..4 {
            a[i][..4].copy_from_slice(&m[i]);
            a[i][4 + i] = 1.0;
        }
        for c in 0..4 {
            let p = (c..4)
                .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
                .unwrap();
            a.swap(c, p);
            let d = a[c][c];
            for v in &mut a[c] {
                *v /= d;
            }
            for r in 0..4 {
                if r != c {
                    let f = a[r][c];
                    for k in 0..8 {
                        a[r][k] -= f * a[c][k];
                    }
                }
            }
        }
        let mut out = [[0.0; 4]; 4];
        for i in 0..4 {
            out[i].copy_from_slice(&a[i][4..]);
        }
        out
    }

    #[test]
    fn matches_the_dense_8x8_filter_at_the_reference_interval() {
        let boxes: Vec<BBox> = (0..12)
            .map(|i| {
                let t = i as f32;
                [
                    100.0 + 7.0 * t,
                    50.0 + 2.0 * t + (t * 1.3).sin() * 3.0,
                    140.0 + 7.5 * t,
                    150.0 + 2.0 * t,
                ]
            })
            .collect();
        let interval = 0.04;
        let mut ours = BoxFilter::new(&boxes[0], interval);
        let mut dense = Dense::new(&boxes[0]);
        for b in &boxes[1..] {
            ours.predict(interval);
            dense.predict();
            ours.update(b);
            dense.update(b);
            let got = ours.bbox();
            let want = from_xyah([
                dense.mean[0] as f32,
                dense.mean[1] as f32,
                dense.mean[2] as f32,
                dense.mean[3] as f32,
            ]);
            for k in 0..4 {
                assert!(close(got[k], want[k], 1e-4), "{got:?} vs {want:?}");
            }
            // Our velocities are per second, ByteTrack's per frame.
            assert!(close(
                ours.velocity().0 * interval,
                dense.mean[4] as f32,
                1e-3
            ));
            for i in 0..4 {
                let axis = ours.axes[i];
                assert!(close(axis.a, dense.cov[i][i] as f32, 1e-3), "var {i}");
                assert!(
                    close(axis.b * interval, dense.cov[i][i + 4] as f32, 1e-3),
                    "cov {i}"
                );
                assert!(close(
                    axis.c * interval * interval,
                    dense.cov[i + 4][i + 4] as f32,
                    1e-3
                ));
                // Off-block entries stay zero in the dense filter.
                assert!(dense.cov[i][(i + 1) % 4].abs() < 1e-9);
            }
        }
    }

    #[test]
    fn learns_a_constant_velocity_and_predicts_through_time() {
        // 120 px/s to the right, seen at 10 fps.
        let at = |t: f32| -> BBox { [10.0 + 120.0 * t, 40.0, 50.0 + 120.0 * t, 140.0] };
        let mut f = BoxFilter::new(&at(0.0), 0.1);
        for i in 1..=20 {
            f.predict(0.1);
            f.update(&at(i as f32 * 0.1));
        }
        assert!(close(f.velocity().0, 120.0, 0.02), "{:?}", f.velocity());
        // Three frames dropped: one prediction of 0.4 s lands where the box is.
        f.predict(0.4);
        let b = f.bbox();
        assert!((b[0] - at(2.4)[0]).abs() < 2.0, "{b:?} vs {:?}", at(2.4));
        assert!((b[1] - 40.0).abs() < 1.0);
    }

    #[test]
    fn uncertainty_grows_with_elapsed_time() {
        let b = [0.0, 0.0, 40.0, 100.0];
        let mut short = BoxFilter::new(&b, 0.1);
        let mut long = short.clone();
        short.predict(0.1);
        long.predict(0.5);
        assert!(long.axes[0].a > short.axes[0].a);
        // A step back in time does nothing.
        let before = short.clone();
        short.predict(-1.0);
        assert_eq!(short.bbox(), before.bbox());
    }

    #[test]
    fn box_conversions_round_trip() {
        let b = [12.5, 30.0, 52.5, 130.0];
        let back = from_xyah(to_xyah(&b));
        for k in 0..4 {
            assert!((back[k] - b[k]).abs() < 1e-4);
        }
    }
}
