//! `pedvision doctor`: checks what a run with these options needs, and says how to
//! install what is missing: the GStreamer elements each configured source and sink
//! uses, the CPU's features, and for every device its ONNX Runtime library and which
//! precisions really load the model ([`super::doctor_devices`]). Exit 1 when
//! something the run needs is missing.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use gstreamer as gst;
use pedvision::infer::{Device, Precision};
use pedvision::resources::{Found, NotFound};
use pedvision::sources::{SourceKind, SourceSpec};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A pipeline file (as for `run --config`): its inputs, outputs, device, model
    /// and MQTT broker are checked; flags given here add to it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Inputs to check for (as for `run`); default: a local file.
    #[arg(long, short, value_name = "INPUT")]
    pub input: Vec<String>,

    /// Check for the RTSP output server's elements too.
    #[arg(long)]
    pub rtsp_out: bool,

    /// Check for the display window's elements too.
    #[arg(long)]
    pub display: bool,

    /// The device a run will use; its provider must load the model (for `auto`,
    /// at least one provider must).
    #[arg(long, value_parser = super::choice::<Device>(), default_value_t = Device::Auto)]
    pub device: Device,

    /// The precision a run will use; the device must load the model at it.
    #[arg(long, value_parser = super::choice::<Precision>(), default_value_t = Precision::Auto)]
    pub precision: Precision,

    /// Internal: check one device in this process (doctor runs one child per
    /// device, since a process loads one ONNX Runtime library).
    #[arg(long, hide = true, value_parser = super::choice::<Device>())]
    pub probe_device: Option<Device>,

    /// Model manifest to check. Default: as for `run` (PEDVISION_MODEL, else the
    /// bundled nanodet-g.toml found at run time).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// The ONNX Runtime library (as for `run`).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,

    /// An MQTT broker (mqtt://HOST[:PORT]) to check that it is reachable.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
}

impl DoctorArgs {
    /// Takes what the pipeline file configures where the flags leave it open.
    fn merge_config(&mut self, m: &clap::ArgMatches) -> anyhow::Result<()> {
        let Some(path) = &self.config else {
            return Ok(());
        };
        let file = pedvision::config::PipelineConfig::load(path)?;
        if self.input.is_empty() {
            self.input = file.inputs.clone();
        }
        self.rtsp_out |= file.outputs.rtsp.is_some();
        self.display |= file.outputs.display.unwrap_or(false);
        use super::run::given;
        use pedvision::choice::Choice;
        if !given(m, "model")
            && let Some(model) = &file.model.path
        {
            self.model = Some(model.clone());
        }
        if !given(m, "device")
            && let Some(device) = &file.model.device
        {
            self.device = Device::parse(device)
                .map_err(|e| anyhow::anyhow!("[model] device {e}"))
                .with_context(|| format!("pipeline file {}", path.display()))?;
        }
        if !given(m, "precision")
            && let Some(precision) = &file.model.precision
        {
            self.precision = Precision::parse(precision)
                .map_err(|e| anyhow::anyhow!("[model] precision {e}"))
                .with_context(|| format!("pipeline file {}", path.display()))?;
        }
        if self.ort_lib.is_none() {
            self.ort_lib = file.model.ort_lib.clone();
        }
        if self.mqtt.is_none() {
            self.mqtt = file.mqtt.and_then(|q| q.url);
        }
        Ok(())
    }
}

/// Whether a TCP connection to the broker opens within two seconds.
fn broker_reachable(url: &str) -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let (host, port, _) = pedvision::sinks::mqtt::MqttSettings::parse_url(url)?;
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("MQTT broker {host}:{port}: {e}"))?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| format!("MQTT broker {host}:{port}: no address"))?;
    std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(2))
        .map(|_| format!("MQTT broker {host}:{port} accepts connections"))
        .map_err(|e| {
            format!("MQTT broker {host}:{port}: {e} (the run would spool until it is back)")
        })
}

/// GStreamer elements, each with the Debian package that ships it.
const BASE: &str = "gstreamer1.0-plugins-base";
const GOOD: &str = "gstreamer1.0-plugins-good";
const BAD: &str = "gstreamer1.0-plugins-bad";
const UGLY: &str = "gstreamer1.0-plugins-ugly";
const LIBAV: &str = "gstreamer1.0-libav";

/// The elements a run with these options uses, with their packages and why.
fn needed_elements(
    args: &DoctorArgs,
    specs: &[SourceSpec],
) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut need = vec![
        ("videoconvert", BASE, "every source and sink"),
        ("appsink", BASE, "every source"),
        ("appsrc", BASE, "every output"),
        ("x264enc", UGLY, "annotated MP4 and RTSP output"),
        ("h264parse", BAD, "annotated MP4"),
        ("mp4mux", GOOD, "annotated MP4"),
    ];
    for spec in specs {
        match &spec.kind {
            SourceKind::File(_) => {
                need.push(("uridecodebin", BASE, "files"));
                need.push(("avdec_h264", LIBAV, "H.264 and most other codecs"));
            }
            SourceKind::Rtsp(_) => {
                need.push(("uridecodebin", BASE, "RTSP inputs"));
                need.push(("rtspsrc", GOOD, "RTSP inputs"));
                need.push(("rtph264depay", GOOD, "RTSP inputs (H.264)"));
                need.push(("avdec_h264", LIBAV, "RTSP inputs (H.264)"));
            }
            SourceKind::Uri { .. } => {
                need.push(("uridecodebin", BASE, "HTTP inputs"));
                need.push(("souphttpsrc", GOOD, "HTTP inputs"));
                need.push(("hlsdemux", BAD, "HLS inputs"));
            }
            SourceKind::Camera(_) => {
                need.push(("v4l2src", GOOD, "cameras"));
                need.push(("jpegdec", GOOD, "MJPEG cameras"));
            }
            SourceKind::Test { .. } => need.push(("videotestsrc", BASE, "test patterns")),
        }
    }
    if args.rtsp_out {
        need.push(("rtph264pay", GOOD, "--rtsp-out"));
    }
    if args.display {
        need.push(("autovideosink", GOOD, "--display"));
    }
    let mut seen = std::collections::HashSet::new();
    need.retain(|(name, ..)| seen.insert(*name));
    need
}

/// What `doctor` found: a line per check, the problems, and the Debian packages
/// that would fix the missing elements.
#[derive(Default)]
struct Checklist {
    problems: usize,
    missing_packages: Vec<&'static str>,
}

impl Checklist {
    fn report(&mut self, ok: bool, what: String) {
        out!("{} {what}", if ok { "ok     " } else { "MISSING" });
        if !ok {
            self.problems += 1;
        }
    }

    /// Where the shipped resources were found ([`pedvision::resources`]' order):
    /// the model manifest and its graph, the demo clip, the example pipelines and
    /// each ONNX Runtime build. Only the model is needed; the rest are reported.
    /// Returns the manifest's path when it loads.
    fn resources(
        &mut self,
        model: Result<Found, NotFound>,
        demo: &Result<Found, NotFound>,
    ) -> Option<PathBuf> {
        use pedvision::infer::runtime::LibraryKind;
        match demo {
            Ok(found) => out!("ok      demo clip        {found}"),
            Err(e) => out!("-       {e}"),
        }
        match pedvision::resources::pipelines() {
            Ok(found) => out!("ok      pipeline files   {found}"),
            Err(e) => out!("-       {e}"),
        }
        for kind in [LibraryKind::Cpu, LibraryKind::Openvino, LibraryKind::Gpu] {
            match kind.locate() {
                Ok(found) => out!("ok      ONNX Runtime {kind:<14} {found}"),
                Err(_) => out!("-       ONNX Runtime {kind}: not installed"),
            }
        }
        let found = model.map_err(|e| self.report(false, e.to_string())).ok()?;
        self.report(true, format!("model manifest   {found}"));
        match pedvision::config::Manifest::load(&found.path) {
            Ok(m) => {
                let graph = m.onnx.is_file();
                self.report(graph, format!("model graph      {}", m.onnx.display()));
                graph.then_some(found.path)
            }
            Err(e) => {
                self.report(false, e.to_string());
                None
            }
        }
    }

    /// GStreamer itself, and every element these inputs and outputs need.
    fn gstreamer(&mut self, args: &DoctorArgs, specs: &[SourceSpec]) {
        match gst::init() {
            Ok(()) => {
                let (major, minor, micro, _) = gst::version();
                self.report(true, format!("GStreamer {major}.{minor}.{micro}"))
            }
            Err(e) => self.report(false, format!("GStreamer does not initialise: {e}")),
        }
        for (element, package, why) in needed_elements(args, specs) {
            let found = gst::ElementFactory::find(element).is_some();
            self.report(
                found,
                format!("element {element:<14} ({why}; package {package})"),
            );
            if !found && !self.missing_packages.contains(&package) {
                self.missing_packages.push(package);
            }
        }
    }

    /// The CPU, then every device's library and the precisions that load the
    /// model; the run's device and precision must be among them.
    fn inference(&mut self, args: &DoctorArgs, model: Option<&Path>) {
        use super::doctor_devices as devices;
        out!("ok      {}", devices::cpu_line());
        // A model that is missing or does not load was reported with the resources.
        let Some(model) = model else {
            return;
        };
        let results = devices::probe_all(model, args.ort_lib.as_deref());
        match devices::covers(&results, args.device, args.precision) {
            Ok(what) => self.report(true, what),
            Err(what) => self.report(false, what),
        }
    }
}

pub fn execute(mut args: DoctorArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    if let Some(device) = args.probe_device {
        let model = super::common::model_path(args.model.as_deref())?;
        super::doctor_devices::probe_one(device, &model, args.ort_lib.as_deref());
        return Ok(());
    }
    args.merge_config(matches)?;
    let demo = pedvision::resources::demo_clip();
    let mut list = Checklist::default();
    let model = list.resources(pedvision::resources::model(args.model.as_deref()), &demo);
    let inputs = if args.input.is_empty() {
        // The demo clip, when it is anywhere (the resources' lines said where).
        demo.iter()
            .map(|d| d.path.to_string_lossy().into_owned())
            .collect()
    } else {
        args.input.clone()
    };
    let specs = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| SourceSpec::parse(i as u32, input))
        .collect::<Result<Vec<_>, _>>()?;
    list.gstreamer(&args, &specs);
    list.inference(&args, model.as_deref());
    if let Some(url) = &args.mqtt {
        match broker_reachable(url) {
            Ok(what) => list.report(true, what),
            Err(what) => list.report(false, what),
        }
    }
    if !list.missing_packages.is_empty() {
        out!(
            "install what is missing with: apt-get install {}",
            list.missing_packages.join(" ")
        );
    }
    if list.problems > 0 {
        anyhow::bail!(
            "{} problem(s) found; see above (`make setup` installs everything pedvision uses)",
            list.problems
        );
    }
    out!("everything a run with these options needs is here");
    Ok(())
}
