"""Detection parity and speed of an INT8 NanoDet against the fp32 model, with ONNX
Runtime's CPUExecutionProvider on every frame of the demo clip.

    python parity.py FP32.onnx INT8.onnx [INT8.onnx ...] [--video media/vtest-200.avi]
        [--manifest models/nanodet-g.toml] [--no-speed]

Frames are preprocessed as the manifest's [input] says (size, resize, pad), by the
reference's `preprocess`.

Both models' outputs go through the independent reference's decode (conf 0.35) and
class-aware NMS (IoU 0.5) (tests/reference/nanodet_reference.py); boxes are scaled to
the frame and clipped, as pedvision reports them. Only class 0 (person) counts.

  forward:  fp32 person detections with score >= 0.5, the share matched by an int8
            person detection (any score >= 0.35) at IoU >= 0.9;
  reverse:  int8 person detections with score >= 0.5, the share matched by an fp32
            person detection (any score >= 0.35) at IoU >= 0.9.
Matching is greedy one-to-one per frame, best IoU first.

Speed: batch 1, intra_op_num_threads=2, inter_op_num_threads=1, 5 warm-up runs, then
100 pre-processed frames timed; 5 passes with the models taking turns, best pass each
(the machine may be shared, and taking turns keeps its load from favouring one model).
"""

import argparse
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import nanodet_reference as ref  # noqa: E402

CONF, NMS_IOU, SCORE, MATCH_IOU, PERSON = 0.35, 0.5, 0.5, 0.9, 0


def session(path, threads=None):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def persons(sess, inputs, maps, spec):
    names = [o.name for o in sess.get_outputs()]
    result = []
    for x, (w, h, ox, oy, sx, sy) in zip(inputs, maps):
        out = dict(zip(names, sess.run(None, {"input_1:0": x})))
        boxes, scores, classes = ref.decode(out, CONF, spec)
        keep = ref.nms(boxes, scores, classes, NMS_IOU)
        keep = keep[classes[keep] == PERSON] if len(keep) else keep
        b = (boxes[keep].reshape(-1, 4) - np.array([ox, oy, ox, oy])) * np.array([sx, sy, sx, sy], dtype=np.float64)
        b = np.clip(b, 0, [w, h, w, h])
        result.append((b, scores[keep]))
    return result


def iou_matrix(a, b):
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def matched(refs, cands):
    """(matched, total) over frames: reference detections with score >= SCORE, each
    matched one-to-one to a candidate (any score) at IoU >= MATCH_IOU, best IoU first."""
    hit = total = 0
    for (rb, rs), (cb, _) in zip(refs, cands):
        rb = rb[rs >= SCORE]
        total += len(rb)
        if not len(rb) or not len(cb):
            continue
        m = iou_matrix(rb, cb)
        pairs = sorted(((m[i, j], i, j) for i, j in zip(*np.nonzero(m >= MATCH_IOU))), key=lambda p: -p[0])
        used_r, used_c = set(), set()
        for _, i, j in pairs:
            if i not in used_r and j not in used_c:
                used_r.add(i)
                used_c.add(j)
        hit += len(used_r)
    return hit, total


def speeds(paths, inputs, frames=100, passes=5):
    """fps of each model: batch 1, 2 intra-op threads, 5 warm-up runs, then `passes`
    timed passes of `frames` frames, the models taking turns, best pass per model
    (taking turns and the best pass keep a shared machine's load from favouring one)."""
    sessions = [session(p, threads=2) for p in paths]
    for sess in sessions:
        for x in inputs[:5]:
            sess.run(None, {"input_1:0": x})
    best = [float("inf")] * len(paths)
    for _ in range(passes):
        for i, sess in enumerate(sessions):
            t = time.perf_counter()
            for x in inputs[:frames]:
                sess.run(None, {"input_1:0": x})
            best[i] = min(best[i], time.perf_counter() - t)
    return [frames / b for b in best]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("int8", nargs="+")
    ap.add_argument("--video", default=os.path.join(ROOT, "media", "vtest-200.avi"))
    ap.add_argument("--manifest", default=os.path.join(ROOT, "models", "nanodet-g.toml"))
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    spec = ref.Input.from_manifest(args.manifest)

    cap = cv2.VideoCapture(args.video)
    inputs, maps = [], []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        x, (ox, oy, sx, sy) = ref.preprocess(frame, spec)
        inputs.append(x.astype(np.float32))
        maps.append((frame.shape[1], frame.shape[0], ox, oy, sx, sy))
    base = persons(session(args.fp32, threads=2), inputs, maps, spec)
    n_ref = sum(int((sc >= SCORE).sum()) for _, sc in base)
    print(f"{args.video}: {len(inputs)} frames, {n_ref} fp32 person detections with score >= {SCORE}")
    rows = []
    for path in args.int8:
        dets = persons(session(path, threads=2), inputs, maps, spec)
        fh, ft = matched(base, dets)
        rh, rt = matched(dets, base)
        rows.append((path, 100 * fh / max(ft, 1), 100 * rh / max(rt, 1)))
        print(
            f"{os.path.basename(path)}: forward {rows[-1][1]:.1f}% of fp32 person detections (score >= {SCORE}) "
            f"matched by int8 at IoU >= {MATCH_IOU} ({fh}/{ft}); reverse {rows[-1][2]:.1f}% of int8 ones "
            f"matched by fp32 ({rh}/{rt})",
            flush=True,
        )
    if args.no_speed:
        return 0
    fps = speeds([args.fp32] + args.int8, inputs)
    print(f"speed (ORT {ort.__version__} CPU, batch 1, intra_op_num_threads=2, best of 5 x 100 frames):")
    print(f"  fp32 {os.path.basename(args.fp32)}: {fps[0]:.1f} fps")
    for (path, _, _), q in zip(rows, fps[1:]):
        print(f"  int8 {os.path.basename(path)}: {q:.1f} fps (x{q / fps[0]:.2f})")
    for (path, fwd, rev), q in zip(rows, fps[1:]):
        print(
            f"SUMMARY {os.path.basename(path)}: {fwd:.1f}% of fp32 person detections matched at IoU >= {MATCH_IOU}, "
            f"score >= {SCORE} (reverse {rev:.1f}%); {q:.1f} fps int8 vs {fps[0]:.1f} fps fp32"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
