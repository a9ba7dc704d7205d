//! `doctor`'s inference checks: the CPU's features, and for every device which
//! precisions load the model.
//!
//! A process loads one ONNX Runtime library, and the devices use different ones
//! (`.ort/lib`, `.ort/openvino`, a CUDA build), so each device is checked in a child
//! process: `pedvision doctor --probe-device DEVICE` prints one line per precision
//! and a last `probe-result:` line with the precisions that loaded; the parent passes
//! the lines on and decides whether the run's device and precision are covered.

use std::path::{Path, PathBuf};
use std::process::Command;

use pedvision::choice::Choice;
use pedvision::config::Manifest;
use pedvision::infer::{CpuFeatures, Detector, Device, Precision, RuntimeOptions, runtime};

/// Marks the child's machine-readable last line.
const RESULT_PREFIX: &str = "probe-result:";

/// The precisions checked for each device.
const PRECISIONS: [Precision; 4] = [
    Precision::Fp32,
    Precision::Bf16,
    Precision::Fp16,
    Precision::Int8,
];

/// One line on the CPU: its name, the features that matter, and what they allow.
pub fn cpu_line() -> String {
    let cpu = CpuFeatures::detect();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let yes = |b: bool| if b { "yes" } else { "no" };
    format!(
        "CPU {model}: {} (bf16 in hardware: {}, fp16: {}, int8 dot products: {})",
        cpu.names(),
        yes(cpu.native_bf16()),
        yes(cpu.native_fp16()),
        yes(cpu.native_int8())
    )
}

/// Runs the child probe for every device; returns the precisions that loaded, per
/// device, after passing the children's lines on.
pub fn probe_all(model: &Path, ort_lib: Option<&Path>) -> Vec<(Device, Vec<Precision>)> {
    let exe = std::env::current_exe().ok();
    Device::CONCRETE
        .into_iter()
        .map(|device| {
            let loaded = match &exe {
                Some(exe) => probe_child(exe, device, model, ort_lib),
                None => {
                    out!("-       {device}: cannot find pedvision's own executable to probe it");
                    Vec::new()
                }
            };
            (device, loaded)
        })
        .collect()
}

fn probe_child(exe: &Path, device: Device, model: &Path, ort_lib: Option<&Path>) -> Vec<Precision> {
    let mut cmd = Command::new(exe);
    cmd.arg("doctor")
        .arg("--probe-device")
        .arg(device.name())
        .arg("--model")
        .arg(model);
    if let Some(lib) = ort_lib {
        cmd.arg("--ort-lib").arg(lib);
    }
    // The children's own logs would repeat what their lines say.
    cmd.env("RUST_LOG", "error");
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            out!("-       {device}: probe did not start: {e}");
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut loaded = Vec::new();
    for line in text.lines() {
        match line.strip_prefix(RESULT_PREFIX) {
            Some(list) => {
                loaded = list
                    .split(',')
                    .filter_map(|p| Precision::parse(p).ok())
                    .collect()
            }
            None => out!("{line}"),
        }
    }
    if !output.status.success() && text.trim().is_empty() {
        let err = String::from_utf8_lossy(&output.stderr);
        out!(
            "-       {device}: probe failed: {}",
            err.lines().last().unwrap_or("no output")
        );
    }
    loaded
}

/// The child's side: loads `device`'s library and the model at each precision.
/// Prints lines like the checklist's and the `probe-result:` line.
pub fn probe_one(device: Device, model: &Path, ort_lib: Option<&Path>) {
    let loaded = probe_precisions(device, model, ort_lib);
    let names: Vec<&str> = loaded.iter().map(|p| p.name()).collect();
    out!("{RESULT_PREFIX}{}", names.join(","));
}

fn probe_precisions(device: Device, model: &Path, ort_lib: Option<&Path>) -> Vec<Precision> {
    let library = match runtime::init(ort_lib, device) {
        Ok(path) => path,
        Err(e) => {
            out!("-       {device}: not installed ({e})");
            return Vec::new();
        }
    };
    out!(
        "ok      {device}: ONNX Runtime {} at {} (providers: {})",
        library_version(&library),
        library.display(),
        runtime::available_providers().join(", ")
    );
    let manifest = match Manifest::load(model) {
        Ok(m) => m,
        Err(e) => {
            out!("MISSING {device}: {e}");
            return Vec::new();
        }
    };
    let cpu = CpuFeatures::detect();
    let mut loaded = Vec::new();
    for precision in PRECISIONS {
        let manifest = match manifest.clone().for_precision(precision) {
            Ok(m) => m,
            Err(e) => {
                out!("-       {device} {precision}: no model ({e})");
                continue;
            }
        };
        if let Err(reason) = precision.resolve(device, &cpu, manifest.is_int8()) {
            out!("-       {device} {precision}: not supported here: {reason}");
            continue;
        }
        let options = RuntimeOptions {
            device,
            precision,
            threads: 1,
        };
        match Detector::load(&manifest, &options) {
            Ok(_) => {
                out!("ok      {device} {precision}: loads {}", manifest.name);
                loaded.push(precision);
            }
            Err(e) => out!("-       {device} {precision}: does not load: {e}"),
        }
    }
    loaded
}

/// The version in the library's real file name (libonnxruntime.so.1.31.1).
fn library_version(path: &Path) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    real.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .map_or_else(|| "(version not in the file name)".into(), str::to_string)
}

/// Whether the probes cover the run's device and precision; the reason if not.
pub fn covers(
    results: &[(Device, Vec<Precision>)],
    device: Device,
    precision: Precision,
) -> Result<String, String> {
    let cpu = CpuFeatures::detect();
    // An int8 request runs the quantized model, which the probe loaded as int8.
    let int8_model = precision == Precision::Int8;
    let fits = |d: Device, loaded: &[Precision]| {
        precision
            .resolve(d, &cpu, int8_model)
            .ok()
            .filter(|p| loaded.contains(p))
    };
    let candidates: Vec<Device> = if device == Device::Auto {
        Device::AUTO_ORDER.to_vec()
    } else {
        vec![device]
    };
    for d in candidates {
        if let Some((_, loaded)) = results.iter().find(|(r, _)| *r == d)
            && let Some(p) = fits(d, loaded)
        {
            return Ok(format!(
                "--device {device} --precision {precision} runs as {d} {p}"
            ));
        }
    }
    Err(format!(
        "--device {device} --precision {precision}: no provider loads the model that way (see above)"
    ))
}
