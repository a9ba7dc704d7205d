"""The baseline pedvision has to beat: the usual single-threaded Python loop
(OpenCV decode -> onnxruntime -> numpy decode + NMS -> cv2 drawing -> VideoWriter),
measured like `pedvision bench`: inference-only fps on pre-decoded, pre-processed
frames and end-to-end fps of the whole loop, alternated over --rounds rounds (each
end-to-end pass sits between two inference-only passes, whose mean is its ceiling),
with per-round figures, their ratio, and the medians.

    benches/python_baseline.sh cpu|openvino [ARGS...]    # makes a pinned venv, then runs this
    python benches/python_baseline.py [VIDEO] [--provider cpu|openvino] [--precision fp32|bf16]
        [--threads N] [--rounds R] [--frames N] [--model PATH] [--manifest TOML]

--provider cpu       onnxruntime's CPUExecutionProvider (package onnxruntime).
--provider openvino  the OpenVINO execution provider on the CPU (package
                     onnxruntime-openvino), the one-line change a Python user makes;
                     --precision bf16 sets OpenVINO's INFERENCE_PRECISION_HINT to bf16
                     (fp32: f32). The script fails unless OpenVINO is the session's
                     first provider, prints which provider ran each node, and checks
                     the outputs of a few frames against the CPU EP at fp32 (the max
                     abs difference shows whether bf16 really took effect).
--threads            intra-op threads (and the OpenVINO EP's num_of_threads); default
                     all cores.
--frames N           only the first N frames of VIDEO (default media/vtest-200.avi).
--manifest TOML      the network input (size, resize, pad) as pedvision reads it
                     (default models/nanodet-g.toml); each frame runs once (the usual
                     loop has no test-time flip: compare with `pedvision --tta none`).

The last line is machine-readable: `python-baseline-json: {...}` with provider,
precision, threads, frames, e2e_fps and infer_fps (medians) and the per-round figures.
Needs onnxruntime (or onnxruntime-openvino), numpy, opencv-python-headless; reuses
tests/reference/nanodet_reference.py's pre- and post-processing.
"""

import argparse
import collections
import glob
import json
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import nanodet_reference as ref  # noqa: E402

INPUT = "input_1:0"
WARMUP = 3
CHECK_FRAMES = 8  # frames whose outputs are compared with the CPU EP at fp32


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=os.path.join(ROOT, "media", "vtest-200.avi"))
    ap.add_argument("--provider", choices=("cpu", "openvino"), default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "nanodet-g.onnx"))
    ap.add_argument("--manifest", default=os.path.join(ROOT, "models", "nanodet-g.toml"))
    ap.add_argument("--frames", type=int, default=0, help="use only the first N frames (0: all)")
    ap.add_argument("--rounds", type=int, default=1, help="end-to-end passes, each between two inference-only passes")
    args = ap.parse_args()
    if args.precision == "bf16" and args.provider != "openvino":
        ap.error("--precision bf16 needs --provider openvino")
    if args.threads < 1 or args.rounds < 1 or args.frames < 0:
        ap.error("--threads and --rounds must be at least 1, --frames at least 0")
    return args


def session_options(threads, profile_dir=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if profile_dir:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profile_dir, "ort")
    return opts


def make_session(args, profile_dir):
    """The session to time; with OpenVINO, profiled until end_profiling() to see node placement."""
    if args.provider == "cpu":
        return ort.InferenceSession(args.model, session_options(args.threads), providers=["CPUExecutionProvider"])
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        sys.exit(
            f"python_baseline: OpenVINOExecutionProvider is not available in this onnxruntime "
            f"({ort.__version__}, providers {ort.get_available_providers()}); install onnxruntime-openvino "
            f"(benches/python_baseline.sh openvino)"
        )
    hint = {"fp32": "f32", "bf16": "bf16"}[args.precision]
    ov_options = {
        "device_type": "CPU",
        "num_of_threads": str(args.threads),
        # The EP takes load_config as a JSON string of per-device OpenVINO properties;
        # it is applied after (and so overrides) the EP's own default f32 hint.
        "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}}),
    }
    sess = ort.InferenceSession(
        args.model,
        session_options(args.threads, profile_dir),
        providers=[("OpenVINOExecutionProvider", ov_options), "CPUExecutionProvider"],
    )
    if sess.get_providers()[0] != "OpenVINOExecutionProvider":
        sys.exit(f"python_baseline: OpenVINO did not take the session, it fell back to {sess.get_providers()}")
    return sess


def node_placement(sess):
    """Stops profiling and counts the profiled node runs by execution provider."""
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    counts = collections.Counter(
        e["args"]["provider"]
        for e in events
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and "provider" in e.get("args", {})
    )
    return {k: v // WARMUP for k, v in counts.items()}  # per frame


def read_frames(video, limit):
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        sys.exit(f"python_baseline: cannot open {video}")
    frames = []
    while not limit or len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    if not frames:
        sys.exit(f"python_baseline: no frames in {video}")
    return frames


def check_outputs(args, sess, inputs):
    """Max abs difference of the outputs from the CPU EP's at fp32, over the first frames."""
    cpu = ort.InferenceSession(args.model, session_options(args.threads), providers=["CPUExecutionProvider"])
    diff = 0.0
    for x in inputs[:CHECK_FRAMES]:
        for a, b in zip(sess.run(None, {INPUT: x}), cpu.run(None, {INPUT: x})):
            diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - b))))
    return diff


def end_to_end(args, sess, names, tmp, spec):
    t = time.perf_counter()
    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    n = 0
    while not args.frames or n < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        if writer is None:
            writer = cv2.VideoWriter(os.path.join(tmp, "out.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        tensor, (ox, oy, sx, sy) = ref.preprocess(frame, spec)
        out = dict(zip(names, sess.run(None, {INPUT: tensor})))
        boxes, scores, classes = ref.decode(out, 0.35, spec)
        keep = ref.nms(boxes, scores, classes, 0.5)
        for k in keep:
            if classes[k] != 0:
                continue
            x1, y1, x2, y2 = boxes[k]
            p1 = (int((x1 - ox) * sx), int((y1 - oy) * sy))
            p2 = (int((x2 - ox) * sx), int((y2 - oy) * sy))
            cv2.rectangle(frame, p1, p2, (64, 230, 0), 2)
            cv2.putText(frame, f"person {scores[k]:.2f}", p1, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        writer.write(frame)
        n += 1
    writer.release()
    return n / (time.perf_counter() - t)


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sess = make_session(args, tmp if args.provider == "openvino" else None)
        names = [o.name for o in sess.get_outputs()]
        frames = read_frames(args.video, args.frames)
        spec = ref.Input.from_manifest(args.manifest)
        inputs = [ref.preprocess(f, spec)[0] for f in frames]
        for x in inputs[:WARMUP]:
            sess.run(None, {INPUT: x})
        placement, diff = None, None
        if args.provider == "openvino":
            placement = node_placement(sess)
            diff = check_outputs(args, sess, inputs)

        print(
            f"python baseline: {len(frames)} frames, threads {args.threads}, provider {args.provider}, "
            f"precision {args.precision}, onnxruntime {ort.__version__}, session providers {sess.get_providers()}"
        )
        if placement is not None:
            print(f"nodes run per frame by provider: {placement}")
            print(f"max |output - CPU EP fp32| over {min(CHECK_FRAMES, len(inputs))} frames: {diff:.3g}")
            if placement.get("OpenVINOExecutionProvider", 0) == 0:
                sys.exit("python_baseline: no node ran on OpenVINO")
        sys.stdout.flush()

        def inference_only():
            t = time.perf_counter()
            for x in inputs:
                sess.run(None, {INPUT: x})
            return len(inputs) / (time.perf_counter() - t)

        infer = [inference_only()]
        print(f"inference only, pass 1: {infer[0]:7.2f} fps", flush=True)
        e2e, ratios = [], []
        for r in range(1, args.rounds + 1):
            e2e.append(end_to_end(args, sess, names, tmp, spec))
            print(f"end to end:             {e2e[-1]:7.2f} fps", flush=True)
            infer.append(inference_only())
            print(f"inference only, pass {r + 1}: {infer[-1]:7.2f} fps", flush=True)
            around = (infer[-2] + infer[-1]) / 2
            ratios.append(e2e[-1] / around)
            if args.rounds > 1:
                print(
                    f"round {r}: end to end {e2e[-1]:6.2f} fps, inference only {infer[-2]:6.2f} / "
                    f"{infer[-1]:6.2f} fps, ratio {ratios[-1]:.3f}",
                    flush=True,
                )

    e2e_med, infer_med, ratio_med = statistics.median(e2e), statistics.median(infer), statistics.median(ratios)
    if args.rounds == 1:
        print(f"ratio end-to-end / inference-only: {ratio_med:.3f}  (inference-only mean {statistics.mean(infer):.2f} fps)")
    else:
        print(
            f"ratio end-to-end / inference-only: median {ratio_med:.3f} (min {min(ratios):.3f}, "
            f"max {max(ratios):.3f}) over {args.rounds} rounds"
        )
        print(
            f"median over {args.rounds} rounds: end to end {e2e_med:.2f} fps, "
            f"inference only {infer_med:.2f} fps ({len(infer)} passes)"
        )
    result = {
        "provider": args.provider,
        "precision": args.precision,
        "threads": args.threads,
        "frames": len(frames),
        "rounds": args.rounds,
        "e2e_fps": round(e2e_med, 2),
        "infer_fps": round(infer_med, 2),
        "ratio": round(ratio_med, 3),
        "e2e_fps_rounds": [round(v, 2) for v in e2e],
        "infer_fps_passes": [round(v, 2) for v in infer],
        "onnxruntime": ort.__version__,
        "model": os.path.relpath(args.model, ROOT),
    }
    if diff is not None:
        result["max_abs_diff_vs_cpu_fp32"] = float(f"{diff:.3g}")
    print("python-baseline-json: " + json.dumps(result))


if __name__ == "__main__":
    main()
