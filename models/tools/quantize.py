"""Make an INT8 NanoDet-g with ONNX Runtime's static quantization (QDQ format).

    python quantize.py FP32.onnx VIDEO OUT.onnx [--method minmax|entropy|percentile]
        [--percentile P] [--activations quint8|qint8] [--exclude none|tail|heads]
        [--no-preprocess] [--manifest models/nanodet-g.toml]

models/nanodet-g-int8.onnx is made with --method minmax and the other defaults
(models/quantize.sh): QUInt8 activations, per-channel QInt8 weights, the three final
head Convs and everything after them kept float. The other choices are there to
compare (models/README.md says what they gave).

Steps:
  1. fold the Pad(-inf) + MaxPool pair tf2onnx writes for TF's SAME max-pooling into
     the MaxPool's own pads (a -inf tensor cannot be quantized) and check that the
     outputs are unchanged;
  2. onnxruntime.quantization.shape_inference.quant_pre_process (ONNX shape inference
     and ORT's basic optimizations, which fold the zero Pads into the Convs; the
     symbolic shape inference is skipped: it cannot finish on this graph);
  3. quantize_static on calibration frames 0, 5, 10, ... (40 frames of
     media/vtest-200.avi), each preprocessed exactly like the independent reference
     (tests/reference/nanodet_reference.py, with the manifest's [input]: 512x384
     letterbox for the bundled one, BGR, (pixel - mean) / std, NCHW float32);
  4. fix the input's height and width at the manifest's (the size the activation
     ranges were calibrated at; the fp32 graph takes any multiple of 32) and check
     that the input and output names, types and shapes (dynamic batch) are otherwise
     those of the fp32 model.

--exclude picks what stays float:
  none   quantize every supported node;
  tail   keep the post-head Split/Sigmoid/Reshape/Transpose nodes float;
  heads  as tail, and also keep the three final 1x1 head Convs float (their output
         holds the class logits and the DFL logits in one tensor, one 8-bit scale).

Needs: onnxruntime, onnx, numpy, opencv-python-headless (models/quantize.sh pins them).
"""

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import nanodet_reference as ref  # noqa: E402

INPUT = "input_1:0"
OUTPUTS = ("cls_s8", "cls_s16", "cls_s32", "box_s8", "box_s16", "box_s32")
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
ACTIVATIONS = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}


def calibration_frames(video, every, count, spec):
    cap = cv2.VideoCapture(video)
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(ref.preprocess(frame, spec)[0].astype(np.float32))
        index += 1
    if len(frames) != count:
        sys.exit(f"{video}: only {len(frames)} calibration frames (wanted {count})")
    return frames


class Frames(CalibrationDataReader):
    def __init__(self, frames):
        self.frames = frames
        self.it = iter(frames)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {INPUT: x}

    def rewind(self):
        self.it = iter(self.frames)


def nodes_after_heads(model):
    """Names of the final head Convs and of every node after them (Split, Sigmoid,
    Reshape, Transpose up to the six outputs)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    tail, heads = [], []
    for out in OUTPUTS:
        name = out
        while True:
            node = producer[name]
            if node.op_type == "Conv":
                heads.append(node.name)
                break
            tail.append(node.name)
            name = node.input[0]
    unique = lambda xs: sorted(set(xs))
    return unique(tail), unique(heads)


def fold_inf_pads(model):
    """tf2onnx writes TF's SAME max-pooling as Pad(value=-inf) + MaxPool. A -inf
    tensor cannot be quantized (its range gives an infinite scale), so move those
    pads into the MaxPool's own pads, which ONNX ignores for the max: the same
    function, computed with no -inf tensor. Returns the number of Pads folded."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = []
    for pad in model.graph.node:
        if pad.op_type != "Pad" or len(pad.input) < 3 or pad.input[2] not in inits:
            continue
        if not np.isneginf(inits[pad.input[2]]).all() or pad.input[1] not in inits:
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "MaxPool":
            continue
        pool = users[0]
        pads = inits[pad.input[1]].tolist()  # [n, c, h, w begins, n, c, h, w ends]
        if pads[0] or pads[1] or pads[4] or pads[5] or any(a.name in ("pads", "auto_pad") for a in pool.attribute):
            continue
        pool.attribute.append(onnx.helper.make_attribute("pads", [pads[2], pads[3], pads[6], pads[7]]))
        pool.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        model.graph.node.remove(pad)
    used = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    return len(folded)


def check_same_function(a, b, frames):
    sa = ort.InferenceSession(a, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(b, providers=["CPUExecutionProvider"])
    for x in frames[:4]:
        for ya, yb in zip(sa.run(None, {INPUT: x}), sb.run(None, {INPUT: x})):
            diff = float(np.abs(ya - yb).max())
            if diff > 1e-4:
                sys.exit(f"folding the -inf pads changed the outputs (max difference {diff})")


def fix_input_size(model, spec):
    """Sets the input's `height` and `width` dimensions to the calibrated size."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, value in ((dims[2], spec.height), (dims[3], spec.width)):
        if d.dim_param not in ("height", "width") and d.dim_value != value:
            sys.exit(f"input dimension {d} is neither named nor {value}")
        d.Clear()
        d.dim_value = value


def check_interface(fp32, int8, spec):
    def sig(m):
        io = lambda vs: [
            (v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in vs
        ]
        return io(m.graph.input), io(m.graph.output)

    a, b = sig(fp32), sig(int8)
    fixed = {"height": spec.height, "width": spec.width}
    a = ([(n, t, [fixed.get(d, d) for d in dims]) for n, t, dims in a[0]], a[1])
    if a != b:
        sys.exit(f"interface changed by quantization:\n fp32 {a}\n int8 {b}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--method", choices=METHODS, default="percentile")
    ap.add_argument("--activations", choices=ACTIVATIONS, default="quint8")
    ap.add_argument("--exclude", choices=("none", "tail", "heads"), default="heads")
    ap.add_argument("--percentile", type=float, default=99.9999, help="for --method percentile")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process")
    ap.add_argument("--manifest", default=os.path.join(ROOT, "models", "nanodet-g.toml"), help="its [input] preprocesses")
    args = ap.parse_args()

    fp32 = onnx.load(args.model)
    tail, heads = nodes_after_heads(fp32)
    exclude = {"none": [], "tail": tail, "heads": tail + heads}[args.exclude]
    spec = ref.Input.from_manifest(args.manifest)
    frames = calibration_frames(args.video, args.every, args.count, spec)

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "folded.onnx")
        folded = onnx.load(args.model)
        n_folded = fold_inf_pads(folded)
        onnx.save(folded, src)
        check_same_function(args.model, src, frames)
        if not args.no_preprocess:
            quant_pre_process(src, os.path.join(tmp, "pre.onnx"), skip_symbolic_shape=True)
            src = os.path.join(tmp, "pre.onnx")
        missing = set(exclude) - {n.name for n in onnx.load(src).graph.node}
        if missing:
            sys.exit(f"nodes to keep float not found after pre-processing: {sorted(missing)}")
        extra = {}
        if args.method == "percentile":
            extra["CalibPercentile"] = args.percentile
        quantize_static(
            src,
            args.out,
            Frames(frames),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=ACTIVATIONS[args.activations],
            calibrate_method=METHODS[args.method],
            nodes_to_exclude=exclude,
            extra_options=extra,
        )

    int8 = onnx.load(args.out)
    fix_input_size(int8, spec)
    onnx.save(int8, args.out)
    check_interface(fp32, int8, spec)
    onnx.checker.check_model(int8)
    print(
        f"wrote {args.out}: QDQ, per-channel QInt8 weights, {ACTIVATIONS[args.activations].name} activations, "
        f"{args.method}, {len(frames)} calibration frames (every {args.every}th), -inf pads folded: {n_folded}, "
        f"kept float: {args.exclude} ({len(exclude)} nodes), quant_pre_process: {not args.no_preprocess}, "
        f"input fixed at {spec.width}x{spec.height}"
    )


if __name__ == "__main__":
    main()
