"""Check that two NanoDet ONNX files compute the same outputs (within 1e-4) on a
fixed random batch of 4, and that a batch of 4 equals 4 single-image runs.

Usage: python compare_models.py A.onnx B.onnx
"""

import sys

import numpy as np
import onnxruntime as ort


def run(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"input_1:0": x})))


def main(a, b):
    x = np.random.default_rng(0).standard_normal((4, 3, 416, 416)).astype(np.float32)
    ra, rb = run(a, x), run(b, x)
    assert ra.keys() == rb.keys(), (ra.keys(), rb.keys())
    for name in ra:
        diff = np.abs(ra[name] - rb[name]).max()
        assert diff < 1e-4, f"{name}: max difference {diff}"
    for i in range(4):
        single = run(b, x[i : i + 1])
        for name in rb:
            diff = np.abs(single[name][0] - rb[name][i]).max()
            assert diff < 1e-4, f"batch item {i}, {name}: max difference {diff}"
    print(f"same outputs: {a} == {b}; batch of 4 == 4 single runs")


if __name__ == "__main__":
    main(*sys.argv[1:3])
