"""The baseline pedvision has to beat: the usual single-threaded Python loop
(OpenCV decode -> onnxruntime -> numpy decode + NMS -> cv2 drawing -> VideoWriter),
measured like `pedvision bench`: inference-only fps on pre-decoded frames (before and
after, averaged) and end-to-end fps, and their ratio.

    python benches/python_baseline.py [VIDEO] [--threads 2]

Needs onnxruntime, numpy, opencv-python-headless (e.g. the venv that
tests/reference/make_golden.sh makes). Reuses the reference's pre/post-processing.
"""

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import nanodet_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video", nargs="?", default=os.path.join(ROOT, "media", "vtest-200.avi"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(ROOT, "models", "nanodet-g.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    cap = cv2.VideoCapture(args.video)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    inputs = [ref.preprocess(f) for f in frames]
    for x in inputs[:3]:
        sess.run(None, {"input_1:0": x})

    def inference_only():
        t = time.perf_counter()
        for x in inputs:
            sess.run(None, {"input_1:0": x})
        return time.perf_counter() - t

    before = inference_only()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        cap = cv2.VideoCapture(args.video)
        fps = cap.get(cv2.CAP_PROP_FPS)
        writer = None
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            if writer is None:
                writer = cv2.VideoWriter(os.path.join(tmp, "out.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            out = dict(zip(names, sess.run(None, {"input_1:0": ref.preprocess(frame)})))
            boxes, scores, classes = ref.decode(out, 0.35)
            keep = ref.nms(boxes, scores, classes, 0.5)
            sx, sy = w / ref.SIZE, h / ref.SIZE
            for k in keep:
                if classes[k] != 0:
                    continue
                x1, y1, x2, y2 = boxes[k]
                p1, p2 = (int(x1 * sx), int(y1 * sy)), (int(x2 * sx), int(y2 * sy))
                cv2.rectangle(frame, p1, p2, (64, 230, 0), 2)
                cv2.putText(frame, f"person {scores[k]:.2f}", p1, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
            writer.write(frame)
            n += 1
        writer.release()
        e2e = n / (time.perf_counter() - t)

    after = inference_only()
    infer = 2 * len(inputs) / (before + after)
    print(f"python baseline: {len(frames)} frames, threads {args.threads}")
    print(f"inference only, pass 1: {len(inputs) / before:7.2f} fps")
    print(f"end to end:             {e2e:7.2f} fps")
    print(f"inference only, pass 2: {len(inputs) / after:7.2f} fps")
    print(f"ratio end-to-end / inference-only: {e2e / infer:.3f}  (inference-only mean {infer:.2f} fps)")


if __name__ == "__main__":
    main()
