//! SIGHUP: re-reads the run's pipeline file and applies what changed through the
//! same control path as the HTTP API, so the run never restarts.
//!
//! - Inputs are told apart by the input as written: one no longer in the file is
//!   removed (its outputs finalised); a new one is added; one whose video output
//!   changed is removed and added again.
//! - Lines and zones are replaced by the file's (a rule that stays the same keeps
//!   its counts); a rule's `stream`, a position in the file's inputs, becomes the
//!   id that input runs under.
//! - A changed `[model] path` is loaded beside the live model and switched in.
//!
//! Other settings (batching, thresholds, outputs, sinks) are read once at start;
//! a reload that changes them says so in the log. A file that no longer parses
//! or validates changes nothing: the error is logged and the run goes on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pedvision::config::{Layers, Manifest};
use pedvision::control::{Control, RuleEdit, RuleSet, StreamRequest};
use pedvision::pipeline::RunPlan;
use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;

/// The inputs the file manages: input as written → (stream id, video output).
type Managed = BTreeMap<String, (u32, Option<PathBuf>)>;

/// What a reload compares against: the streams from the file and the model.
struct Applied {
    streams: Managed,
    model: PathBuf,
    plan: RunPlan,
}

/// Starts a thread that applies the pipeline file on every SIGHUP.
pub fn watch(layers: Layers, plan: &RunPlan, control: Control) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGHUP])?;
    let streams = plan
        .sources
        .iter()
        .zip(&plan.videos)
        .map(|(s, v)| (s.input().to_string(), (s.id, v.clone())))
        .collect();
    let mut applied = Applied {
        streams,
        model: plan.model_path.clone(),
        plan: plan.clone(),
    };
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("SIGHUP: reading the pipeline file again");
                match reload(&layers, &mut applied, &control) {
                    Ok(summary) => tracing::info!("{summary}"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "pipeline file not applied; the run goes on unchanged")
                    }
                }
            }
        })?;
    Ok(())
}

/// Re-reads the file and applies the differences; a one-line summary.
fn reload(layers: &Layers, applied: &mut Applied, control: &Control) -> anyhow::Result<String> {
    let path = layers
        .file
        .as_ref()
        .map(|f| f.path.clone())
        .ok_or_else(|| anyhow::anyhow!("the run has no pipeline file"))?;
    let layers = Layers {
        file: Some(pedvision::config::PipelineConfig::load_layer(&path)?),
        ..layers.clone()
    };
    let model_path = layers
        .effective()
        .model
        .path
        .unwrap_or_else(|| applied.model.clone());
    let manifest = Manifest::load(&model_path)?;
    let plan = RunPlan::build(&layers, &manifest)?;
    warn_unapplied(&applied.plan, &plan);
    let wanted: Managed = plan
        .sources
        .iter()
        .zip(&plan.videos)
        .map(|(s, v)| (s.input().to_string(), (s.id, v.clone())))
        .collect();
    let (mut removed, mut added) = (0, 0);
    let stale: Vec<String> = applied
        .streams
        .iter()
        .filter(|(input, (_, video))| wanted.get(*input).is_none_or(|(_, v)| v != video))
        .map(|(input, _)| input.clone())
        .collect();
    for input in stale {
        if let Some((id, _)) = applied.streams.remove(&input) {
            // An input that already ended and was removed is simply gone.
            let _ = control.remove_stream(id);
            removed += 1;
        }
    }
    let mut ids = BTreeMap::new();
    for spec in &plan.sources {
        let input = spec.input().to_string();
        if let Some((id, _)) = applied.streams.get(&input) {
            ids.insert(spec.id, *id);
            continue;
        }
        let video = plan.videos.get(spec.id as usize).cloned().flatten();
        let request = StreamRequest {
            input: input.clone(),
            output: video.as_ref().map(|v| v.display().to_string()),
            no_video: video.is_none(),
            ..Default::default()
        };
        let id = control.add_stream(request)?;
        ids.insert(spec.id, id);
        applied.streams.insert(input, (id, video));
        added += 1;
    }
    control.edit_rules(RuleEdit::Replace(translate(&plan.rule_configs, &ids)))?;
    let mut summary = format!(
        "pipeline file applied: {added} streams added, {removed} removed, lines and zones replaced"
    );
    if plan.model_path != applied.model {
        let status = control.swap_model(plan.model_path.clone())?;
        applied.model = plan.model_path.clone();
        summary.push_str(&format!(", model {} live", status.name));
    }
    applied.plan = plan;
    Ok(summary)
}

/// The file's rules with each `stream` (a position among the file's inputs)
/// turned into the id that input runs under.
fn translate(rules: &RuleSet, ids: &BTreeMap<u32, u32>) -> RuleSet {
    let id = |s: Option<u32>| s.map(|p| ids.get(&p).copied().unwrap_or(p));
    RuleSet {
        lines: rules
            .lines
            .iter()
            .map(|l| pedvision::config::rules::LineConfig {
                stream: id(l.stream),
                ..l.clone()
            })
            .collect(),
        zones: rules
            .zones
            .iter()
            .map(|z| pedvision::config::rules::ZoneConfig {
                stream: id(z.stream),
                ..z.clone()
            })
            .collect(),
    }
}

/// Logs the settings a reload changed but cannot apply while running.
fn warn_unapplied(old: &RunPlan, new: &RunPlan) {
    let mut changed = Vec::new();
    if (old.batch, old.batch_timeout) != (new.batch, new.batch_timeout) {
        changed.push("[batching]");
    }
    if (old.post.conf, old.post.iou, old.post.max_detections)
        != (new.post.conf, new.post.iou, new.post.max_detections)
        || old.classes_spec != new.classes_spec
    {
        changed.push("[model] thresholds or classes");
    }
    if old.metadata != new.metadata || old.rtsp_out != new.rtsp_out || old.metrics != new.metrics {
        changed.push("[outputs]");
    }
    if old.tracking != new.tracking {
        changed.push("[tracking]");
    }
    if old.api != new.api {
        changed.push("[api]");
    }
    if !changed.is_empty() {
        tracing::warn!(
            sections = %changed.join(", "),
            "these changes take effect at the next start, not on SIGHUP"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_streams_follow_their_inputs_to_their_ids() {
        let line = |stream| pedvision::config::rules::LineConfig {
            name: format!("l{stream:?}"),
            stream,
            points: vec![[0.0, 0.5], [1.0, 0.5]],
            units: None,
            directions: None,
            classes: None,
            anchor: None,
            hysteresis: None,
        };
        let rules = RuleSet {
            lines: vec![line(Some(0)), line(Some(1)), line(None)],
            zones: vec![],
        };
        let ids = BTreeMap::from([(0, 4), (1, 7)]);
        let out = translate(&rules, &ids);
        let streams: Vec<Option<u32>> = out.lines.iter().map(|l| l.stream).collect();
        assert_eq!(streams, [Some(4), Some(7), None]);
    }
}
