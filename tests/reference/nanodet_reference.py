"""Independent reference for pedvision's detections: OpenCV decode, numpy pre- and
post-processing, the Python onnxruntime.  It shares no code with the Rust crate and
is what the golden files under tests/golden/ are made from.

    python nanodet_reference.py MODEL.onnx VIDEO OUT.jsonl [--manifest M.toml] [--conf 0.35] [--iou 0.5]

Writes one JSON object per frame in pedvision's metadata schema (all 80 classes).
The network input (size, `resize`, `pad`, `tta`) is the manifest's `[input]` table;
without --manifest, 416×416 stretched.  Letterbox: scale by min(W/w, H/h)
(cv2.INTER_LINEAR), centre on a W×H canvas of the pad value, as NanoDet's keep_ratio
warp does but centred; boxes map back through the same offset and scale.
Test-time flip (`tta = "flip"`): the frame and its mirror image (cv2.flip) each
go through the network on their own, decoded at half the threshold; each view's
boxes are mapped to source pixels (the mirror's mirrored back there, x -> w - x) and
go through NMS; then, best first, a box takes every box of its class in either view
overlapping it above the IoU threshold, keeps its corners, and scores the mean of
the best score each view gave (0 for a view without one); scores at or below the
threshold are dropped.
Requires: onnxruntime, numpy, opencv-python-headless (see tests/reference/README.md).
"""

import argparse
import json
import tomllib

import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)  # B, G, R
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
STRIDES = (8, 16, 32)
BINS = 11


class Input:
    """The network input: `width`×`height` pixels, `resize` "stretch" or "letterbox",
    `pad` the bars' pixel value (before normalisation)."""

    def __init__(self, width=416, height=416, resize="stretch", pad=0.0, tta="none"):
        if resize not in ("stretch", "letterbox"):
            raise ValueError(f"unknown resize {resize!r}")
        if tta not in ("none", "flip"):
            raise ValueError(f"unknown tta {tta!r}")
        self.width, self.height, self.resize, self.pad = width, height, resize, float(pad)
        self.tta = tta

    @classmethod
    def from_manifest(cls, path):
        with open(path, "rb") as m:
            i = tomllib.load(m)["input"]
        return cls(i["width"], i["height"], i.get("resize", "stretch"), i.get("pad", 0.0), i.get("tta", "none"))


def preprocess(frame_bgr, spec=None):
    """The input tensor [1, 3, H, W] and the map back to the frame: boxes in network
    pixels go to frame pixels as `(box - (ox, oy)) * (sx, sy)` per axis."""
    spec = spec or Input()
    h, w = frame_bgr.shape[:2]
    if spec.resize == "stretch":
        img = cv2.resize(frame_bgr, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        img = img.astype(np.float32)
        ox, oy, sx, sy = 0, 0, w / spec.width, h / spec.height
    else:
        scale = min(spec.width / w, spec.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (spec.width - nw) // 2, (spec.height - nh) // 2
        img = np.full((spec.height, spec.width, 3), spec.pad, dtype=np.float32)
        img[oy : oy + nh, ox : ox + nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        sx, sy = w / nw, h / nh
    img = (img - MEAN) / STD
    return img.transpose(2, 0, 1)[None], (ox, oy, sx, sy)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode(outputs, conf, spec=None):
    """Boxes (network pixels), scores and classes of every cell and class above `conf`."""
    spec = spec or Input()
    boxes, scores, classes = [], [], []
    for stride in STRIDES:
        cls = outputs[f"cls_s{stride}"][0]  # [cells, 80], already sigmoid
        reg = outputs[f"box_s{stride}"][0]  # [cells, 44]
        nx, ny = spec.width // stride, spec.height // stride
        ys, xs = np.divmod(np.arange(nx * ny), nx)
        cx = (xs + 0.5) * stride
        cy = (ys + 0.5) * stride
        dist = softmax(reg.reshape(-1, 4, BINS), axis=2) @ np.arange(BINS, dtype=np.float32)
        dist *= stride  # left, top, right, bottom
        # Every class above the threshold counts, as in NanoDet's own post-processing.
        cell_idx, class_idx = np.nonzero(cls > conf)
        boxes.append(
            np.stack(
                [
                    cx[cell_idx] - dist[cell_idx, 0],
                    cy[cell_idx] - dist[cell_idx, 1],
                    cx[cell_idx] + dist[cell_idx, 2],
                    cy[cell_idx] + dist[cell_idx, 3],
                ],
                1,
            )
        )
        scores.append(cls[cell_idx, class_idx])
        classes.append(class_idx)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)


def iou(a, b):
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    return inter / (area(a) + area(b) - inter + 1e-9)


def nms(boxes, scores, classes, thr):
    keep = []
    for c in np.unique(classes):
        idx = np.nonzero(classes == c)[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while len(idx):
            keep.append(idx[0])
            idx = idx[1:][iou(boxes[idx[0]], boxes[idx[1:]]) <= thr]
    keep = np.array(keep, dtype=int)
    return keep[np.argsort(-scores[keep], kind="stable")] if len(keep) else keep


def merge_views(views, thr):
    """Merges per-view (boxes, scores, classes), each already through NMS, in source
    pixels: best first, a box takes every untaken box of its class overlapping it
    above `thr` in any view; score = mean over views of each view's best there."""
    boxes = np.concatenate([v[0] for v in views]).reshape(-1, 4)
    scores = np.concatenate([v[1] for v in views])
    classes = np.concatenate([v[2] for v in views])
    view = np.concatenate([np.full(len(v[1]), i) for i, v in enumerate(views)])
    taken = np.zeros(len(scores), dtype=bool)
    out_b, out_s, out_c = [], [], []
    for i in np.argsort(-scores, kind="stable"):
        if taken[i]:
            continue
        group = ~taken & (classes == classes[i]) & (iou(boxes[i], boxes) > thr)
        group[i] = True
        best = [scores[group & (view == v)].max(initial=0.0) for v in range(len(views))]
        taken |= group
        out_b.append(boxes[i])
        out_s.append(sum(best) / len(views))
        out_c.append(classes[i])
    return np.array(out_b).reshape(-1, 4), np.array(out_s, dtype=np.float32), np.array(out_c, dtype=int)


def arguments():
    """The command line both references take."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--conf", type=float, default=0.35)
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--manifest", default=None, help="model manifest (TOML) for the labels")
    return ap.parse_args()


def write_jsonl(args, detect):
    """Runs `detect(session, frame) -> (boxes in network pixels, scores, classes,
    offset, scale)` on every frame of the video, keeps what the NMS keeps, maps it to
    source pixels (`(box - offset) * scale` per axis) and writes pedvision's metadata
    schema."""
    labels = None
    if args.manifest:
        with open(args.manifest, "rb") as m:
            labels = tomllib.load(m)["labels"]
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS)
    with open(args.out, "w") as f:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            boxes, scores, classes, (ox, oy), (sx, sy) = detect(sess, frame)
            dets = []
            for k in nms(boxes, scores, classes, args.iou):
                x1, y1, x2, y2 = boxes[k]
                x1, x2 = (x1 - ox) * sx, (x2 - ox) * sx
                y1, y2 = (y1 - oy) * sy, (y2 - oy) * sy
                dets.append(
                    {
                        "class_id": int(classes[k]),
                        "label": labels[classes[k]] if labels else str(int(classes[k])),
                        "score": round(float(scores[k]), 5),
                        "bbox": [
                            round(float(np.clip(x1, 0, w)), 2),
                            round(float(np.clip(y1, 0, h)), 2),
                            round(float(np.clip(x2, 0, w)), 2),
                            round(float(np.clip(y2, 0, h)), 2),
                        ],
                    }
                )
            record = {"frame_index": index, "pts_ns": int(round(index * 1e9 / fps)), "width": w, "height": h}
            record["detections"] = dets
            f.write(json.dumps(record) + "\n")
            index += 1


def main():
    args = arguments()
    spec = Input.from_manifest(args.manifest) if args.manifest else Input()

    def run(sess, frame, conf):
        names = [o.name for o in sess.get_outputs()]
        tensor, (ox, oy, sx, sy) = preprocess(frame, spec)
        out = dict(zip(names, sess.run(None, {"input_1:0": tensor})))
        return *decode(out, conf, spec), (ox, oy), (sx, sy)

    def detect(sess, frame):
        if spec.tta == "none":
            return run(sess, frame, args.conf)
        w = frame.shape[1]
        views = []
        for mirrored in (False, True):
            b, s, c, (ox, oy), (sx, sy) = run(sess, cv2.flip(frame, 1) if mirrored else frame, args.conf / 2)
            b = (b - [ox, oy, ox, oy]) * [sx, sy, sx, sy]
            if mirrored:
                b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
            k = nms(b, s, c, args.iou)
            views.append((b[k], s[k], c[k]))
        b, s, c = merge_views(views, args.iou)
        k = s > args.conf
        # Already in source pixels; the NMS write_jsonl applies keeps them all (no
        # two merged boxes of a class overlap above the threshold).
        return b[k], s[k], c[k], (0, 0), (1, 1)

    write_jsonl(args, detect)


if __name__ == "__main__":
    main()
