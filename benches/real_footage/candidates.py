"""Candidate person boxes that the labels in labels/ were checked against (provenance
only: the labels are the checked result, this script is how the checking started).

Runs the two bundled detectors outside pedvision (Python onnxruntime, OpenCV, numpy;
no pedvision code) at three input sizes and two resize modes, keeps person boxes
scoring 0.15 or more, and merges boxes that overlap by IoU > 0.55 into one candidate
(the median box, the best score, the number of detectors that voted for it).  Every
candidate scoring 0.25 or more was then drawn on the frame, looked at (zoomed where
people overlap or stand behind the sign), and kept, dropped, or replaced by a box
drawn by hand; see README.md.

    python candidates.py FRAMES_DIR OUT.json
"""

import glob
import json
import os
import sys

import cv2
import numpy as np
import onnxruntime as ort

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
CONF = 0.15


def letterbox(img, size, pad):
    """Scale to fit `size`×`size` keeping the aspect ratio; bars right and bottom."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    out = np.full((size, size, 3), pad, np.uint8)
    out[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, r


def yolox(sess, img, size):
    x, r = letterbox(img, size, 114)
    out = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32).transpose(2, 0, 1)[None]})[0][0]
    grids, strides = [], []
    for s in (8, 16, 32):
        n = size // s
        ys, xs = np.divmod(np.arange(n * n), n)
        grids.append(np.stack([xs, ys], 1))
        strides.append(np.full(n * n, s))
    g, s = np.concatenate(grids), np.concatenate(strides)[:, None]
    xy, wh = (out[:, :2] + g) * s, np.exp(out[:, 2:4]) * s
    score = out[:, 4] * out[:, 5]
    keep = score > CONF
    return np.concatenate([xy - wh / 2, xy + wh / 2], 1)[keep] / r, score[keep]


def nanodet(sess, img, size, mode):
    h, w = img.shape[:2]
    if mode == "stretch":
        x, rx, ry = cv2.resize(img, (size, size)), size / w, size / h
    else:
        x, r = letterbox(img, size, 0)
        rx = ry = r
    x = ((x.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    boxes, scores = [], []
    for s in (8, 16, 32):
        cls, reg, n = outs[f"cls_s{s}"][0][:, 0], outs[f"box_s{s}"][0], size // s
        ys, xs = np.divmod(np.arange(n * n), n)
        cx, cy = (xs + 0.5) * s, (ys + 0.5) * s
        e = np.exp(reg.reshape(-1, 4, 11) - reg.reshape(-1, 4, 11).max(2, keepdims=True))
        d = (e / e.sum(2, keepdims=True)) @ np.arange(11, dtype=np.float32) * s
        keep = cls > CONF
        boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)[keep])
        scores.append(cls[keep])
    b = np.concatenate(boxes)
    b[:, [0, 2]] /= rx
    b[:, [1, 3]] /= ry
    return b, np.concatenate(scores)


def iou(a, b):
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)


def nms(b, s, threshold):
    order, keep = np.argsort(-s), []
    while len(order):
        i, order = order[0], order[1:]
        keep.append(i)
        order = order[iou(b[i], b[order]) <= threshold] if len(order) else order
    return keep


def candidates(img, sessions):
    ys, ns = sessions
    boxes, scores, sources = [], [], []
    for size in (416, 640, 800):
        runs = [
            (*yolox(ys, img, size), "y"),
            (*nanodet(ns, img, size, "stretch"), "s"),
            (*nanodet(ns, img, size, "letterbox"), "l"),
        ]
        for b, s, tag in runs:
            k = nms(b, s, 0.5)
            boxes.append(b[k])
            scores.append(s[k])
            sources += [f"{tag}{size}"] * len(k)
    b, s, sources = np.concatenate(boxes), np.concatenate(scores), np.array(sources)
    used, out = np.zeros(len(s), bool), []
    for i in np.argsort(-s):
        if used[i]:
            continue
        members = (iou(b[i], b) > 0.55) & ~used
        used |= members
        out.append(
            {
                "box": [round(float(v), 1) for v in np.median(b[members], 0)],
                "score": round(float(s[i]), 3),
                "votes": int(members.sum()),
                "sources": sorted(set(sources[members])),
            }
        )
    return out


def main():
    frames, out_path = sys.argv[1], sys.argv[2]
    providers = ["CPUExecutionProvider"]
    sessions = (
        ort.InferenceSession(os.path.join(MODELS, "yolox-nano.onnx"), providers=providers),
        ort.InferenceSession(os.path.join(MODELS, "nanodet-g.onnx"), providers=providers),
    )
    result = {os.path.basename(p): candidates(cv2.imread(p), sessions) for p in sorted(glob.glob(f"{frames}/*.png"))}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=0)


if __name__ == "__main__":
    main()
