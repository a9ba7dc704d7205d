//! Where inference runs ([`Device`]) and in which arithmetic ([`Precision`]), and
//! the rule that turns `auto` and a request into what one provider will do.
//!
//! A leaf module: `runtime` picks the library for a device, `session` registers the
//! providers; both ask [`Precision::resolve`] what a provider can run on this
//! machine, so the rule is written once.

use super::cpu_features::CpuFeatures;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The fastest provider that loads the model: TensorRT, CUDA, OpenVINO, CPU.
    #[default]
    Auto,
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// Intel's OpenVINO runtime on the CPU, through ONNX Runtime's OpenVINO provider.
    Openvino,
    /// NVIDIA GPU through the CUDA provider.
    Cuda,
    /// NVIDIA GPU through TensorRT, with CUDA for what TensorRT does not take.
    Tensorrt,
}

impl Device {
    /// The providers `auto` tries, fastest first.
    pub const AUTO_ORDER: [Device; 4] = [Self::Tensorrt, Self::Cuda, Self::Openvino, Self::Cpu];

    /// The concrete devices (every value but `auto`).
    pub const CONCRETE: [Device; 4] = [Self::Cpu, Self::Openvino, Self::Cuda, Self::Tensorrt];

    /// Whether this device runs on an NVIDIA GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, Self::Cuda | Self::Tensorrt)
    }
}

impl crate::choice::Choice for Device {
    const ALL: &'static [Self] = &[
        Self::Auto,
        Self::Cpu,
        Self::Openvino,
        Self::Cuda,
        Self::Tensorrt,
    ];
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Openvino => "openvino",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Auto => {
                "the fastest provider that loads the model (TensorRT, CUDA, OpenVINO, CPU), logged at start"
            }
            Self::Cpu => "ONNX Runtime's CPU provider (.ort/lib)",
            Self::Openvino => "Intel OpenVINO on the CPU, through ONNX Runtime (.ort/openvino)",
            Self::Cuda => "NVIDIA GPU through the CUDA provider (the onnxruntime-gpu library)",
            Self::Tensorrt => "NVIDIA GPU through TensorRT, with CUDA for the rest",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::choice::Choice::name(*self))
    }
}

/// The arithmetic inference runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 under OpenVINO on CPUs with AMX or AVX-512 BF16, fp16 under TensorRT,
    /// int8 for a quantized model, fp32 otherwise.
    #[default]
    Auto,
    Fp32,
    Bf16,
    Fp16,
    Int8,
}

impl crate::choice::Choice for Precision {
    const ALL: &'static [Self] = &[Self::Auto, Self::Fp32, Self::Bf16, Self::Fp16, Self::Int8];
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Auto => {
                "bf16 under OpenVINO on CPUs with AMX/AVX-512 BF16, fp16 under TensorRT, fp32 otherwise"
            }
            Self::Fp32 => "32-bit floats, the model as trained",
            Self::Bf16 => "bfloat16 (OpenVINO on CPUs with AMX or AVX-512 BF16)",
            Self::Fp16 => "16-bit floats (TensorRT; OpenVINO on CPUs with AVX-512 FP16/AMX-FP16)",
            Self::Int8 => "the model's INT8 version (its manifest's [variants] int8)",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::choice::Choice::name(*self))
    }
}

impl Precision {
    /// What `device` runs when asked for `self` on a CPU with `cpu`, for a model
    /// that is int8 already or not; an error says why the device cannot.
    /// `device` is concrete (not `auto`).
    pub fn resolve(
        self,
        device: Device,
        cpu: &CpuFeatures,
        int8_model: bool,
    ) -> Result<Precision, String> {
        use Precision::*;
        if int8_model {
            return match self {
                Auto | Int8 => Ok(Int8),
                other => Err(format!(
                    "the model is quantized to int8; --precision {other} needs the float model"
                )),
            };
        }
        match (device, self) {
            (_, Int8) => Err(
                "int8 runs the model's INT8 version; this model's manifest names none ([variants] int8)"
                    .into(),
            ),
            (Device::Auto, _) => Err("a concrete device is needed".into()),
            (_, Fp32) => Ok(Fp32),
            (Device::Openvino, Auto) if cpu.native_bf16() => Ok(Bf16),
            (Device::Tensorrt, Auto) => Ok(Fp16),
            (_, Auto) => Ok(Fp32),
            (Device::Openvino, Bf16) if cpu.native_bf16() => Ok(Bf16),
            (Device::Openvino, Bf16) => Err(format!(
                "bf16 needs a CPU with AMX or AVX-512 BF16; this one has: {}",
                cpu.names()
            )),
            (Device::Openvino, Fp16) if cpu.native_fp16() => Ok(Fp16),
            (Device::Openvino, Fp16) => Err(format!(
                "fp16 on a CPU needs AVX-512 FP16 or AMX-FP16; this one has: {}",
                cpu.names()
            )),
            (Device::Tensorrt, Fp16) => Ok(Fp16),
            (Device::Cuda, Fp16) => Err(
                "the CUDA provider has no fp16 mode for a float model; use --device tensorrt".into(),
            ),
            (Device::Cpu, p) => Err(format!(
                "the CPU provider computes in fp32 (or int8); for {p} use --device openvino or auto"
            )),
            (d, p) => Err(format!("{d} does not run {p}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amx() -> CpuFeatures {
        CpuFeatures {
            avx512f: true,
            avx512_vnni: true,
            avx512_bf16: true,
            amx_tile: true,
            amx_bf16: true,
            amx_int8: true,
            ..Default::default()
        }
    }

    fn avx512_only() -> CpuFeatures {
        CpuFeatures {
            avx512f: true,
            avx512_vnni: true,
            ..Default::default()
        }
    }

    #[test]
    fn auto_picks_bf16_under_openvino_only_where_the_cpu_has_it() {
        let p = Precision::Auto;
        assert_eq!(
            p.resolve(Device::Openvino, &amx(), false),
            Ok(Precision::Bf16)
        );
        assert_eq!(
            p.resolve(Device::Openvino, &avx512_only(), false),
            Ok(Precision::Fp32)
        );
        assert_eq!(p.resolve(Device::Cpu, &amx(), false), Ok(Precision::Fp32));
        assert_eq!(
            p.resolve(Device::Tensorrt, &amx(), false),
            Ok(Precision::Fp16)
        );
        assert_eq!(p.resolve(Device::Cuda, &amx(), false), Ok(Precision::Fp32));
    }

    #[test]
    fn explicit_precisions_are_checked_against_device_and_cpu() {
        let bf16 = Precision::Bf16;
        assert!(bf16.resolve(Device::Cpu, &amx(), false).is_err());
        let err = bf16
            .resolve(Device::Openvino, &avx512_only(), false)
            .unwrap_err();
        assert!(err.contains("AMX") && err.contains("avx512_vnni"), "{err}");
        assert!(
            Precision::Fp16
                .resolve(Device::Cuda, &amx(), false)
                .is_err()
        );
        assert!(
            Precision::Fp16
                .resolve(Device::Openvino, &amx(), false)
                .is_err()
        );
        assert_eq!(
            Precision::Fp32.resolve(Device::Openvino, &amx(), false),
            Ok(Precision::Fp32)
        );
    }

    #[test]
    fn int8_needs_a_quantized_model_and_a_quantized_model_runs_int8() {
        assert!(Precision::Int8.resolve(Device::Cpu, &amx(), false).is_err());
        for d in Device::CONCRETE {
            assert_eq!(
                Precision::Auto.resolve(d, &amx(), true),
                Ok(Precision::Int8)
            );
            assert_eq!(
                Precision::Int8.resolve(d, &amx(), true),
                Ok(Precision::Int8)
            );
            assert!(Precision::Fp32.resolve(d, &amx(), true).is_err());
        }
    }
}
