//! Plane geometry for lines and zones, in pixels with y pointing down: signed
//! distance to a line, where a path crosses a segment, point in polygon, distance
//! to a polygon's edges, self-intersection. Pure functions.

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    fn sub(self, o: Point) -> Point {
        Point::new(self.x - o.x, self.y - o.y)
    }

    fn dot(self, o: Point) -> f32 {
        self.x * o.x + self.y * o.y
    }

    fn cross(self, o: Point) -> f32 {
        self.x * o.y - self.y * o.x
    }

    fn length(self) -> f32 {
        self.dot(self).sqrt()
    }
}

/// Signed distance from `p` to the line through `a` and `b` (`a != b`): positive
/// on the right of `a -> b` as seen in the picture (y down), negative on its left.
pub fn signed_distance(a: Point, b: Point, p: Point) -> f32 {
    let ab = b.sub(a);
    ab.cross(p.sub(a)) / ab.length()
}

/// Whether the path `p0 -> p1`, which goes from one side of the line through
/// `a`, `b` to the other, crosses it within the segment `a`–`b`.
pub fn crosses_within(a: Point, b: Point, p0: Point, p1: Point) -> bool {
    let d0 = signed_distance(a, b, p0);
    let d1 = signed_distance(a, b, p1);
    if d0 == d1 {
        return false;
    }
    let u = d0 / (d0 - d1);
    let x = Point::new(p0.x + u * (p1.x - p0.x), p0.y + u * (p1.y - p0.y));
    let ab = b.sub(a);
    let t = x.sub(a).dot(ab) / ab.dot(ab);
    (-1e-6..=1.0 + 1e-6).contains(&t)
}

/// Distance from `p` to the segment `a`–`b`.
pub fn distance_to_segment(a: Point, b: Point, p: Point) -> f32 {
    let ab = b.sub(a);
    let len2 = ab.dot(ab);
    let t = if len2 > 0.0 {
        (p.sub(a).dot(ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    p.sub(Point::new(a.x + t * ab.x, a.y + t * ab.y)).length()
}

/// Whether `p` is inside the polygon (even-odd rule).
pub fn inside(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    let n = polygon.len();
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + 1) % n]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) / (b.y - a.y) * (b.x - a.x);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// Distance from `p` to the polygon's nearest edge.
pub fn distance_to_edges(polygon: &[Point], p: Point) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| distance_to_segment(polygon[i], polygon[(i + 1) % n], p))
        .fold(f32::INFINITY, f32::min)
}

/// Signed area of a polygon (shoelace formula): positive when its corners run
/// clockwise in the picture (y down).
pub fn polygon_area(polygon: &[Point]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| polygon[i].cross(polygon[(i + 1) % n]))
        .sum::<f32>()
        / 2.0
}

/// Whether segments `a`–`b` and `c`–`d` share a point.
pub fn segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool {
    let o = |p: Point, q: Point, r: Point| q.sub(p).cross(r.sub(p));
    let on = |p: Point, q: Point, r: Point| {
        r.x >= p.x.min(q.x) && r.x <= p.x.max(q.x) && r.y >= p.y.min(q.y) && r.y <= p.y.max(q.y)
    };
    let (d1, d2, d3, d4) = (o(c, d, a), o(c, d, b), o(a, b, c), o(a, b, d));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on(c, d, a))
        || (d2 == 0.0 && on(c, d, b))
        || (d3 == 0.0 && on(a, b, c))
        || (d4 == 0.0 && on(a, b, d))
}

/// The first pair of non-adjacent edges that touch, as edge indices (edge `i`
/// joins point `i` to point `i + 1`), or `None` for a simple polygon.
pub fn self_intersection(polygon: &[Point]) -> Option<(usize, usize)> {
    let n = polygon.len();
    for i in 0..n {
        for j in i + 1..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                continue;
            }
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            let (c, d) = (polygon[j], polygon[(j + 1) % n]);
            if segments_intersect(a, b, c, d) {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: fn(f32, f32) -> Point = Point::new;

    #[test]
    fn right_of_a_line_drawn_left_to_right_is_down_the_picture() {
        let (a, b) = (P(0.0, 10.0), P(100.0, 10.0));
        assert!(signed_distance(a, b, P(50.0, 20.0)) > 0.0);
        assert!((signed_distance(a, b, P(50.0, 0.0)) + 10.0).abs() < 1e-5);
    }

    #[test]
    fn crossings_beyond_the_ends_do_not_count() {
        let (a, b) = (P(10.0, 50.0), P(90.0, 50.0));
        assert!(crosses_within(a, b, P(50.0, 40.0), P(50.0, 60.0)));
        assert!(!crosses_within(a, b, P(95.0, 40.0), P(95.0, 60.0)));
        assert!(
            crosses_within(a, b, P(0.0, 40.0), P(20.0, 60.0)),
            "crosses at x=10"
        );
    }

    #[test]
    fn polygons() {
        let square = [P(0.0, 0.0), P(10.0, 0.0), P(10.0, 10.0), P(0.0, 10.0)];
        assert!(inside(&square, P(5.0, 5.0)));
        assert!(!inside(&square, P(15.0, 5.0)));
        assert!((distance_to_edges(&square, P(5.0, 2.0)) - 2.0).abs() < 1e-6);
        assert_eq!(self_intersection(&square), None);
        assert_eq!(polygon_area(&square), 100.0);
        let bowtie = [P(0.0, 0.0), P(10.0, 10.0), P(10.0, 0.0), P(0.0, 10.0)];
        assert_eq!(self_intersection(&bowtie), Some((0, 2)));
        let triangle = [P(0.0, 0.0), P(10.0, 0.0), P(5.0, 8.0)];
        assert_eq!(self_intersection(&triangle), None);
    }

    proptest! {
        #[test]
        fn inside_agrees_with_a_rectangle(x in -20f32..20.0, y in -20f32..20.0) {
            let r = [P(-5.0, -3.0), P(7.0, -3.0), P(7.0, 4.0), P(-5.0, 4.0)];
            let expect = x > -5.0 && x < 7.0 && y > -3.0 && y < 4.0;
            // Points on the border may go either way.
            if distance_to_edges(&r, P(x, y)) > 1e-3 {
                prop_assert_eq!(inside(&r, P(x, y)), expect);
            }
        }

        #[test]
        fn convex_polygons_are_simple(n in 3usize..12, r in 1f32..100.0) {
            let poly: Vec<Point> = (0..n)
                .map(|i| {
                    let a = i as f32 / n as f32 * std::f32::consts::TAU;
                    P(r * a.cos(), r * a.sin())
                })
                .collect();
            prop_assert_eq!(self_intersection(&poly), None);
        }
    }
}
