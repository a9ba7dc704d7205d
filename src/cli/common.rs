//! Options shared by the subcommands that run the detector (model, thresholds,
//! batching, device), and the steps they share: loading the runtime and the model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pedvision::config::{Manifest, defaults};
use pedvision::infer::{Detector, Device, Precision, RuntimeOptions, runtime};
use pedvision::model::classes::ClassFilter;
use pedvision::model::flip::Tta;
use pedvision::model::geometry::Resize;
use pedvision::pipeline::PostOptions;

/// The model manifest given, else the default one found at run time
/// ([`pedvision::resources`]' order).
pub fn model_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(pedvision::resources::model(given)?.path)
}

/// The bundled demo clip (200 frames of OpenCV's vtest.avi), found at run time.
pub fn demo_clip() -> anyhow::Result<String> {
    Ok(pedvision::resources::demo_clip()?
        .path
        .to_string_lossy()
        .into_owned())
}

#[derive(Debug, Clone, Args)]
pub struct DetectorArgs {
    /// Model manifest (.toml), or an .onnx file with its manifest beside it.
    /// Default: PEDVISION_MODEL, else the bundled nanodet-g.toml, looked for beside
    /// the executable (../share/pedvision), in the XDG data directory, in
    /// /usr/share/pedvision, then in the build checkout (`doctor` shows which).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// Classes to keep: `person` (pedestrians), `all`, or labels such as
    /// `person,bicycle,car`.
    #[arg(long, default_value = defaults::CLASSES, value_name = "LIST")]
    pub classes: String,

    /// Minimum class score for a detection, in (0, 1).
    #[arg(long, default_value_t = defaults::CONF, value_parser = open_unit_interval)]
    pub conf: f32,

    /// IoU above which non-maximum suppression drops a box of the same class, in (0, 1].
    #[arg(long, default_value_t = defaults::IOU, value_parser = iou_threshold)]
    pub iou: f32,

    /// Most detections kept per frame after NMS, best first (COCO's limit).
    #[arg(long, default_value_t = defaults::MAX_DETECTIONS, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_detections: usize,

    /// Square network input size in pixels instead of the manifest's (NanoDet-g:
    /// 512×384, YOLOX-Nano: 416×416), e.g. 416, 512, 640; a multiple of the largest
    /// stride. Larger finds smaller, more distant people, at a cost in speed. Only for
    /// graphs that take any size: NanoDet-g's and YOLOX-Nano's do, the INT8 NanoDet-g
    /// is fixed at 512×384.
    #[arg(long, value_name = "PIXELS")]
    pub input_size: Option<u32>,

    /// Test-time augmentation instead of the manifest's `input.tta`: `flip` also
    /// runs each frame's mirror image and scores each object by the mean of the two
    /// views (ranks people above the background better, at twice the inference);
    /// `none` runs each frame once.
    #[arg(long, value_name = "MODE", value_parser = super::choice::<Tta>())]
    pub tta: Option<Tta>,

    /// Frames per inference call (1 to 64). Larger batches help GPUs most.
    #[arg(long, default_value_t = defaults::BATCH,
          value_parser = clap::value_parser!(u16).range(1..=defaults::MAX_BATCH as i64))]
    pub batch: u16,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where and how ONNX Runtime runs: shared by every subcommand that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Execution provider. `auto` tries TensorRT, CUDA, OpenVINO and the CPU, in
    /// that order, among those whose library is installed, and logs its choice; a
    /// named device never falls back.
    #[arg(long, value_parser = super::choice::<Device>(), default_value_t = Device::Auto)]
    pub device: Device,

    /// Arithmetic. `auto`: bf16 under OpenVINO on CPUs with AMX or AVX-512 BF16,
    /// fp16 under TensorRT, fp32 otherwise. `int8` runs the model's quantized
    /// version (its manifest's [variants] int8).
    #[arg(long, value_parser = super::choice::<Precision>(), default_value_t = Precision::Auto)]
    pub precision: Precision,

    /// Inference threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// The ONNX Runtime library (libonnxruntime.so). Default: ORT_DYLIB_PATH, then
    /// the device's build (the CPU build; openvino/ for openvino; gpu/ for cuda and
    /// tensorrt) in ../lib/pedvision beside the executable, the executable's own
    /// folder, /usr/lib/pedvision, then the build checkout's .ort/ (`make setup`
    /// fills it; `doctor` shows which was found).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

fn open_unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1 (exclusive)"))
    }
}

fn iou_threshold(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 1]"))
    }
}

/// `manifest` with the input size `--input-size` asks for, if any.
pub fn with_input_size(manifest: Manifest, size: Option<u32>) -> anyhow::Result<Manifest> {
    Ok(match size {
        Some(size) => manifest.with_input_size(size)?,
        None => manifest,
    })
}

/// `manifest` with `--resize` applied, if given.
pub fn with_resize(manifest: Manifest, resize: Option<Resize>) -> Manifest {
    match resize {
        Some(resize) => manifest.with_resize(resize),
        None => manifest,
    }
}

/// `manifest` with `--tta` applied, if given.
pub fn with_tta(manifest: Manifest, tta: Option<Tta>) -> Manifest {
    match tta {
        Some(tta) => manifest.with_tta(tta),
        None => manifest,
    }
}

/// A loaded model with the options to post-process its outputs.
pub struct LoadedModel {
    pub manifest: Manifest,
    pub detector: Detector,
    pub post: PostOptions,
    /// The options the detector was loaded with (as asked: `auto` stays `auto`).
    pub runtime: RuntimeOptions,
}

impl RuntimeArgs {
    /// Loads the ONNX Runtime library; returns the session options.
    pub fn init(&self) -> anyhow::Result<RuntimeOptions> {
        runtime::init(self.ort_lib.as_deref(), self.device)?;
        Ok(RuntimeOptions {
            device: self.device,
            precision: self.precision,
            threads: self.threads,
        })
    }
}

impl DetectorArgs {
    /// Reads the manifest and the class list: cheap checks, before any loading.
    pub fn manifest_and_classes(&self) -> anyhow::Result<(Manifest, ClassFilter)> {
        let manifest = Manifest::load(&model_path(self.model.as_deref())?)?
            .for_precision(self.runtime.precision)?;
        let manifest = with_tta(with_input_size(manifest, self.input_size)?, self.tta);
        let classes = ClassFilter::parse(&self.classes, &manifest.labels).context("--classes")?;
        Ok((manifest, classes))
    }

    /// Loads ONNX Runtime and the model.
    pub fn load(&self, manifest: Manifest, classes: ClassFilter) -> anyhow::Result<LoadedModel> {
        let options = self.runtime.init()?;
        let detector = Detector::load(&manifest, &options)?;
        let runtime = options.clone();
        let post = PostOptions {
            input: manifest.input.clone(),
            layout: manifest.layout(),
            labels: manifest.labels.clone(),
            classes,
            conf: self.conf,
            iou: self.iou,
            max_detections: self.max_detections,
        };
        Ok(LoadedModel {
            manifest,
            detector,
            post,
            runtime,
        })
    }
}
