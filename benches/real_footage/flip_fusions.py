"""How to merge test-time flip's two views, measured: person AP@0.5 and MR⁻² of
NanoDet-g on the hand-checked frames of vtest.avi (labels/, KITTI), for one view
and for four ways of merging the frame's and its mirror image's boxes:

  none   the frame alone;
  max    both views' boxes through one NMS (an object keeps the higher score);
  mean   each view through NMS, then an object scores the mean of the views' best
         scores (0 for a view without one) and keeps the leading box's corners: what
         pedvision does (src/model/flip.rs; the reference's merge_views);
  wbf    as mean, but the corners are the score-weighted mean of the object's boxes
         (weighted box fusion).

    python benches/real_footage/flip_fusions.py VTEST.avi [--manifest models/nanodet-g.toml]

Pre- and post-processing come from tests/reference/nanodet_reference.py (OpenCV,
numpy, Python onnxruntime; no pedvision code); the scoring here is written apart from
pedvision's `eval` (COCO's 101-point AP with ignore regions, MR⁻² at nine FPPI points
from 0.01 to 1), so its figures differ from `eval`'s in the third decimal. Prints all
48 frames and the 12 inside the demo clip (frame < 200), and on all 48 the recall and
false people a frame of the detections scoring above `run`'s default threshold, 0.35. Needs onnxruntime, numpy,
opencv-python-headless (the reference's venv: tests/reference/make_golden.sh).
"""

import argparse
import glob
import os
import sys

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import nanodet_reference as ref  # noqa: E402

CONF, IOU = 0.01, 0.5


def labels():
    """Frame number -> (person boxes, ignore boxes)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(HERE, "labels", "vt*.txt"))):
        people, ignore = [], []
        for line in open(path):
            f = line.split()
            (people if f[0] == "person" else ignore).append([float(v) for v in f[4:8]])
        out[int(os.path.basename(path)[2:5])] = (np.array(people).reshape(-1, 4), np.array(ignore).reshape(-1, 4))
    return out


def view(sess, frame, spec, mirrored):
    """Person boxes (frame pixels, the mirror's mirrored back) and scores of one view, before NMS."""
    w = frame.shape[1]
    tensor, (ox, oy, sx, sy) = ref.preprocess(cv2.flip(frame, 1) if mirrored else frame, spec)
    names = [o.name for o in sess.get_outputs()]
    boxes, scores, classes = ref.decode(dict(zip(names, sess.run(None, {"input_1:0": tensor}))), CONF / 2, spec)
    keep = classes == 0
    boxes = (boxes[keep] - [ox, oy, ox, oy]) * [sx, sy, sx, sy]
    if mirrored:
        boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    return boxes, scores[keep]


def after_nms(boxes, scores):
    k = ref.nms(boxes, scores, np.zeros(len(scores), int), IOU)
    return boxes[k], scores[k]


def wbf(views):
    """As merge_views, with score-weighted mean corners of each view's best box."""
    boxes = np.concatenate([v[0] for v in views])
    scores = np.concatenate([v[1] for v in views])
    which = np.concatenate([np.full(len(v[1]), i) for i, v in enumerate(views)])
    taken = np.zeros(len(scores), bool)
    out_b, out_s = [], []
    for i in np.argsort(-scores, kind="stable"):
        if taken[i]:
            continue
        group = ~taken & (ref.iou(boxes[i], boxes) > IOU)
        group[i] = True
        best = [np.flatnonzero(group & (which == v)) for v in range(len(views))]
        best = [g[np.argmax(scores[g])] for g in best if len(g)]
        weights = scores[best]
        out_b.append((boxes[best] * weights[:, None]).sum(0) / weights.sum())
        out_s.append(weights.sum() / len(views))
        taken |= group
    return np.array(out_b).reshape(-1, 4), np.array(out_s)


def fusions(direct, mirror):
    both = (np.concatenate([direct[0], mirror[0]]), np.concatenate([direct[1], mirror[1]]))
    d, m = after_nms(*direct), after_nms(*mirror)
    zeros = lambda v: np.zeros(len(v[1]), int)  # noqa: E731
    mean = ref.merge_views([(d[0], d[1], zeros(d)), (m[0], m[1], zeros(m))], IOU)
    return {"none": d, "max": after_nms(*both), "mean": mean[:2], "wbf": wbf([d, m])}


def ioa(box, regions):
    x1, y1 = np.maximum(box[0], regions[:, 0]), np.maximum(box[1], regions[:, 1])
    x2, y2 = np.minimum(box[2], regions[:, 2]), np.minimum(box[3], regions[:, 3])
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None) / ((box[2] - box[0]) * (box[3] - box[1]))


def score(frames, truth, threshold=0.35):
    """AP@0.5, MR⁻², and recall and false people a frame above `threshold`, over
    frames: {n: (boxes, scores)}."""
    hits, people = [], 0
    for n, (boxes, scores) in frames.items():
        true, ignore = truth[n]
        people += len(true)
        used = np.zeros(len(true), bool)
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < CONF:
                continue
            overlap = ref.iou(boxes[i], true) if len(true) else np.zeros(0)
            free = np.where(~used & (overlap >= 0.5), overlap, -1)
            if len(free) and free.max() >= 0.5:
                used[np.argmax(free)] = True
                hits.append((scores[i], 1))
            elif not (len(ignore) and ioa(boxes[i], ignore).max() >= 0.5):
                hits.append((scores[i], 0))
    hits.sort(key=lambda h: -h[0])
    tp = np.cumsum([h[1] for h in hits])
    fp = np.cumsum([1 - h[1] for h in hits])
    recall, precision = tp / people, tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    ap = np.mean([precision[np.searchsorted(recall, t)] if t <= recall[-1] else 0 for t in np.linspace(0, 1, 101)])
    fppi, misses = fp / len(frames), 1 - recall
    at = [misses[np.flatnonzero(fppi <= r)[-1]] if (fppi <= r).any() else 1.0 for r in np.logspace(-2, 0, 9)]
    mr2 = float(np.exp(np.mean(np.log(np.maximum(at, 1e-10)))))
    above = np.searchsorted(-np.array([h[0] for h in hits]), -threshold)
    return ap, mr2, tp[above - 1] / people, fp[above - 1] / len(frames)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--manifest", default=os.path.join(ROOT, "models", "nanodet-g.toml"))
    args = ap.parse_args()
    spec = ref.Input.from_manifest(args.manifest)
    sess = ort.InferenceSession(os.path.join(ROOT, "models", "nanodet-g.onnx"), providers=["CPUExecutionProvider"])
    truth = labels()
    cap, n, results = cv2.VideoCapture(args.video), 0, {}
    while n <= max(truth):
        ok, frame = cap.read()
        if not ok:
            sys.exit(f"flip_fusions: {args.video} ends at frame {n}")
        if n in truth:
            for name, dets in fusions(view(sess, frame, spec, False), view(sess, frame, spec, True)).items():
                results.setdefault(name, {})[n] = dets
        n += 1
    print(f"{'merge':<6} {'all 48: AP@0.5':>15} {'MR-2':>6} {'demo 12: AP@0.5':>16} {'MR-2':>6}"
          f" {'above 0.35: recall':>19} {'false/frame':>12}")
    for name, frames in results.items():
        ap, mr2, recall, false = score(frames, truth)
        demo = score({k: v for k, v in frames.items() if k < 200}, truth)
        print(f"{name:<6} {ap:>15.3f} {mr2:>6.3f} {demo[0]:>16.3f} {demo[1]:>6.3f} {recall:>19.3f} {false:>12.2f}")


if __name__ == "__main__":
    main()
