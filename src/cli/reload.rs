//! SIGHUP: re-reads the run's pipeline file and applies what changed through the
//! same control path as the HTTP API, so the run never restarts.
//!
//! - Inputs are told apart by the input as written (one listed twice is refused):
//!   one no longer in the file is removed (its outputs finalised); a new one is
//!   added under the next free id, its video named by the run's pattern; one that
//!   stays runs on untouched.
//! - The file's lines and zones replace those for every stream and for the file's
//!   streams (a rule that stays the same keeps its counts); a rule's `stream`, a
//!   position in the file's inputs, becomes the id that input runs under. Rules
//!   of streams added through the API stay.
//! - A changed `[model] path` is loaded beside the live model and switched in.
//! - A step that fails (a stream limit, a model that does not load) is logged and
//!   the others still apply.
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

/// The inputs the file manages: input as written → stream id.
type Managed = BTreeMap<String, u32>;

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
        .map(|s| (s.input().to_string(), s.id))
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
    // The run compares the manifest it would load, as the start did.
    let resolved = manifest.for_precision(plan.runtime.precision)?.path;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = plan.sources.iter().find(|s| !seen.insert(s.input())) {
        anyhow::bail!(
            "input {} is listed twice (SIGHUP tells inputs apart by how they are written)",
            twice.name()
        );
    }
    warn_unapplied(&applied.plan, &plan);
    let mut failed: Vec<String> = Vec::new();
    let removed = remove_gone(&plan, applied, control);
    let (ids, added) = add_new(&plan, applied, control, &mut failed);
    let managed: std::collections::BTreeSet<u32> = applied.streams.values().copied().collect();
    let mut rules = translate(&plan.rule_configs, &ids);
    match control.rules() {
        Ok(current) => keep_api_rules(&mut rules, current, &managed),
        Err(e) => failed.push(format!("lines and zones: {e}")),
    }
    if let Err(e) = control.edit_rules(RuleEdit::Replace(rules)) {
        failed.push(format!("lines and zones: {e}"));
    }
    let mut summary = format!(
        "pipeline file applied: {added} added, {removed} removed, lines and zones replaced"
    );
    if resolved != applied.model {
        match control.swap_model(plan.model_path.clone()) {
            Ok(status) => {
                applied.model = resolved;
                summary.push_str(&format!(", model {} live", status.name));
            }
            Err(e) => failed.push(format!("model: {e}")),
        }
    }
    applied.plan = plan;
    if !failed.is_empty() {
        tracing::error!(failed = %failed.join("; "), "part of the pipeline file was not applied");
    }
    Ok(summary)
}

/// Removes the streams whose input is no longer in the file; how many.
fn remove_gone(plan: &RunPlan, applied: &mut Applied, control: &Control) -> usize {
    let wanted: std::collections::BTreeSet<&str> = plan.sources.iter().map(|s| s.input()).collect();
    let stale: Vec<String> = applied
        .streams
        .keys()
        .filter(|input| !wanted.contains(input.as_str()))
        .cloned()
        .collect();
    for input in &stale {
        if let Some(id) = applied.streams.remove(input) {
            // An input that already ended and was removed is simply gone.
            let _ = control.remove_stream(id);
        }
    }
    stale.len()
}

/// Adds the streams whose input is new in the file. Returns each file position's
/// stream id, and how many were added; what could not be added goes to `failed`.
fn add_new(
    plan: &RunPlan,
    applied: &mut Applied,
    control: &Control,
    failed: &mut Vec<String>,
) -> (BTreeMap<u32, u32>, usize) {
    let mut ids = BTreeMap::new();
    let mut added = 0;
    for spec in &plan.sources {
        let input = spec.input().to_string();
        if let Some(id) = applied.streams.get(&input) {
            ids.insert(spec.id, *id);
            continue;
        }
        let request = StreamRequest {
            input: input.clone(),
            ..Default::default()
        };
        match control.add_stream(request) {
            Ok(id) => {
                ids.insert(spec.id, id);
                applied.streams.insert(input, id);
                added += 1;
            }
            Err(e) => failed.push(format!("input {}: {e}", spec.name())),
        }
    }
    (ids, added)
}

/// Adds to the file's rules those of `current` that belong to streams the file
/// does not manage (added through the API).
fn keep_api_rules(
    rules: &mut RuleSet,
    current: RuleSet,
    managed: &std::collections::BTreeSet<u32>,
) {
    let api_only = |s: Option<u32>| s.is_some_and(|id| !managed.contains(&id));
    rules
        .lines
        .extend(current.lines.into_iter().filter(|l| api_only(l.stream)));
    rules
        .zones
        .extend(current.zones.into_iter().filter(|z| api_only(z.stream)));
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

    fn line(name: &str, stream: Option<u32>) -> pedvision::config::rules::LineConfig {
        pedvision::config::rules::LineConfig {
            name: name.into(),
            stream,
            points: vec![[0.0, 0.5], [1.0, 0.5]],
            units: None,
            directions: None,
            classes: None,
            anchor: None,
            hysteresis: None,
        }
    }

    #[test]
    fn rule_streams_follow_their_inputs_to_their_ids() {
        let rules = RuleSet {
            lines: vec![line("a", Some(0)), line("b", Some(1)), line("c", None)],
            zones: vec![],
        };
        let ids = BTreeMap::from([(0, 4), (1, 7)]);
        let out = translate(&rules, &ids);
        let streams: Vec<Option<u32>> = out.lines.iter().map(|l| l.stream).collect();
        assert_eq!(streams, [Some(4), Some(7), None]);
    }

    #[test]
    fn rules_of_streams_added_through_the_api_survive_a_reload() {
        let mut from_file = RuleSet {
            lines: vec![line("file", Some(0))],
            zones: vec![],
        };
        let current = RuleSet {
            lines: vec![
                line("old-file", Some(0)),
                line("everywhere", None),
                line("api", Some(5)),
            ],
            zones: vec![],
        };
        keep_api_rules(&mut from_file, current, &[0].into());
        let names: Vec<&str> = from_file.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["file", "api"]);
    }
}
