"""Independent reference for pedvision's YOLOX detections: OpenCV decode and
letterbox, numpy decode, the Python onnxruntime.  It shares no code with the Rust
crate; the command line, the NMS and the JSON Lines writer are
nanodet_reference.py's.

    python yolox_reference.py MODEL.onnx VIDEO OUT.jsonl [--manifest M.toml] [--conf 0.35] [--iou 0.5]

Preprocessing, as YOLOX's own `preproc` but centred: scale by min(416/w, 416/h)
(cv2.INTER_LINEAR), centre on a 416×416 canvas of grey 114, BGR 0-255, no
normalisation.  Decode: `(xy + grid)·stride`, `exp(wh)·stride`, score =
objectness × class.
"""

import cv2
import numpy as np

from nanodet_reference import arguments, write_jsonl

SIZE = 416
STRIDES = (8, 16, 32)
PAD = 114


def letterbox(frame_bgr):
    h, w = frame_bgr.shape[:2]
    scale = min(SIZE / w, SIZE / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x, y = (SIZE - nw) // 2, (SIZE - nh) // 2
    canvas = np.full((SIZE, SIZE, 3), PAD, dtype=np.float32)
    canvas[y : y + nh, x : x + nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)[None], (x, y, w / nw, h / nh)


def decode(out, conf):
    grids, strides = [], []
    for s in STRIDES:
        n = SIZE // s
        ys, xs = np.divmod(np.arange(n * n), n)
        grids.append(np.stack([xs, ys], 1))
        strides.append(np.full(n * n, s))
    grid = np.concatenate(grids).astype(np.float32)
    stride = np.concatenate(strides).astype(np.float32)[:, None]
    xy = (out[:, :2] + grid) * stride
    wh = np.exp(out[:, 2:4]) * stride
    scores = out[:, 4:5] * out[:, 5:]
    cell, cls = np.nonzero(scores > conf)
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[cell]
    return boxes, scores[cell, cls], cls


def main():
    args = arguments()

    def detect(sess, frame):
        tensor, (ox, oy, sx, sy) = letterbox(frame)
        return *decode(sess.run(None, {"images": tensor})[0][0], args.conf), (ox, oy), (sx, sy)

    write_jsonl(args, detect)


if __name__ == "__main__":
    main()
