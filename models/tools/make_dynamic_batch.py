"""Patch the tf2onnx conversion of NanoDet-g so that the batch dimension and the input
size are dynamic.

tf2onnx keeps the TF.js graph's fixed batch of 1: the input is [1, 3, 416, 416] and
the six output reshapes take a shape computed by a small ScatterND sub-graph that
bakes in the 1.  This script

  * names the input's batch dimension `batch` and its height and width `height` and
    `width` (the graph's pads, convolutions and scale-based resizes work at any size
    that is a multiple of 32; 416 is what it was trained at),
  * replaces the computed reshape shapes with constants [0, C, -1] (0 = copy the
    batch dimension, -1 = the cells of that stride), and drops the dead sub-graph,
  * renames the six outputs to say what they are (cls_s8 ... box_s32) and gives
    them the shape [batch, cells, channels] (`cells` named `cells_s8` ...: the
    number at 416 is given in the table below),
  * checks the result with onnx.checker.

Usage: python make_dynamic_batch.py IN.onnx OUT.onnx
       python make_dynamic_batch.py --size-only IN.onnx OUT.onnx
(--size-only applies only the input-size part, to a file already patched for the
batch: how models/nanodet-g.onnx got its dynamic size without a new conversion)
"""

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Output of the TF.js graph -> (new name, cells, channels).  The mapping was read
# from the TF.js signature (Identity:0 is [1, 2704, 80], ...).
OUTPUTS = {
    "Identity:0": ("cls_s8", 2704, 80),
    "Identity_1:0": ("cls_s16", 676, 80),
    "Identity_2:0": ("cls_s32", 169, 80),
    "Identity_3:0": ("box_s8", 2704, 44),
    "Identity_4:0": ("box_s16", 676, 44),
    "Identity_5:0": ("box_s32", 169, 44),
}


def main(src: str, dst: str) -> None:
    model = onnx.load(src)
    graph = model.graph

    # 1. Dynamic batch on the input.
    graph.input[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"

    # 2. Constant reshape shapes: every Reshape splits [N, 124, H, W] into scores
    #    (80) or box bins (44) then flattens the cells.
    shape_for = {}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        producer = next(n for n in graph.node if node.input[0] in n.output)
        channels = 80 if producer.op_type == "Sigmoid" else 44
        name = f"dynamic_batch_shape_{channels}"
        if name not in shape_for:
            graph.initializer.append(
                numpy_helper.from_array(np.array([0, channels, -1], dtype=np.int64), name)
            )
            shape_for[name] = True
        node.input[1] = name

    # 3. Drop nodes whose outputs nobody reads any more.
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)

    # 4. Rename outputs and give them their real shape.
    renames = {}
    for out in graph.output:
        new, cells, channels = OUTPUTS[out.name]
        renames[out.name] = new
        out.CopyFrom(
            helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT, ["batch", cells, channels])
        )
    for node in graph.node:
        for i, o in enumerate(node.output):
            if o in renames:
                node.output[i] = renames[o]
    # Keep the outputs in a stable, readable order.
    order = [v[0] for v in OUTPUTS.values()]
    outs = sorted(graph.output, key=lambda o: order.index(o.name))
    del graph.output[:]
    graph.output.extend(outs)
    del graph.value_info[:]
    dynamic_size(graph)

    onnx.checker.check_model(model)
    onnx.save(model, dst)


def dynamic_size(graph) -> None:
    """Names the input's height and width and the outputs' cells."""
    dims = graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims[2:], ["height", "width"]):
        dim.ClearField("dim_value")
        dim.dim_param = name
    for out in graph.output:
        cells = out.type.tensor_type.shape.dim[1]
        cells.ClearField("dim_value")
        cells.dim_param = "cells_" + out.name.split("_")[-1]


def size_only(src: str, dst: str) -> None:
    model = onnx.load(src)
    dynamic_size(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--size-only":
        size_only(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
