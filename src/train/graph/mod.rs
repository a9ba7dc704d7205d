//! The detector's ONNX graph, seen as "frozen part + per-level 1×1 head".
//!
//! [`HeadGraph::for_manifest`] locates the head as the manifest's family lays it
//! out: NanoDet's here, YOLOX's in [`yolox`] (class rows only).
//!
//! NanoDet ends, per stride, in this chain (the box half of the Split goes to
//! `box_sN`):
//!
//! ```text
//! feature (LeakyReLU, F channels) -> Conv 1x1 (classes + 4*bins channels)
//!   -> Split [classes, 4*bins] -> Sigmoid -> Reshape [0, classes, -1] -> Transpose -> cls_sN
//! ```
//!
//! [`HeadGraph::locate`] walks it back from the manifest's class outputs and records,
//! per level, the feature tensor and the Conv's weight and bias initialisers.
//!
//! From there it can (a) add the feature tensors as extra outputs, giving the model
//! that feature extraction runs once over a data set, and (b) export a model with a
//! new head: new Conv weights and bias, new split sizes and class reshape, the
//! graph's class outputs re-declared with the new class count, and the old head's
//! initialisers removed; with `--train-layers head` (c) also a class branch per
//! level beside the original head (a copy of its 3×3 convolution → LeakyReLU →
//! 1×1 class rows, added to the class logits before the sigmoid). Everything else
//! in the graph is kept as it was, so the backbone is frozen by construction. The
//! protobuf types come from `onnx-protobuf`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto, type_proto,
};

use crate::config::Manifest;
use crate::model::Family;

mod yolox;

/// Why a model cannot be used for retraining, or exported.
#[derive(Debug, thiserror::Error)]
#[error("model {path}: {reason}")]
pub struct GraphError {
    pub path: PathBuf,
    pub reason: String,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// One pyramid level's head in the graph.
#[derive(Debug, Clone)]
struct LevelHead {
    /// Index of the 1×1 Conv node that makes the class logits (NanoDet: and the
    /// box bins).
    conv: usize,
    /// The Conv's input: the frozen feature tensor.
    feature: String,
    /// The trainable 3×3 convolution before it, or why the graph has none.
    trunk: Result<TrunkHead, String>,
    /// What follows the Conv, per family.
    tail: Tail,
}

/// The nodes after a level's head Conv that a new class count touches.
#[derive(Debug, Clone)]
enum Tail {
    /// NanoDet: Conv → Split → Sigmoid → Reshape → Transpose → `class_output`.
    Split {
        split: usize,
        sigmoid: usize,
        cls_reshape: usize,
        class_output: String,
    },
    /// YOLOX: `Concat[box Conv, Sigmoid(objectness Conv), Sigmoid(class Conv)]` →
    /// Reshape `[0, 5 + classes, -1]` (→ Concat of the levels → Transpose).
    Concat(yolox::ConcatTail),
}

/// The convolution that makes a level's feature: `LeakyReLU(Conv k×k(input))`.
#[derive(Debug, Clone)]
struct TrunkHead {
    conv: usize,
    /// Its input (already padded), the tensor feature extraction adds as an output.
    input: String,
    kernel: usize,
    channels: usize,
    alpha: f32,
}

/// Weights of one level's 1×1 head: `weight` is `[outputs, F]`, `bias` `[outputs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWeights {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

/// The shape of a level's trainable convolution (its weights are a
/// [`LinearWeights`] of `[F, C·k²]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrunkShape {
    /// Input channels `C`.
    pub channels: usize,
    /// Kernel side `k`.
    pub kernel: usize,
    /// The LeakyReLU's negative slope.
    pub alpha: f32,
}

/// A second class branch for one level (`--train-layers head`): its own copy of
/// the convolution, `[F, C·k²]`, and class rows `[classes, F]` that read it. The
/// export adds its logits to the main head's class logits before the sigmoid.
pub struct ClassBranch<'a> {
    pub conv: &'a LinearWeights,
    pub classes: &'a LinearWeights,
}

/// One level's head, found from its class output (Conv → Split → Sigmoid →
/// Reshape → Transpose, constant weight and bias of the expected shape), and the
/// width of the feature it reads; the reason when the graph is not like that.
fn locate_level(
    graph: &GraphProto,
    output: &str,
    classes: usize,
    bins: usize,
) -> Result<(LevelHead, usize), String> {
    let producer = producer_in(graph);
    let chain = walk_back(
        graph.node.as_slice(),
        &producer,
        output,
        &["Transpose", "Reshape", "Sigmoid", "Split", "Conv"],
    )
    .map_err(|found| {
        format!(
            "the class output {output:?} does not come from a 1×1 Conv head \
             (expected Conv → Split → Sigmoid → Reshape → Transpose, found {found}); \
             only NanoDet-style heads can be retrained"
        )
    })?;
    let (cls_reshape, sigmoid, split, conv) = (chain[1], chain[2], chain[3], chain[4]);
    let node = &graph.node[conv];
    if node.input.len() != 3 {
        return Err(format!("head Conv {:?} has no bias input", node.name));
    }
    let weight = initializer(graph, &node.input[1])
        .ok_or_else(|| format!("head Conv {:?} weight is not a constant", node.name))?;
    if initializer(graph, &node.input[2]).is_none() {
        return Err(format!("head Conv {:?} bias is not a constant", node.name));
    }
    let dims = &weight.dims;
    if dims.len() != 4 || dims[2] != 1 || dims[3] != 1 || dims[0] as usize != classes + 4 * bins {
        return Err(format!(
            "head Conv {:?} weight has shape {dims:?}, expected [{} + {}, F, 1, 1]",
            node.name,
            classes,
            4 * bins
        ));
    }
    let features = dims[1] as usize;
    let level = LevelHead {
        conv,
        feature: node.input[0].clone(),
        trunk: locate_trunk(graph, &producer, &node.input[0], features),
        tail: Tail::Split {
            split,
            sigmoid,
            cls_reshape,
            class_output: output.to_string(),
        },
    };
    Ok((level, features))
}

/// The `LeakyReLU(Conv k×k)` that makes `feature`: constant weight `[F, C, k, k]`
/// and bias, stride 1, one group, no padding of its own (NanoDet pads with an
/// explicit Pad before it).
fn locate_trunk(
    graph: &GraphProto,
    producer: &dyn Fn(&str) -> Option<usize>,
    feature: &str,
    features: usize,
) -> Result<TrunkHead, String> {
    let chain = walk_back(
        graph.node.as_slice(),
        producer,
        feature,
        &["LeakyRelu", "Conv"],
    )
    .map_err(|found| format!("the head feature {feature:?} is not LeakyReLU(Conv): {found}"))?;
    let (act, conv) = (&graph.node[chain[0]], &graph.node[chain[1]]);
    let alpha = attribute(act, "alpha").map_or(0.01, |a| a.f);
    let plain = |name: &str, ok: &dyn Fn(i64) -> bool| {
        attribute(conv, name).is_none_or(|a| a.ints.iter().all(|&v| ok(v)))
    };
    if !plain("pads", &|v| v == 0)
        || !plain("strides", &|v| v == 1)
        || !plain("dilations", &|v| v == 1)
        || attribute(conv, "group").is_some_and(|a| a.i != 1)
    {
        return Err(format!(
            "the head Conv {:?} pads, strides, dilates or groups; only a plain convolution on a padded input can be trained",
            conv.name
        ));
    }
    let weight = (conv.input.len() == 3)
        .then(|| initializer(graph, &conv.input[1]))
        .flatten()
        .filter(|_| initializer(graph, &conv.input[2]).is_some())
        .ok_or_else(|| {
            format!(
                "the head Conv {:?} has no constant weight and bias",
                conv.name
            )
        })?;
    let d = &weight.dims;
    if d.len() != 4 || d[0] as usize != features || d[2] != d[3] || d[2] % 2 == 0 {
        return Err(format!(
            "the head Conv {:?} weight has shape {d:?}, expected [{features}, C, k, k] with an odd k",
            conv.name
        ));
    }
    Ok(TrunkHead {
        conv: chain[1],
        input: conv.input[0].clone(),
        kernel: d[2] as usize,
        channels: d[1] as usize,
        alpha,
    })
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a onnx_protobuf::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// A detector graph with its head located.
pub struct HeadGraph {
    path: PathBuf,
    model: ModelProto,
    family: Family,
    levels: Vec<LevelHead>,
    classes: usize,
    /// Rows of the head Conv after the classes (NanoDet's box bins; 0 for YOLOX,
    /// whose class Conv makes only classes).
    box_channels: usize,
    features: usize,
    /// YOLOX: the graph's one output, whose last dimension is `5 + classes`.
    output: Option<String>,
}

/// Reads and parses an ONNX file.
fn read_model(path: &Path) -> Result<ModelProto, GraphError> {
    let err = |reason: String| GraphError {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    ModelProto::parse_from_bytes(&bytes).map_err(|e| err(format!("not an ONNX model: {e}")))
}

impl HeadGraph {
    /// Reads the manifest's ONNX file and finds its head, as its family lays it out.
    pub fn for_manifest(manifest: &Manifest) -> Result<Self, GraphError> {
        let classes = manifest.labels.len();
        match manifest.family {
            Family::Nanodet => Self::locate(
                &manifest.onnx,
                &manifest.output.class_outputs,
                classes,
                manifest.output.bins,
            ),
            Family::Yolox => {
                let output = manifest.output.output.clone().unwrap_or_default();
                let model = read_model(&manifest.onnx)?;
                let (levels, features) =
                    yolox::locate(&model.graph, &output, classes).map_err(|reason| GraphError {
                        path: manifest.onnx.clone(),
                        reason,
                    })?;
                if levels.len() != manifest.output.strides.len() {
                    return Err(GraphError {
                        path: manifest.onnx.clone(),
                        reason: format!(
                            "the output joins {} levels, the manifest names {} strides",
                            levels.len(),
                            manifest.output.strides.len()
                        ),
                    });
                }
                Ok(Self {
                    path: manifest.onnx.clone(),
                    model,
                    family: Family::Yolox,
                    levels,
                    classes,
                    box_channels: 0,
                    features,
                    output: Some(output),
                })
            }
        }
    }

    /// Reads a NanoDet ONNX file and finds the head of each level from its class
    /// output.
    pub fn locate(
        path: &Path,
        class_outputs: &[String],
        classes: usize,
        bins: usize,
    ) -> Result<Self, GraphError> {
        let err = |reason: String| GraphError {
            path: path.to_path_buf(),
            reason,
        };
        let model = read_model(path)?;
        let mut levels = Vec::new();
        let mut features = None;
        for output in class_outputs {
            let (level, f) = locate_level(&model.graph, output, classes, bins).map_err(err)?;
            if features.is_some_and(|g| g != f) {
                return Err(err("head levels have different feature widths".into()));
            }
            features = Some(f);
            levels.push(level);
        }
        Ok(Self {
            path: path.to_path_buf(),
            model,
            family: Family::Nanodet,
            levels,
            classes,
            box_channels: 4 * bins,
            features: features.ok_or_else(|| err("the manifest names no class outputs".into()))?,
            output: None,
        })
    }

    /// Channels of the frozen feature each head reads.
    pub fn feature_width(&self) -> usize {
        self.features
    }

    /// Names of the frozen feature tensors, per level.
    pub fn feature_names(&self) -> Vec<String> {
        self.levels.iter().map(|l| l.feature.clone()).collect()
    }

    /// The pretrained head of level `i`: rows are the classes, then the box bins.
    pub fn pretrained(&self, i: usize) -> Result<LinearWeights, GraphError> {
        let node = &self.model.graph.node[self.levels[i].conv];
        let read = |name: &str| {
            initializer(&self.model.graph, name)
                .and_then(float_values)
                .ok_or_else(|| GraphError {
                    path: self.path.clone(),
                    reason: format!("cannot read float tensor {name:?}"),
                })
        };
        let rows = self.classes + self.box_channels;
        let weight =
            Array2::from_shape_vec((rows, self.features), read(&node.input[1])?).map_err(|e| {
                GraphError {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }
            })?;
        let bias = Array1::from_vec(read(&node.input[2])?);
        if bias.len() != rows {
            return Err(GraphError {
                path: self.path.clone(),
                reason: "head bias has the wrong length".into(),
            });
        }
        Ok(LinearWeights { weight, bias })
    }

    fn trunk(&self, i: usize) -> Result<&TrunkHead, GraphError> {
        self.levels[i].trunk.as_ref().map_err(|reason| GraphError {
            path: self.path.clone(),
            reason: format!("cannot train the head's convolution: {reason}"),
        })
    }

    /// Names of the trainable convolutions' (padded) inputs, per level; an error
    /// when a level has no such convolution.
    pub fn trunk_inputs(&self) -> Result<Vec<String>, GraphError> {
        (0..self.levels.len())
            .map(|i| self.trunk(i).map(|t| t.input.clone()))
            .collect()
    }

    /// The pretrained convolution of level `i`: weights `[F, C·k²]` and its shape.
    pub fn pretrained_trunk(&self, i: usize) -> Result<(LinearWeights, TrunkShape), GraphError> {
        let trunk = self.trunk(i)?;
        let node = &self.model.graph.node[trunk.conv];
        let err = |reason: String| GraphError {
            path: self.path.clone(),
            reason,
        };
        let read = |name: &str| {
            initializer(&self.model.graph, name)
                .and_then(float_values)
                .ok_or_else(|| err(format!("cannot read float tensor {name:?}")))
        };
        let cols = trunk.channels * trunk.kernel * trunk.kernel;
        let weight = Array2::from_shape_vec((self.features, cols), read(&node.input[1])?)
            .map_err(|e| err(e.to_string()))?;
        let bias = Array1::from_vec(read(&node.input[2])?);
        if bias.len() != self.features {
            return Err(err("head convolution bias has the wrong length".into()));
        }
        let shape = TrunkShape {
            channels: trunk.channels,
            kernel: trunk.kernel,
            alpha: trunk.alpha,
        };
        Ok((LinearWeights { weight, bias }, shape))
    }

    /// The model with each level's feature tensor added as an output (named as in
    /// the graph), and with `trunk` also the trainable convolutions' inputs,
    /// serialised.
    pub fn feature_model(&self, trunk: bool) -> Result<Vec<u8>, GraphError> {
        let mut model = self.model.clone();
        let inputs = if trunk {
            self.trunk_inputs()?
        } else {
            Vec::new()
        };
        let graph = model.graph.mut_or_insert_default();
        for level in &self.levels {
            graph.output.push(float_output(&level.feature));
        }
        for input in &inputs {
            graph.output.push(float_output(input));
        }
        self.serialise(&model)
    }

    /// A model whose level heads are `heads` (rows: one per label, then
    /// NanoDet's box bins), serialised; the labels go into its metadata.
    /// With `branches` (one per level, or none), each level also gets its
    /// [`ClassBranch`]. YOLOX only: `gated[k]` says whether label `k` keeps the
    /// base model's objectness × class score (the kept classes) or is scored by
    /// its class row alone (the trained ones); see [`yolox`].
    pub fn with_heads(
        &self,
        heads: &[LinearWeights],
        branches: &[ClassBranch<'_>],
        labels: &[String],
        gated: &[bool],
    ) -> Result<Vec<u8>, GraphError> {
        let classes = labels.len();
        let err = |reason: String| GraphError {
            path: self.path.clone(),
            reason,
        };
        if heads.len() != self.levels.len() {
            return Err(err(format!(
                "{} heads for {} levels",
                heads.len(),
                self.levels.len()
            )));
        }
        let mut model = self.model.clone();
        let graph = model.graph.mut_or_insert_default();
        let mut replaced = HashSet::new();
        if self.family == Family::Yolox {
            if !branches.is_empty() {
                return Err(err("YOLOX heads take no class branches".into()));
            }
            let output = self.output.as_deref().unwrap_or_default();
            yolox::swap_heads(self, graph, heads, gated, output, &mut replaced).map_err(err)?;
        }
        for (i, (level, head)) in self.levels.iter().zip(heads).enumerate() {
            let Tail::Split { cls_reshape, .. } = &level.tail else {
                continue;
            };
            if i == 0 {
                let old_shape = graph.node[*cls_reshape].input[1].clone();
                self.add_shared_constants(graph, &old_shape, classes)
                    .map_err(err)?;
            }
            self.swap_level_head(graph, i, level, head, classes, &mut replaced)
                .map_err(err)?;
        }
        if !branches.is_empty() {
            if branches.len() != self.levels.len() {
                return Err(err(format!(
                    "{} class branches for {} levels",
                    branches.len(),
                    self.levels.len()
                )));
            }
            let mut inserts = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                let Tail::Split { split, .. } = self.levels[i].tail else {
                    return Err(err("only NanoDet heads take class branches".into()));
                };
                inserts.push((split, self.add_branch(graph, i, branch, classes)?));
            }
            // From the last place back, so the earlier places stay valid.
            inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            for (at, nodes) in inserts {
                for (n, node) in nodes.into_iter().enumerate() {
                    graph.node.insert(at + 1 + n, node);
                }
            }
        }
        drop_unread(graph, &replaced);
        let mut entry = onnx_protobuf::StringStringEntryProto::new();
        entry.key = "pedvision.labels".into();
        entry.value = labels.join(",");
        model.metadata_props.retain(|e| e.key != entry.key);
        model.metadata_props.push(entry);
        model.producer_name = "pedvision retrain".into();
        model.producer_version = env!("CARGO_PKG_VERSION").into();
        self.serialise(&model)
    }

    /// The split sizes and class-reshape shape every level's new head shares,
    /// made from the first level's reshape constant `old_shape`.
    fn add_shared_constants(
        &self,
        graph: &mut GraphProto,
        old_shape: &str,
        classes: usize,
    ) -> Result<(), String> {
        let shape = initializer(graph, old_shape)
            .and_then(int64_values)
            .ok_or_else(|| format!("class reshape {old_shape:?} is not a constant"))?;
        let shape: Vec<i64> = shape
            .iter()
            .map(|&d| {
                if d == self.classes as i64 {
                    classes as i64
                } else {
                    d
                }
            })
            .collect();
        graph.initializer.push(int64_tensor(SHAPE_NAME, &shape));
        graph.initializer.push(int64_tensor(
            SPLIT_NAME,
            &[classes as i64, self.box_channels as i64],
        ));
        Ok(())
    }

    /// Points level `i`'s Conv, Split and class Reshape at the new head's
    /// constants, and its class output at the new class count.
    fn swap_level_head(
        &self,
        graph: &mut GraphProto,
        i: usize,
        level: &LevelHead,
        head: &LinearWeights,
        classes: usize,
        replaced: &mut HashSet<String>,
    ) -> Result<(), String> {
        let rows = classes + self.box_channels;
        if head.weight.dim() != (rows, self.features) || head.bias.len() != rows {
            return Err(format!(
                "head {i} has shape {:?}, expected [{rows}, {}]",
                head.weight.dim(),
                self.features
            ));
        }
        let weight_name = format!("pedvision/head/s{i}/weight");
        let bias_name = format!("pedvision/head/s{i}/bias");
        let conv = &mut graph.node[level.conv];
        replaced.insert(std::mem::replace(&mut conv.input[1], weight_name.clone()));
        replaced.insert(std::mem::replace(&mut conv.input[2], bias_name.clone()));
        graph.initializer.push(float_tensor(
            &weight_name,
            &[rows as i64, self.features as i64, 1, 1],
            head.weight.iter().copied(),
        ));
        graph.initializer.push(float_tensor(
            &bias_name,
            &[rows as i64],
            head.bias.iter().copied(),
        ));
        let Tail::Split {
            split,
            cls_reshape,
            class_output,
            ..
        } = &level.tail
        else {
            return Err(format!("head {i} is not a NanoDet head"));
        };
        replace_input(&mut graph.node[*split], 1, SPLIT_NAME, replaced);
        replace_input(&mut graph.node[*cls_reshape], 1, SHAPE_NAME, replaced);
        if let Some(out) = graph.output.iter_mut().find(|o| &o.name == class_output) {
            set_last_dim(out, classes as i64);
        }
        Ok(())
    }

    /// Level `i`'s class branch, to go right after its Split: Conv k×k →
    /// LeakyReLU → Conv 1×1 → Add to the Split's class logits, which the Sigmoid
    /// is pointed at. Adds the branch's constants; the caller inserts the nodes.
    fn add_branch(
        &self,
        graph: &mut GraphProto,
        i: usize,
        branch: &ClassBranch<'_>,
        classes: usize,
    ) -> Result<[NodeProto; 4], GraphError> {
        let level = &self.levels[i];
        let trunk = self.trunk(i)?.clone();
        let k = trunk.kernel as i64;
        let cols = trunk.channels * trunk.kernel * trunk.kernel;
        if branch.conv.weight.dim() != (self.features, cols)
            || branch.classes.weight.dim() != (classes, self.features)
        {
            return Err(GraphError {
                path: self.path.clone(),
                reason: format!("class branch {i} has the wrong shape"),
            });
        }
        let name = |part: &str| format!("pedvision/branch/s{i}/{part}");
        let f = self.features as i64;
        let tensors = [
            (
                "conv_w",
                vec![f, trunk.channels as i64, k, k],
                &branch.conv.weight,
            ),
            (
                "cls_w",
                vec![classes as i64, f, 1, 1],
                &branch.classes.weight,
            ),
        ];
        for (part, dims, w) in tensors {
            graph
                .initializer
                .push(float_tensor(&name(part), &dims, w.iter().copied()));
        }
        let biases = [
            ("conv_b", &branch.conv.bias),
            ("cls_b", &branch.classes.bias),
        ];
        for (part, b) in biases {
            graph.initializer.push(float_tensor(
                &name(part),
                &[b.len() as i64],
                b.iter().copied(),
            ));
        }
        let Tail::Split { split, sigmoid, .. } = level.tail else {
            return Err(GraphError {
                path: self.path.clone(),
                reason: format!("head {i} is not a NanoDet head"),
            });
        };
        let split_out = graph.node[split].output[0].clone();
        let nodes = [
            conv_node(
                &name("conv"),
                [&trunk.input, &name("conv_w"), &name("conv_b")],
                &name("pre"),
                k,
            ),
            leaky_node(&name("act"), &name("pre"), &name("feature"), trunk.alpha),
            conv_node(
                &name("cls"),
                [&name("feature"), &name("cls_w"), &name("cls_b")],
                &name("logits"),
                1,
            ),
            add_node(
                &name("add"),
                [&split_out, &name("logits")],
                &name("class_logits"),
            ),
        ];
        graph.node[sigmoid].input[0] = name("class_logits");
        Ok(nodes)
    }

    fn serialise(&self, model: &ModelProto) -> Result<Vec<u8>, GraphError> {
        model.write_to_bytes().map_err(|e| GraphError {
            path: self.path.clone(),
            reason: format!("cannot serialise: {e}"),
        })
    }
}

/// A model of just the trunks' convolutions, for training them: per level `l`,
/// inputs `x{l}` (`[N, C, Hp, Wp]`), `w{l}` (`[F, C, k, k]`) and `b{l}` (`[F]`),
/// output `out{l}` = `Conv(x, w, b)` (`[N, F, Hp−k+1, Wp−k+1]`; F is whatever `w`
/// has: the copy's width, or a low-rank update's rank). The weights are inputs,
/// so one session serves every optimiser step.
pub fn trunk_model(shapes: &[TrunkShape]) -> Vec<u8> {
    let mut model = ModelProto::new();
    model.ir_version = 8;
    let mut opset = onnx_protobuf::OperatorSetIdProto::new();
    opset.version = 13;
    model.opset_import.push(opset);
    model.producer_name = "pedvision retrain".into();
    let graph = model.graph.mut_or_insert_default();
    graph.name = "pedvision-trunks".into();
    for (l, shape) in shapes.iter().enumerate() {
        let [x, w, b, out] = ["x", "w", "b", "out"].map(|p| format!("{p}{l}"));
        for input in [&x, &w, &b] {
            graph.input.push(float_output(input));
        }
        graph.node.push(conv_node(
            &format!("conv{l}"),
            [&x, &w, &b],
            &out,
            shape.kernel as i64,
        ));
        graph.output.push(float_output(&out));
    }
    model.write_to_bytes().unwrap_or_default()
}

/// Names of the constants the new heads share.
const SPLIT_NAME: &str = "pedvision/head/split_sizes";
const SHAPE_NAME: &str = "pedvision/head/class_shape";

/// Drops the old head's constants once nothing reads them.
fn drop_unread(graph: &mut GraphProto, replaced: &HashSet<String>) {
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    graph
        .initializer
        .retain(|t| !replaced.contains(&t.name) || used.contains(&t.name));
    graph
        .value_info
        .retain(|v| !replaced.contains(&v.name) || used.contains(&v.name));
}

/// Which node of `graph` makes a tensor.
fn producer_in(graph: &GraphProto) -> impl Fn(&str) -> Option<usize> + '_ {
    |tensor: &str| {
        graph
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == tensor))
    }
}

/// Follows first inputs back from `tensor` through nodes of the given op types.
/// Returns the node indices, or what was found instead.
fn walk_back(
    nodes: &[NodeProto],
    producer: &dyn Fn(&str) -> Option<usize>,
    tensor: &str,
    ops: &[&str],
) -> Result<Vec<usize>, String> {
    let mut chain = Vec::with_capacity(ops.len());
    let mut current = tensor.to_string();
    for &op in ops {
        let i = producer(&current).ok_or_else(|| format!("no node makes {current:?}"))?;
        let node = &nodes[i];
        if node.op_type != op {
            return Err(format!("{} where {op} was expected", node.op_type));
        }
        chain.push(i);
        current = node.input.first().cloned().unwrap_or_default();
    }
    Ok(chain)
}

fn replace_input(node: &mut NodeProto, index: usize, name: &str, replaced: &mut HashSet<String>) {
    if let Some(slot) = node.input.get_mut(index)
        && slot != name
    {
        replaced.insert(std::mem::replace(slot, name.to_string()));
    }
}

fn initializer<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    graph.initializer.iter().find(|t| t.name == name)
}

fn float_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != FLOAT {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    } else {
        Some(t.float_data.clone())
    }
}

fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != INT64 {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
        )
    } else {
        Some(t.int64_data.clone())
    }
}

fn node(op: &str, name: &str, inputs: &[&String], output: &str) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n
}

fn ints_attribute(name: &str, values: &[i64]) -> onnx_protobuf::AttributeProto {
    let mut a = onnx_protobuf::AttributeProto::new();
    a.name = name.into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::INTS.into();
    a.ints = values.to_vec();
    a
}

/// A plain k×k convolution (stride 1, no padding, one group).
fn conv_node(name: &str, inputs: [&String; 3], output: &str, kernel: i64) -> NodeProto {
    let mut n = node("Conv", name, &inputs, output);
    n.attribute
        .push(ints_attribute("kernel_shape", &[kernel, kernel]));
    n
}

fn leaky_node(name: &str, input: &String, output: &str, alpha: f32) -> NodeProto {
    let mut n = node("LeakyRelu", name, &[input], output);
    let mut a = onnx_protobuf::AttributeProto::new();
    a.name = "alpha".into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::FLOAT.into();
    a.f = alpha;
    n.attribute.push(a);
    n
}

fn add_node(name: &str, inputs: [&String; 2], output: &str) -> NodeProto {
    node("Add", name, &inputs, output)
}

fn float_tensor(name: &str, dims: &[i64], values: impl Iterator<Item = f32>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = FLOAT;
    t.raw_data = values.flat_map(f32::to_le_bytes).collect();
    t
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = vec![values.len() as i64];
    t.data_type = INT64;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn float_output(name: &str) -> ValueInfoProto {
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = FLOAT;
    let mut ty = TypeProto::new();
    ty.set_tensor_type(tensor);
    let mut info = ValueInfoProto::new();
    info.name = name.into();
    info.type_ = Some(ty).into();
    info
}

fn set_last_dim(info: &mut ValueInfoProto, value: i64) {
    if let Some(ty) = info.type_.as_mut()
        && let Some(dim) = ty
            .mut_tensor_type()
            .shape
            .as_mut()
            .and_then(|s| s.dim.last_mut())
    {
        dim.set_dim_value(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.onnx");

    fn outputs() -> Vec<String> {
        ["cls_s8", "cls_s16", "cls_s32"].map(String::from).to_vec()
    }

    #[test]
    fn finds_the_bundled_models_head() {
        let g = HeadGraph::locate(Path::new(MODEL), &outputs(), 80, 11).unwrap();
        assert_eq!(g.feature_width(), 128);
        let names = g.feature_names();
        assert_eq!(names.len(), 3);
        assert!(names.iter().all(|n| n.contains("LeakyRelu")), "{names:?}");
        let pre = g.pretrained(0).unwrap();
        assert_eq!(pre.weight.dim(), (124, 128));
        assert_eq!(pre.bias.len(), 124);
        // A wrong class count is refused with the shape it found.
        let err = HeadGraph::locate(Path::new(MODEL), &outputs(), 3, 11)
            .err()
            .unwrap();
        assert!(err.reason.contains("[124, 128, 1, 1]"), "{err}");
        let err = HeadGraph::locate(Path::new(MODEL), &["box_s8".to_string()], 80, 11)
            .err()
            .unwrap();
        assert!(
            err.reason.contains("does not come from a 1×1 Conv head"),
            "{err}"
        );
    }

    #[test]
    fn a_new_head_replaces_the_old_one_and_nothing_else() {
        let g = HeadGraph::locate(Path::new(MODEL), &outputs(), 80, 11).unwrap();
        let heads: Vec<LinearWeights> = (0..3)
            .map(|i| {
                let pre = g.pretrained(i).unwrap();
                // Two classes: person (row 0) and a made-up one, then the box rows.
                let mut rows = vec![0usize, 5];
                rows.extend(80..124);
                LinearWeights {
                    weight: pre.weight.select(ndarray::Axis(0), &rows),
                    bias: pre.bias.select(ndarray::Axis(0), &rows),
                }
            })
            .collect();
        let labels = ["person".to_string(), "thing".to_string()];
        let bytes = g.with_heads(&heads, &[], &labels, &[]).unwrap();
        let model = ModelProto::parse_from_bytes(&bytes).unwrap();
        let graph = &model.graph;
        let w = initializer(graph, "pedvision/head/s0/weight").unwrap();
        assert_eq!(w.dims, vec![46, 128, 1, 1]);
        assert_eq!(
            int64_values(initializer(graph, "pedvision/head/split_sizes").unwrap()).unwrap(),
            vec![2, 44]
        );
        assert_eq!(
            int64_values(initializer(graph, "pedvision/head/class_shape").unwrap()).unwrap(),
            vec![0, 2, -1]
        );
        // The old head's weights are gone; the backbone's are all still there.
        assert!(initializer(graph, "PartitionedCall/split_29:0").is_none());
        let original = &g.model.graph;
        assert_eq!(
            graph.initializer.len(),
            original.initializer.len() - 6 - 2 + 6 + 2
        );
        assert_eq!(graph.node.len(), original.node.len());
        let cls = graph.output.iter().find(|o| o.name == "cls_s8").unwrap();
        let dims = &cls.type_.tensor_type().shape.dim;
        assert_eq!(dims.last().unwrap().dim_value(), 2);
        assert!(
            model
                .metadata_props
                .iter()
                .any(|e| e.key == "pedvision.labels" && e.value == "person,thing")
        );
    }

    #[test]
    fn branches_go_beside_the_original_head_and_feed_its_sigmoid() {
        let g = HeadGraph::locate(Path::new(MODEL), &outputs(), 80, 11).unwrap();
        let (conv, shape) = g.pretrained_trunk(0).unwrap();
        assert_eq!(
            shape,
            TrunkShape {
                channels: 128,
                kernel: 3,
                alpha: 0.1
            }
        );
        assert_eq!(conv.weight.dim(), (128, 128 * 9));
        assert!(g.trunk_inputs().unwrap().iter().all(|n| n.contains("Pad")));
        let heads: Vec<LinearWeights> = (0..3)
            .map(|i| {
                let pre = g.pretrained(i).unwrap();
                let rows: Vec<usize> = [0usize].into_iter().chain(80..124).collect();
                LinearWeights {
                    weight: pre.weight.select(ndarray::Axis(0), &rows),
                    bias: pre.bias.select(ndarray::Axis(0), &rows),
                }
            })
            .collect();
        let convs: Vec<LinearWeights> = (0..3).map(|i| g.pretrained_trunk(i).unwrap().0).collect();
        let rows = LinearWeights {
            weight: Array2::zeros((1, 128)),
            bias: Array1::zeros(1),
        };
        let branches: Vec<ClassBranch<'_>> = convs
            .iter()
            .map(|conv| ClassBranch {
                conv,
                classes: &rows,
            })
            .collect();
        let bytes = g
            .with_heads(&heads, &branches, &["person".to_string()], &[])
            .unwrap();
        let model = ModelProto::parse_from_bytes(&bytes).unwrap();
        let graph = &model.graph;
        assert_eq!(graph.node.len(), g.model.graph.node.len() + 12);
        // Every level's Sigmoid reads its branch's sum, made before it.
        for i in 0..3 {
            let add = format!("pedvision/branch/s{i}/class_logits");
            let made = graph.node.iter().position(|n| n.output[0] == add).unwrap();
            let read = graph
                .node
                .iter()
                .position(|n| n.input.contains(&add))
                .unwrap();
            assert_eq!(graph.node[read].op_type, "Sigmoid");
            assert!(made < read);
        }
        let trunk = ModelProto::parse_from_bytes(&trunk_model(&[TrunkShape {
            channels: 2,
            kernel: 3,
            alpha: 0.1,
        }]))
        .unwrap();
        assert_eq!(trunk.graph.input.len(), 3);
        assert_eq!(trunk.graph.output[0].name, "out0");
    }
}
