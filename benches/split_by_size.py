"""Splits a KITTI test set by box size, to see which sizes a model misses.

    python3 split_by_size.py DATA OUT --cut 48

Writes OUT/small and OUT/large, each with DATA's images (a symlink) and labels in
which the boxes of the other size (longer side under / at least --cut pixels) are
`DontCare` ignore regions, so `pedvision eval` counts neither their hits nor their
misses. Existing DontCare lines are kept in both. Standard library only.
"""

import argparse
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--cut", type=float, default=48.0)
    args = ap.parse_args()
    labels = os.path.join(args.data, "labels")
    for part in ("small", "large"):
        os.makedirs(os.path.join(args.out, part, "labels"), exist_ok=True)
        link = os.path.join(args.out, part, "images")
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(args.data, "images")), link)
    for name in sorted(os.listdir(labels)):
        parts = {"small": [], "large": []}
        with open(os.path.join(labels, name)) as f:
            for line in f:
                fields = line.split()
                if not fields:
                    continue
                if fields[0] == "DontCare":
                    parts["small"].append(line)
                    parts["large"].append(line)
                    continue
                x1, y1, x2, y2 = map(float, fields[4:8])
                size = "small" if max(x2 - x1, y2 - y1) < args.cut else "large"
                other = "large" if size == "small" else "small"
                parts[size].append(line)
                parts[other].append(" ".join(["DontCare"] + fields[1:]) + "\n")
        for part, lines in parts.items():
            with open(os.path.join(args.out, part, "labels", name), "w") as f:
                f.writelines(lines)


if __name__ == "__main__":
    main()
