#!/usr/bin/env python3
"""Tracking quality: pedvision's tracker against a Python ByteTrack, scored by
py-motmetrics, on the same noisy detections.

Ground truth: the MOT15 sequences TUD-Campus and TUD-Stadtmitte that ship inside
the motmetrics wheel (25 fps). Detections are derived from it with realistic
noise, seeded: box jitter (5% of the size), random misses, occlusion gaps per
track (a span where the person is detected weakly or not at all), and false
positives. Both trackers get the same det.txt and ByteTrack's published settings
(first stage from 0.5, new tracks from 0.6, second stage from 0.1, match 0.8, a
one-second buffer); the peer is supervision 0.25.1's `ByteTrack` (a port of the
original ByteTrack code). Usage: benches/mot.sh [SEEDS] (see there).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

# motmetrics 1.4.0 (the newest) still calls np.asfarray, which NumPy 2 removed.
if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)

import motmetrics as mm  # noqa: E402
import supervision as sv  # noqa: E402

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
FPS = 25


def load_gt(path):
    rows = np.loadtxt(path, delimiter=",")
    return rows[rows[:, 6] > 0][:, :6]  # frame, id, left, top, width, height


def noisy_detections(gt, rng):
    """frame,-1,left,top,width,height,score rows from ground truth."""
    out = []
    frames = int(gt[:, 0].max())
    gaps = {}
    for tid in np.unique(gt[:, 1]):
        fr = gt[gt[:, 1] == tid][:, 0]
        if len(fr) > 20 and rng.random() < 0.6:
            start = rng.integers(fr.min() + 5, fr.max() - 5)
            gaps[tid] = (start, start + rng.integers(4, 13))
    for f, tid, l, t, w, h in gt:
        gap = gaps.get(tid)
        if gap and gap[0] <= f < gap[1]:
            if rng.random() < 0.5:
                continue
            score = rng.uniform(0.15, 0.45)  # partly hidden: weak detections
        else:
            if rng.random() < 0.08:
                continue
            score = rng.uniform(0.55, 0.95)
        l += rng.normal(0, 0.05 * w)
        t += rng.normal(0, 0.05 * h)
        w *= 1 + rng.normal(0, 0.05)
        h *= 1 + rng.normal(0, 0.05)
        out.append((f, l, t, w, h, score))
    sizes = gt[:, 4:6]
    for f in range(1, frames + 1):
        for _ in range(rng.poisson(0.8)):
            w, h = sizes[rng.integers(len(sizes))]
            out.append((f, rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h, rng.uniform(0.1, 0.7)))
    out.sort(key=lambda r: r[0])
    return np.array(out)


def write_det(path, dets):
    with open(path, "w") as fh:
        for f, l, t, w, h, s in dets:
            fh.write(f"{int(f)},-1,{l:.2f},{t:.2f},{w:.2f},{h:.2f},{s:.4f},-1,-1,-1\n")


def run_pedvision(binary, det_path, out_path, tracker="bytetrack"):
    subprocess.run([binary, "track", "-d", det_path, "-o", out_path, "--fps", str(FPS), "--tracker", tracker],
                   check=True, stdout=subprocess.DEVNULL)
    rows = np.loadtxt(out_path, delimiter=",", ndmin=2)
    return rows[:, :6] if len(rows) else np.zeros((0, 6))


def run_peer(dets):
    tracker = sv.ByteTrack(track_activation_threshold=0.5, lost_track_buffer=FPS,
                           minimum_matching_threshold=0.8, frame_rate=30)
    rows = []
    for f in range(1, int(dets[:, 0].max()) + 1):
        d = dets[dets[:, 0] == f]
        tensors = np.column_stack((d[:, 1], d[:, 2], d[:, 1] + d[:, 3], d[:, 2] + d[:, 4], d[:, 5])) \
            if len(d) else np.zeros((0, 5))
        for t in tracker.update_with_tensors(tensors):
            x1, y1, x2, y2 = t.tlbr
            rows.append((f, t.external_track_id, x1, y1, x2 - x1, y2 - y1))
    return np.array(rows) if rows else np.zeros((0, 6))


def score(gt, hyp, name):
    acc = mm.MOTAccumulator(auto_id=False)
    for f in range(1, int(gt[:, 0].max()) + 1):
        g = gt[gt[:, 0] == f]
        h = hyp[hyp[:, 0] == f]
        dist = mm.distances.iou_matrix(g[:, 2:6], h[:, 2:6], max_iou=0.5)
        acc.update(g[:, 1].astype(int), h[:, 1].astype(int), dist, frameid=f)
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["idf1", "mota", "num_switches", "num_false_positives", "num_misses"], name=name)
    return s.iloc[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    data = os.path.join(os.path.dirname(mm.__file__), "data")
    totals = {"pedvision": [], "python-bytetrack": [], "pedvision-sort": []}
    print(f"{'sequence':16} {'seed':>4} | {'tracker':17} {'IDF1':>6} {'MOTA':>6} {'IDsw':>5} {'FP':>5} {'FN':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for seq in SEQUENCES:
            gt = load_gt(os.path.join(data, seq, "gt.txt"))
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                dets = noisy_detections(gt, rng)
                det_path = os.path.join(tmp, f"{seq}-{seed}-det.txt")
                write_det(det_path, dets)
                results = {
                    "pedvision": run_pedvision(args.binary, det_path, os.path.join(tmp, f"{seq}-{seed}-out.txt")),
                    "python-bytetrack": run_peer(dets),
                    "pedvision-sort": run_pedvision(args.binary, det_path, os.path.join(tmp, f"{seq}-{seed}-sort.txt"),
                                                    "sort"),
                }
                for name, hyp in results.items():
                    s = score(gt, hyp, name)
                    totals[name].append((s["idf1"], s["mota"], s["num_switches"]))
                    print(f"{seq:16} {seed:>4} | {name:17} {s['idf1']:6.3f} {s['mota']:6.3f} "
                          f"{int(s['num_switches']):5d} {int(s['num_false_positives']):5d} {int(s['num_misses']):5d}")
    print()
    for name, rows in totals.items():
        a = np.array(rows)
        print(f"{name:17} mean over {len(a)} runs: IDF1 {a[:, 0].mean():.3f}  MOTA {a[:, 1].mean():.3f}  "
              f"ID switches {a[:, 2].sum():.0f} in all")


if __name__ == "__main__":
    sys.exit(main())
