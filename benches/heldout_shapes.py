"""Held-out shapes for measuring `retrain`: two classes that `pedvision synth` does
not draw ("star": a filled five-point star; "ring": an annulus with a dark
outline), 24-96 px, pasted on frames of the demo clip, written as a KITTI data
set (images/*.jpg, labels/*.txt).  Independent of pedvision's own generator, so
the figures it gives are not tuned to it.

    python heldout_shapes.py VIDEO OUT --images N --seed S --frames A..B

Needs opencv-python-headless and numpy (tests/reference's venv has both).
"""

import argparse
import math
import os

import cv2
import numpy as np


def star(img, cx, cy, r, colour):
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rr = r if k % 2 == 0 else r * 0.45
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    pts = np.array(pts, dtype=np.int32)
    cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_AA)
    xs, ys = pts[:, 0], pts[:, 1]
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def ring(img, cx, cy, r, colour):
    cv2.circle(img, (cx, cy), r, (20, 20, 20), max(2, r // 8), lineType=cv2.LINE_AA)
    cv2.circle(img, (cx, cy), int(r * 0.85), colour, max(3, r // 4), lineType=cv2.LINE_AA)
    return [cx - r, cy - r, cx + r + 1, cy + r + 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", default="0..150")
    args = ap.parse_args()
    lo, hi = map(int, args.frames.split(".."))
    rng = np.random.default_rng(args.seed)
    cap = cv2.VideoCapture(args.video)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    frames = frames[lo:hi]
    os.makedirs(f"{args.out}/images", exist_ok=True)
    os.makedirs(f"{args.out}/labels", exist_ok=True)
    for i in range(args.images):
        img = frames[rng.integers(len(frames))].copy()
        h, w = img.shape[:2]
        lines, placed = [], []
        for _ in range(rng.integers(1, 4)):
            kind = ("star", "ring")[rng.integers(2)]
            size = int(rng.integers(24, 97))
            r = size // 2
            for _try in range(20):
                cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
                if all(abs(cx - px) > r + pr or abs(cy - py) > r + pr for px, py, pr in placed):
                    break
            else:
                continue
            placed.append((cx, cy, r))
            colour = tuple(int(c) for c in rng.integers(40, 256, 3))
            box = (star if kind == "star" else ring)(img, cx, cy, r, colour)
            box = [max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])]
            lines.append(f"{kind} 0.00 0 0.00 {box[0]:.2f} {box[1]:.2f} {box[2]:.2f} {box[3]:.2f} 0 0 0 0 0 0 0\n")
        name = f"{i:05d}"
        cv2.imwrite(f"{args.out}/images/{name}.jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        with open(f"{args.out}/labels/{name}.txt", "w") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
