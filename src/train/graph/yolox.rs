//! YOLOX's head in the graph: where its class rows are, and how a retrained
//! model's class rows go in.
//!
//! YOLOX ends, per level, in
//!
//! ```text
//! class feature (SiLU, F channels) -> Conv 1x1 (classes) -> Sigmoid ─┐
//! box feature -> Conv 1x1 (4) ───────────────────────────────────────┤
//! box feature -> Conv 1x1 (1) -> Sigmoid (objectness) ───────────────┴-> Concat [4, 1, classes]
//!   -> Reshape [0, 5 + classes, -1]  -> (Concat of the levels -> Transpose -> output)
//! ```
//!
//! and a class's score is objectness × class score, the objectness shared by all
//! classes. Only the class rows are retrained (on the frozen class feature); the
//! objectness stays the base model's, which was never taught the new classes. So
//! a retrained model scores its trained classes by their own sigmoid, as NanoDet
//! does, and its kept classes as before. The export does the product in the
//! graph: the class channels become `σ(class) · (gated ? objectness : 1)` and the
//! objectness channel a constant 1, so `run`'s decode (objectness × class) gives
//! each kept class exactly the score it had and each trained class its own. The
//! output keeps its layout; only its last dimension changes to `5 + labels`.

use std::collections::HashSet;

use onnx_protobuf::GraphProto;

use super::{
    HeadGraph, LevelHead, LinearWeights, Tail, float_tensor, initializer, int64_tensor,
    int64_values, node, producer_in, replace_input, set_last_dim, walk_back,
};

/// One level's nodes after its class Conv.
#[derive(Debug, Clone)]
pub(super) struct ConcatTail {
    /// Index of the Concat of box, objectness and class scores.
    concat: usize,
    /// Index of the Reshape after it.
    reshape: usize,
}

/// Finds each level's class Conv from the graph's one `output`; the levels in
/// output order and the class feature's width, or why the graph is not YOLOX's.
pub(super) fn locate(
    graph: &GraphProto,
    output: &str,
    classes: usize,
) -> Result<(Vec<LevelHead>, usize), String> {
    let producer = producer_in(graph);
    let chain = walk_back(
        graph.node.as_slice(),
        &producer,
        output,
        &["Transpose", "Concat"],
    )
    .map_err(|found| {
        format!("the output {output:?} is not a Transpose of a Concat of levels ({found}); only YOLOX-style heads can be retrained")
    })?;
    let mut levels = Vec::new();
    let mut width = None;
    for level_out in &graph.node[chain[1]].input {
        let (level, f) = locate_level(graph, &producer, level_out, classes)?;
        if width.is_some_and(|w| w != f) {
            return Err("head levels have different feature widths".into());
        }
        width = Some(f);
        levels.push(level);
    }
    Ok((levels, width.ok_or("the output joins no levels")?))
}

/// One level: `level_out` must be `Reshape(Concat[box, Sigmoid(obj), Sigmoid(Conv)])`
/// with a constant `[classes, F, 1, 1]` class Conv and a constant reshape shape.
fn locate_level(
    graph: &GraphProto,
    producer: &dyn Fn(&str) -> Option<usize>,
    level_out: &str,
    classes: usize,
) -> Result<(LevelHead, usize), String> {
    let not_yolox = |what: String| {
        format!("level output {level_out:?}: {what}; only YOLOX-style heads can be retrained")
    };
    let chain = walk_back(
        graph.node.as_slice(),
        producer,
        level_out,
        &["Reshape", "Concat"],
    )
    .map_err(not_yolox)?;
    let (reshape, concat) = (chain[0], chain[1]);
    let joined = &graph.node[concat].input;
    if joined.len() != 3 {
        return Err(not_yolox(format!(
            "its Concat joins {} tensors, expected box, objectness and classes",
            joined.len()
        )));
    }
    walk_back(graph.node.as_slice(), producer, &joined[1], &["Sigmoid"])
        .map_err(|found| not_yolox(format!("no objectness Sigmoid ({found})")))?;
    let class_chain = walk_back(
        graph.node.as_slice(),
        producer,
        &joined[2],
        &["Sigmoid", "Conv"],
    )
    .map_err(|found| not_yolox(format!("the class scores are not Sigmoid(Conv) ({found})")))?;
    let conv = &graph.node[class_chain[1]];
    let weight = (conv.input.len() == 3)
        .then(|| initializer(graph, &conv.input[1]))
        .flatten()
        .filter(|_| initializer(graph, &conv.input[2]).is_some())
        .ok_or_else(|| format!("class Conv {:?} has no constant weight and bias", conv.name))?;
    let d = &weight.dims;
    if d.len() != 4 || d[0] as usize != classes || d[2] != 1 || d[3] != 1 {
        return Err(format!(
            "class Conv {:?} weight has shape {d:?}, expected [{classes}, F, 1, 1]",
            conv.name
        ));
    }
    let shape = initializer(graph, &graph.node[reshape].input[1])
        .and_then(int64_values)
        .ok_or_else(|| format!("the level reshape {level_out:?} has no constant shape"))?;
    if !shape.contains(&(5 + classes as i64)) {
        return Err(format!(
            "the level reshape {level_out:?} is to {shape:?}, expected a dimension of {}",
            5 + classes
        ));
    }
    let level = LevelHead {
        conv: class_chain[1],
        feature: conv.input[0].clone(),
        trunk: Err(
            "YOLOX's class rows read two depthwise-separable SiLU convolutions, \
                    which cannot be trained here (use --train-layers cls)"
                .into(),
        ),
        tail: Tail::Concat(ConcatTail { concat, reshape }),
    };
    Ok((level, d[1] as usize))
}

/// Names of the constants every level's new head shares.
const MASK: &str = "pedvision/yolox/gated";
const UNMASK: &str = "pedvision/yolox/ungated";
const ZERO: &str = "pedvision/yolox/zero";
const ONE: &str = "pedvision/yolox/one";
const SHAPE: &str = "pedvision/yolox/level_shape";

/// Puts `heads` (one `[labels, F]` per level) in place of the class Convs, scores
/// the class channels as the module doc says, and sets `output`'s last dimension.
pub(super) fn swap_heads(
    g: &HeadGraph,
    graph: &mut GraphProto,
    heads: &[LinearWeights],
    gated: &[bool],
    output: &str,
    replaced: &mut HashSet<String>,
) -> Result<(), String> {
    let n = gated.len();
    add_shared_constants(g, graph, gated)?;
    let mut inserts = Vec::new();
    for (i, (level, head)) in g.levels.iter().zip(heads).enumerate() {
        let Tail::Concat(tail) = &level.tail else {
            return Err(format!("head {i} is not a YOLOX head"));
        };
        if head.weight.dim() != (n, g.features) || head.bias.len() != n {
            return Err(format!(
                "head {i} has shape {:?}, expected [{n}, {}]",
                head.weight.dim(),
                g.features
            ));
        }
        let name = |part: &str| format!("pedvision/yolox/s{i}/{part}");
        let conv = &mut graph.node[level.conv];
        replace_input(conv, 1, &name("weight"), replaced);
        replace_input(conv, 2, &name("bias"), replaced);
        let dims = [n as i64, g.features as i64, 1, 1];
        let weights = head.weight.iter().copied();
        (graph.initializer).push(float_tensor(&name("weight"), &dims, weights));
        let bias = head.bias.iter().copied();
        (graph.initializer).push(float_tensor(&name("bias"), &[n as i64], bias));
        let joined = graph.node[tail.concat].input.clone();
        let nodes = scoring_nodes(&name, &joined[1], &joined[2]);
        let concat = &mut graph.node[tail.concat];
        concat.input[1] = name("ones");
        concat.input[2] = name("scores");
        replace_input(&mut graph.node[tail.reshape], 1, SHAPE, replaced);
        inserts.push((tail.concat, nodes));
    }
    // From the last place back, so the earlier places stay valid.
    inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, nodes) in inserts {
        for (k, node) in nodes.into_iter().enumerate() {
            graph.node.insert(at + k, node);
        }
    }
    if let Some(out) = graph.output.iter_mut().find(|o| o.name == output) {
        set_last_dim(out, 5 + n as i64);
    }
    Ok(())
}

/// The nodes that score one level's class channels from its `objectness` and
/// class `scores` tensors (node and tensor names from `name`): `gate = objectness
/// · MASK + UNMASK`, `scores · gate`, and the objectness channel
/// `ones = objectness · 0 + 1`.
fn scoring_nodes(
    name: &dyn Fn(&str) -> String,
    objectness: &String,
    scores: &String,
) -> Vec<onnx_protobuf::NodeProto> {
    let (mask, unmask, zero, one) = (MASK.into(), UNMASK.into(), ZERO.into(), ONE.into());
    let (a, gate, z) = (name("a"), name("gate"), name("z"));
    let steps: [(&str, &str, [&String; 2], &str); 5] = [
        ("Mul", "obj_gated", [objectness, &mask], "a"),
        ("Add", "gate", [&a, &unmask], "gate"),
        ("Mul", "scores", [scores, &gate], "scores"),
        ("Mul", "obj_zero", [objectness, &zero], "z"),
        ("Add", "obj_one", [&z, &one], "ones"),
    ];
    (steps.into_iter())
        .map(|(op, node_name, inputs, output)| node(op, &name(node_name), &inputs, &name(output)))
        .collect()
}

/// The gate masks (`[1, labels, 1, 1]`), the scalars 0 and 1, and the level
/// reshape shape with `5 + labels` channels (from the first level's).
fn add_shared_constants(
    g: &HeadGraph,
    graph: &mut GraphProto,
    gated: &[bool],
) -> Result<(), String> {
    let n = gated.len() as i64;
    let mask = gated.iter().map(|&k| if k { 1.0 } else { 0.0 });
    graph
        .initializer
        .push(float_tensor(MASK, &[1, n, 1, 1], mask.clone()));
    graph
        .initializer
        .push(float_tensor(UNMASK, &[1, n, 1, 1], mask.map(|m| 1.0 - m)));
    graph
        .initializer
        .push(float_tensor(ZERO, &[], std::iter::once(0.0)));
    graph
        .initializer
        .push(float_tensor(ONE, &[], std::iter::once(1.0)));
    let Some(Tail::Concat(first)) = g.levels.first().map(|l| &l.tail) else {
        return Err("the graph has no YOLOX levels".into());
    };
    let old = &graph.node[first.reshape].input[1];
    let shape: Vec<i64> = initializer(graph, old)
        .and_then(int64_values)
        .ok_or_else(|| format!("level reshape {old:?} is not a constant"))?
        .into_iter()
        .map(|d| if d == 5 + g.classes as i64 { 5 + n } else { d })
        .collect();
    graph.initializer.push(int64_tensor(SHAPE, &shape));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use onnx_protobuf::{Message, ModelProto};

    use super::super::{HeadGraph, LinearWeights, initializer, int64_values};
    use crate::config::Manifest;

    const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox-nano.toml");

    fn graph() -> HeadGraph {
        HeadGraph::for_manifest(&Manifest::load(Path::new(MANIFEST)).unwrap()).unwrap()
    }

    #[test]
    fn finds_the_bundled_yolox_class_rows() {
        let g = graph();
        assert_eq!(g.feature_width(), 64);
        assert_eq!(g.feature_names().len(), 3);
        let pre = g.pretrained(0).unwrap();
        assert_eq!(pre.weight.dim(), (80, 64));
        // Its class rows read SiLU convolutions that are not trained here.
        let err = g.trunk_inputs().unwrap_err();
        assert!(err.reason.contains("--train-layers cls"), "{err}");
        // A class count that is not the graph's is refused with what was found.
        let mut manifest = Manifest::load(Path::new(MANIFEST)).unwrap();
        manifest.labels.truncate(3);
        let err = HeadGraph::for_manifest(&manifest).err().unwrap();
        assert!(err.reason.contains("expected [3, F, 1, 1]"), "{err}");
    }

    #[test]
    fn the_export_gates_kept_classes_by_objectness_and_sets_it_to_one() {
        let g = graph();
        // person (kept, gated) and a new class.
        let heads: Vec<LinearWeights> = (0..3)
            .map(|i| {
                let pre = g.pretrained(i).unwrap();
                LinearWeights {
                    weight: pre.weight.select(ndarray::Axis(0), &[0, 5]),
                    bias: pre.bias.select(ndarray::Axis(0), &[0, 5]),
                }
            })
            .collect();
        let labels = ["person".to_string(), "new".to_string()];
        let bytes = g.with_heads(&heads, &[], &labels, &[true, false]).unwrap();
        let model = ModelProto::parse_from_bytes(&bytes).unwrap();
        let graph = &model.graph;
        let dims = &graph.output[0].type_.tensor_type().shape.dim;
        assert_eq!(dims.last().unwrap().dim_value(), 7);
        let mask = initializer(graph, super::MASK).unwrap();
        assert_eq!(mask.dims, [1, 2, 1, 1]);
        let shape = int64_values(initializer(graph, super::SHAPE).unwrap()).unwrap();
        assert_eq!(shape, [0, 7, -1]);
        // Every level's Concat reads the constant objectness and the gated scores,
        // made before it.
        let concats: Vec<usize> = (graph.node.iter().enumerate())
            .filter(|(_, n)| n.op_type == "Concat" && n.input.len() == 3)
            .filter(|(_, n)| n.input[1].starts_with("pedvision/yolox/"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(concats.len(), 3);
        for &c in &concats {
            for input in &graph.node[c].input[1..] {
                let made = graph.node.iter().position(|n| n.output.contains(input));
                assert!(
                    made.is_some_and(|m| m < c),
                    "{input} is not made before the Concat"
                );
            }
        }
        // The old class rows and the old reshape shapes are gone.
        let old = g.model.graph.node[g.levels[0].conv].input[1].clone();
        assert!(initializer(graph, &old).is_none());
        assert_eq!(
            graph.initializer.len(),
            g.model.graph.initializer.len() + 5 + 3 * 2 - 3 * 2 - 3
        );
    }
}
