//! Whole-pipeline passes for the bench, and the plans they run: `run`'s defaults
//! on one file, the zero-cost-detector and metadata-only variants, and the plans
//! with operational sinks or tracking to compare against.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pedvision::infer::Detector;
use pedvision::pipeline::{self, RunPlan, RunReport};
use pedvision::sources::{ReconnectPolicy, RtspOptions, SourceSpec};

use super::stage_cpu::StageSampler;
use crate::cli::common::LoadedModel;

/// Runs whole pipelines on the input, each with its own stop flag (a run raises
/// its flag when it ends), removing their outputs afterwards.
pub struct Runner<'a> {
    pub detector: &'a mut Detector,
    pub dir: &'a std::path::Path,
    pub frames: usize,
}

/// One whole-pipeline pass: its report, the process's CPU time and the CPU time
/// per stage ([`super::stage_cpu::STAGES`]).
pub struct Pass {
    pub report: RunReport,
    pub cpu: Option<Duration>,
    pub stages: [Duration; 6],
}

impl Runner<'_> {
    /// One run of `plan`, its report and the CPU time it took; every frame must
    /// come through (at least those held in memory: a longer input runs whole).
    fn run(&mut self, plan: &RunPlan, what: &str) -> anyhow::Result<(RunReport, Option<Duration>)> {
        let pass = self.pass(plan, what)?;
        Ok((pass.report, pass.cpu))
    }

    /// One pass of `plan`, with CPU time per stage.
    pub fn pass(&mut self, plan: &RunPlan, what: &str) -> anyhow::Result<Pass> {
        self.pass_keeping_metadata(plan, what, None)
    }

    /// [`Self::pass`], copying the JSON Lines to `keep` first.
    pub fn pass_keeping(
        &mut self,
        plan: &RunPlan,
        what: &str,
        keep: &std::path::Path,
    ) -> anyhow::Result<Pass> {
        self.pass_keeping_metadata(plan, what, Some(keep))
    }

    fn pass_keeping_metadata(
        &mut self,
        plan: &RunPlan,
        what: &str,
        keep: Option<&std::path::Path>,
    ) -> anyhow::Result<Pass> {
        let before = cpu_time();
        let sampler = StageSampler::start();
        let report = pipeline::run(
            plan,
            self.detector,
            &Arc::new(AtomicBool::new(false)),
            pipeline::Steering::none(),
        );
        let stages = sampler.finish();
        let cpu = cpu_time().zip(before).map(|(a, b)| a - b);
        if let (Some(keep), Some(metadata)) = (keep, &plan.metadata) {
            std::fs::copy(metadata, keep).map_err(|e| {
                anyhow::anyhow!("cannot keep the metadata in {}: {e}", keep.display())
            })?;
        }
        let _ = std::fs::remove_dir_all(self.dir);
        let report = report?;
        anyhow::ensure!(
            report.frames >= self.frames as u64,
            "{what} processed {} of {} frames",
            report.frames,
            self.frames
        );
        Ok(Pass {
            report,
            cpu,
            stages,
        })
    }

    /// The run with metrics and MQTT against the plain one; their fps ratio.
    pub fn sinks_round(
        &mut self,
        round: usize,
        plan: &RunPlan,
        plain: &RunReport,
    ) -> anyhow::Result<f64> {
        let (with, _) = self.run(plan, "the run with metrics + MQTT")?;
        let mqtt = with.mqtt.clone().unwrap_or_default();
        anyhow::ensure!(
            mqtt.acknowledged == self.frames as u64,
            "the MQTT broker acknowledged {} of {} frames",
            mqtt.acknowledged,
            self.frames
        );
        let ratio = with.fps() / plain.fps();
        out!(
            "round {round}: with metrics + MQTT {:6.2} fps, without {:6.2} fps, ratio {ratio:.3}",
            with.fps(),
            plain.fps()
        );
        Ok(ratio)
    }

    /// Tracking with a line and a zone against no tracking, in alternating order so
    /// drifting load hits both sides alike; their fps and CPU-time ratios.
    pub fn tracking_round(
        &mut self,
        round: usize,
        with_plan: &RunPlan,
        without_plan: &RunPlan,
    ) -> anyhow::Result<(f64, Option<f64>)> {
        let what = "the tracking comparison";
        let ((with, with_cpu), (without, without_cpu)) = if round % 2 == 1 {
            let with = self.run(with_plan, what)?;
            (with, self.run(without_plan, what)?)
        } else {
            let without = self.run(without_plan, what)?;
            (self.run(with_plan, what)?, without)
        };
        let cpu = with_cpu
            .zip(without_cpu)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9));
        let crossings: u64 = with.streams[0]
            .lines
            .iter()
            .map(|l| l.counts[0].1 + l.counts[1].1)
            .sum();
        let ratio = with.fps() / without.fps();
        out!(
            "round {round}: with tracking + line + zone {:6.2} fps ({} tracks, {crossings} crossings), without tracking {:6.2} fps, ratio {ratio:.3}",
            with.fps(),
            with.streams[0].tracks,
            without.fps()
        );
        Ok((ratio, cpu))
    }
}

/// The plan with the zero-cost detector: everything but inference.
pub fn zero_cost_plan(plan: &RunPlan) -> RunPlan {
    RunPlan {
        skip_inference: true,
        ..plan.clone()
    }
}

/// The plan with metadata only (`run --no-video`).
pub fn metadata_only_plan(plan: &RunPlan) -> RunPlan {
    RunPlan {
        videos: vec![None; plan.videos.len()],
        ..plan.clone()
    }
}

/// `run`'s defaults on one file: MP4 and JSONL into `dir`, ByteTrack, no rules.
pub fn base_plan(
    input: &str,
    model: &LoadedModel,
    batch: usize,
    dir: &std::path::Path,
) -> anyhow::Result<RunPlan> {
    Ok(RunPlan {
        sources: vec![SourceSpec::parse(0, input)?],
        rtsp: RtspOptions::default(),
        reconnect: ReconnectPolicy::default(),
        videos: vec![Some(dir.join("bench.mp4"))],
        metadata: Some(dir.join("bench.jsonl")),
        rtsp_out: None,
        display: false,
        metrics: None,
        mqtt: None,
        harvest: None,
        fleet: None,
        nats: None,
        model_path: model.manifest.path.clone(),
        model_name: model.manifest.name.clone(),
        runtime: model.runtime.clone(),
        ort_lib: None,
        duration: None,
        skip_inference: false,
        batch,
        batch_timeout: None,
        post: model.post.clone(),
        tracking: pedvision::track::TrackerSettings {
            high: model.post.conf,
            new_track: model.post.conf,
            ..Default::default()
        },
        rules: Default::default(),
        video_pattern: None,
        api: None,
        max_streams: pedvision::config::defaults::MAX_STREAMS,
        classes_spec: pedvision::config::defaults::CLASSES.into(),
        rule_configs: Default::default(),
    })
}

/// The plan with metrics on a loopback port and MQTT to the broker at `url`.
pub fn sinks_plan(url: &str, plan: &RunPlan, dir: &std::path::Path) -> anyhow::Result<RunPlan> {
    let (host, port, tls) = pedvision::sinks::mqtt::MqttSettings::parse_url(url)
        .map_err(|e| anyhow::anyhow!("--with-sinks: {e}"))?;
    let mut p = plan.clone();
    p.metrics = Some("127.0.0.1:0".into());
    p.mqtt = Some(pedvision::sinks::mqtt::MqttSettings {
        host,
        port,
        tls,
        topic_prefix: "pedvision-bench".into(),
        client_id: format!("pedvision-bench-{}", std::process::id()),
        username: None,
        password: None,
        tls_ca: None,
        tls_client: None,
        spool_dir: dir.join("spool"),
        spool_max_bytes: 256 << 20,
        drain_timeout: Duration::from_secs(10),
        keep_alive: Duration::from_secs(15),
    });
    Ok(p)
}

/// The plan with ByteTrack, a counting line across the middle and a zone on the
/// right half (the demo clip's walkers cross both), and the plan without tracking.
pub fn tracking_plans(plan: &RunPlan) -> anyhow::Result<(RunPlan, RunPlan)> {
    use pedvision::config::rules::{LineConfig, ZoneConfig};
    let lines = [LineConfig::parse_shorthand("middle:0.05,0.5,0.95,0.5")?];
    let zones = [ZoneConfig::parse_shorthand(
        "right:0.5,0.1,0.95,0.1,0.95,0.9,0.5,0.9",
    )?];
    let mut with = plan.clone();
    with.rules = pedvision::analytics::Rules::validate(
        &lines,
        &zones,
        1,
        &plan.post.labels,
        &plan.post.classes,
    )?;
    let mut without = plan.clone();
    without.tracking.kind = pedvision::track::TrackerKind::None;
    Ok((with, without))
}

/// CPU time (user + system) this process has used so far, from /proc/self/stat;
/// `None` where that file does not exist.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, ticks) = super::stage_cpu::parse_stat(&stat)?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream platform.
    Some(Duration::from_millis(ticks * 10))
}
