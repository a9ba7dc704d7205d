//! The model manifest: a TOML file beside the ONNX model that states its input name,
//! size and normalisation, its output layout and its labels (see
//! `models/nanodet-g.toml` for a documented example). Code reads only this, so a
//! retrained model of the same family with other classes runs without code changes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Family, flip::Tta, geometry::Resize, nanodet::Layout};

/// Errors from finding, reading or checking a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest not found: {path} ({source})")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model manifest {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("model manifest {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Channel order of the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Bgr,
    Rgb,
}

/// The network input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name.
    pub name: String,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order the network expects; the layout is NCHW float32.
    pub channel_order: ChannelOrder,
    /// Per-channel mean, in `channel_order`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in `channel_order`.
    pub std: [f32; 3],
    /// How frames are fitted to the input: `stretch` (default) or `letterbox`.
    #[serde(default)]
    pub resize: Resize,
    /// Pixel value (0–255, before normalisation) of a letterbox's bars.
    #[serde(default)]
    pub pad: f32,
    /// What else the network sees of each frame: `none` (default) or `flip`
    /// (also its mirror image, see [`crate::model::flip`]).
    #[serde(default)]
    pub tta: Tta,
}

/// The network outputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Stride of each pyramid level.
    pub strides: Vec<u32>,
    /// NanoDet: distance bins per box side.
    #[serde(default)]
    pub bins: usize,
    /// NanoDet: per stride, the class-score tensor `[batch, cells, labels]`.
    #[serde(default)]
    pub class_outputs: Vec<String>,
    /// NanoDet: per stride, the box-bin tensor `[batch, cells, 4 * bins]`.
    #[serde(default)]
    pub box_outputs: Vec<String>,
    /// YOLOX: the one tensor `[batch, cells, 5 + labels]`.
    #[serde(default)]
    pub output: Option<String>,
}

/// A model manifest, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model family; selects the decoder.
    pub family: Family,
    /// Human-readable model name.
    pub name: String,
    /// The ONNX file, relative to the manifest (resolved by [`Manifest::load`]).
    pub onnx: PathBuf,
    /// Class labels, in class-channel order.
    pub labels: Vec<String>,
    /// The network input.
    pub input: InputSpec,
    /// The network outputs.
    pub output: OutputSpec,
    /// Other versions of this model, by precision.
    #[serde(default)]
    pub variants: Variants,
    /// How a quantized model was made; present only in an int8 model's manifest.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// Where the manifest was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// Other versions of a model, each a manifest path relative to this manifest.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variants {
    /// The INT8 version (`--precision int8`).
    pub int8: Option<PathBuf>,
}

/// How a quantized model was made and how close it is to its float source: a
/// record for people; only `precision` is read by the code.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// Always "int8".
    pub precision: String,
    pub method: Option<String>,
    pub calibration: Option<String>,
    pub source: Option<String>,
    pub script: Option<String>,
    pub parity: Option<String>,
}

impl Manifest {
    /// Whether this is a quantized (int8) model.
    pub fn is_int8(&self) -> bool {
        self.quantization.is_some()
    }

    /// The manifest to run at `precision`: for int8, this model's INT8 version
    /// (itself if it is one); otherwise this one.
    pub fn for_precision(self, precision: crate::infer::Precision) -> Result<Self, ManifestError> {
        if precision != crate::infer::Precision::Int8 || self.is_int8() {
            return Ok(self);
        }
        let Some(int8) = &self.variants.int8 else {
            return Err(ManifestError::Invalid {
                path: self.path.clone(),
                reason: "--precision int8 needs an INT8 version of the model, and this manifest names none ([variants] int8 = \"...toml\"; models/quantize.sh makes one)".into(),
            });
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let variant = Self::load(&dir.join(int8))?;
        if !variant.is_int8() {
            return Err(ManifestError::Invalid {
                path: variant.path.clone(),
                reason: "named as the int8 variant, but has no [quantization] table".into(),
            });
        }
        if variant.labels != self.labels || variant.input != self.input {
            return Err(ManifestError::Invalid {
                path: variant.path.clone(),
                reason: format!(
                    "the int8 variant's labels or input differ from {}",
                    self.path.display()
                ),
            });
        }
        Ok(variant)
    }

    /// Reads a manifest. `path` is the TOML file, or an `.onnx` file whose manifest
    /// is the `.toml` of the same name beside it. The ONNX path in the result is
    /// resolved against the manifest's folder.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let path = if path.extension().is_some_and(|e| e == "onnx") {
            path.with_extension("toml")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let mut manifest = Self::parse(&text, &path)?;
        if manifest.onnx.is_relative() {
            let dir = path.parent().unwrap_or(Path::new("."));
            manifest.onnx = dir.join(&manifest.onnx);
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            // toml's message spans several lines (with a caret); keep it to one.
            message: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        manifest.path = path.to_path_buf();
        manifest.validate()?;
        Ok(manifest)
    }

    /// The output tensors' names in the order the decoder takes them (see
    /// [`Layout::tensors`]).
    pub fn output_names(&self) -> Vec<String> {
        match self.family {
            Family::Nanodet => self
                .output
                .class_outputs
                .iter()
                .chain(&self.output.box_outputs)
                .cloned()
                .collect(),
            Family::Yolox => self.output.output.iter().cloned().collect(),
        }
    }

    /// This manifest with a square input of `size` pixels instead of its own
    /// (`--input-size`); the session later checks that the graph accepts it.
    pub fn with_input_size(mut self, size: u32) -> Result<Self, ManifestError> {
        let largest = self.output.strides.iter().copied().max().unwrap_or(1);
        if size == 0 || !size.is_multiple_of(largest) || size > 4096 {
            return Err(ManifestError::Invalid {
                path: self.path.clone(),
                reason: format!(
                    "input size {size} must be a positive multiple of the largest stride ({largest}), at most 4096"
                ),
            });
        }
        self.input.width = size;
        self.input.height = size;
        Ok(self)
    }

    /// This manifest with frames fitted by `resize` instead of its own (`--resize`).
    pub fn with_resize(mut self, resize: Resize) -> Self {
        self.input.resize = resize;
        self
    }

    /// This manifest with test-time augmentation `tta` instead of its own (`--tta`).
    pub fn with_tta(mut self, tta: Tta) -> Self {
        self.input.tta = tta;
        self
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            path: self.path.clone(),
            reason,
        };
        self.validate_outputs().map_err(invalid)?;
        if self.labels.is_empty() {
            return Err(invalid("`labels` is empty".into()));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|l| l.trim().is_empty() || l.contains(','))
        {
            return Err(invalid(format!("label {l:?} is empty or contains a comma")));
        }
        let i = &self.input;
        if !(0.0..=255.0).contains(&i.pad) {
            return Err(invalid(format!(
                "`input.pad` {} is not a pixel value (0 to 255)",
                i.pad
            )));
        }
        if i.width == 0 || i.height == 0 {
            return Err(invalid(
                "`input.width` and `input.height` must be positive".into(),
            ));
        }
        if i.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || i.mean.iter().any(|m| !m.is_finite())
        {
            return Err(invalid(
                "`input.std` must be finite and non-zero, `input.mean` finite".into(),
            ));
        }
        if let Some(q) = &self.quantization
            && q.precision != "int8"
        {
            return Err(invalid(format!(
                "`quantization.precision` {:?} is not supported (only \"int8\")",
                q.precision
            )));
        }
        Ok(())
    }

    /// Checks `[output]` against what the family needs.
    fn validate_outputs(&self) -> Result<(), String> {
        let o = &self.output;
        if o.strides.is_empty() || o.strides.contains(&0) {
            return Err("`output.strides` must list positive strides".into());
        }
        match self.family {
            Family::Nanodet => {
                if o.output.is_some() {
                    return Err("`output.output` is a yolox setting; a nanodet model names class_outputs and box_outputs".into());
                }
                if o.class_outputs.len() != o.strides.len()
                    || o.box_outputs.len() != o.strides.len()
                {
                    return Err(format!(
                        "{} strides but {} class_outputs and {} box_outputs: give one of each per stride",
                        o.strides.len(),
                        o.class_outputs.len(),
                        o.box_outputs.len()
                    ));
                }
                if o.bins < 2 {
                    return Err("`output.bins` must be at least 2".into());
                }
            }
            Family::Yolox => {
                if o.output.as_deref().is_none_or(|n| n.trim().is_empty()) {
                    return Err(
                        "a yolox model names its one output tensor: `output.output = \"...\"`"
                            .into(),
                    );
                }
                if !o.class_outputs.is_empty() || !o.box_outputs.is_empty() || o.bins != 0 {
                    return Err("class_outputs, box_outputs and bins are nanodet settings; a yolox model has one `output`".into());
                }
            }
        }
        Ok(())
    }

    /// The output layout the decoder needs.
    pub fn layout(&self) -> Layout {
        Layout {
            family: self.family,
            resize: self.input.resize,
            input_size: (self.input.width, self.input.height),
            strides: self.output.strides.clone(),
            bins: self.output.bins,
            num_classes: self.labels.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.toml");

    #[test]
    fn bundled_manifest_parses() {
        let m = Manifest::load(Path::new(BUNDLED)).unwrap();
        assert_eq!(m.labels.len(), 80);
        assert_eq!(m.labels[0], "person");
        assert_eq!(m.input.name, "input_1:0");
        assert_eq!((m.input.width, m.input.height), (512, 384));
        assert_eq!((m.input.resize, m.input.pad), (Resize::Letterbox, 0.0));
        assert_eq!(m.input.channel_order, ChannelOrder::Bgr);
        assert_eq!(m.output.strides, [8, 16, 32]);
        assert!(m.onnx.ends_with("models/nanodet-g.onnx"));
        assert_eq!(m.layout().cells(8), 64 * 48);
    }

    #[test]
    fn int8_precision_swaps_in_the_named_variant_and_only_that() {
        use crate::infer::Precision;
        let fp32 = Manifest::load(Path::new(BUNDLED)).unwrap();
        assert!(!fp32.is_int8());
        let same = fp32.clone().for_precision(Precision::Bf16).unwrap();
        assert_eq!(same, fp32);
        let int8 = fp32.clone().for_precision(Precision::Int8).unwrap();
        assert!(int8.is_int8());
        assert_eq!(int8.name, "nanodet-g-int8");
        assert!(int8.onnx.ends_with("models/nanodet-g-int8.onnx"));
        assert_eq!((&int8.labels, &int8.input), (&fp32.labels, &fp32.input));
        // An int8 model stays itself.
        assert_eq!(int8.clone().for_precision(Precision::Int8).unwrap(), int8);

        let dir = std::env::temp_dir().join(format!("pv-variants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain.toml");
        let text = bundled_text();
        let text = text.split("[variants]").next().unwrap().to_string();
        std::fs::write(&plain, &text).unwrap();
        let err = Manifest::load(&plain)
            .unwrap()
            .for_precision(Precision::Int8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("names none"), "{err}");
        // A variant without a [quantization] table is not taken for int8.
        std::fs::write(dir.join("fake-int8.toml"), &text).unwrap();
        std::fs::write(
            &plain,
            format!("{text}\n[variants]\nint8 = \"fake-int8.toml\"\n"),
        )
        .unwrap();
        let err = Manifest::load(&plain)
            .unwrap()
            .for_precision(Precision::Int8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [quantization] table"), "{err}");
        let bad = text.clone() + "\n[quantization]\nprecision = \"int4\"\n";
        let err = Manifest::parse(&bad, &plain).unwrap_err().to_string();
        assert!(err.contains("int4"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn onnx_path_finds_manifest_beside_it() {
        let m = Manifest::load(&Path::new(BUNDLED).with_extension("onnx")).unwrap();
        assert_eq!(m.name, "nanodet-g");
    }

    fn bundled_text() -> String {
        std::fs::read_to_string(BUNDLED).unwrap()
    }

    #[test]
    fn unknown_key_is_named() {
        let text = bundled_text().replace("bins = 11", "bins = 11\nbinz = 3");
        let err = Manifest::parse(&text, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("binz"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn inconsistent_outputs_are_rejected() {
        let text = bundled_text().replace(
            r#"box_outputs = ["box_s8", "box_s16", "box_s32"]"#,
            r#"box_outputs = ["box_s8"]"#,
        );
        let err = Manifest::parse(&text, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 strides but 3 class_outputs and 1 box_outputs"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for (from, to, want) in [
            (
                "family = \"nanodet\"",
                "family = \"yolo\"",
                "unknown variant `yolo`, expected `nanodet` or `yolox`",
            ),
            (
                "resize = \"letterbox\"",
                "resize = \"crop\"",
                "unknown variant `crop`, expected `stretch` or `letterbox`",
            ),
            ("pad = 0", "pad = 300", "input.pad"),
            (
                "family = \"nanodet\"",
                "family = \"yolox\"",
                "yolox model names its one output",
            ),
            (
                "std = [57.375, 57.12, 58.395]",
                "std = [57.375, 0.0, 58.395]",
                "input.std",
            ),
            ("bins = 11", "bins = 1", "bins"),
            (
                "channel_order = \"bgr\"",
                "channel_order = \"bgra\"",
                "unknown variant",
            ),
        ] {
            let text = bundled_text().replace(from, to);
            let err = Manifest::parse(&text, Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{from} -> {to}: {err}");
        }
    }

    #[test]
    fn input_size_must_fit_the_strides() {
        let m = Manifest::load(Path::new(BUNDLED)).unwrap();
        let big = m.clone().with_input_size(640).unwrap();
        assert_eq!((big.input.width, big.input.height), (640, 640));
        assert_eq!(big.layout().cells(32), 20 * 20);
        for bad in [0, 500, 8192] {
            let err = m.clone().with_input_size(bad).unwrap_err().to_string();
            assert!(err.contains("multiple of the largest stride (32)"), "{err}");
        }
    }

    #[test]
    fn missing_manifest_names_the_path() {
        let err = Manifest::load(Path::new("/nonexistent/model.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.toml"), "{err}");
    }

    proptest::proptest! {
        /// Any text, or the bundled manifest with one line replaced: a manifest or
        /// an error, never a panic.
        #[test]
        fn any_manifest_text_parses_or_errs(text in "\\PC{0,300}", line in 0usize..40, with in "\\PC{0,40}") {
            let _ = Manifest::parse(&text, Path::new("m.toml"));
            let bundled = std::fs::read_to_string(BUNDLED).unwrap();
            let mutated: Vec<&str> = bundled
                .lines()
                .enumerate()
                .map(|(i, l)| if i == line { with.as_str() } else { l })
                .collect();
            let _ = Manifest::parse(&mutated.join("\n"), Path::new(BUNDLED));
        }
    }
}
