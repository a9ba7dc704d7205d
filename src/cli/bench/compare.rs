//! `bench --compare`: several devices and precisions side by side in one run.
//!
//! A process loads one ONNX Runtime library, so each configuration is benched by
//! a child `pedvision bench --rounds 1 --result-line --keep-metadata FILE`; a round
//! runs every configuration once, in alternating order, so drifting machine load
//! hits all alike. The first configuration is the reference: every other one's
//! end-to-end fps is divided by the reference's of the same round, and its last
//! round's detections are matched against the reference's for parity.

use std::path::{Path, PathBuf};
use std::process::Command;

use pedvision::choice::Choice;
use pedvision::infer::{Device, Precision};
use pedvision::model::{BBox, geometry::iou};

use super::{BenchArgs, BenchResult, median};

/// One configuration to bench.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Config {
    device: Device,
    precision: Precision,
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.device, self.precision)
    }
}

/// Parses `DEVICE[:PRECISION],...` (precision `auto` when left out).
fn parse_list(list: &str) -> anyhow::Result<Vec<Config>> {
    let configs = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (d, p) = item.split_once(':').unwrap_or((item, "auto"));
            let device =
                Device::parse(d).map_err(|e| anyhow::anyhow!("--compare {item:?}: device {e}"))?;
            let precision = Precision::parse(p)
                .map_err(|e| anyhow::anyhow!("--compare {item:?}: precision {e}"))?;
            Ok(Config { device, precision })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        configs.len() >= 2,
        "--compare needs at least two DEVICE[:PRECISION] items, comma-separated (for example cpu:fp32,auto)"
    );
    Ok(configs)
}

pub fn execute(args: &BenchArgs, list: &str) -> anyhow::Result<()> {
    let configs = parse_list(list)?;
    let exe = std::env::current_exe()?;
    let dir = scratch_dir()?;
    let mut results: Vec<Vec<BenchResult>> = vec![Vec::new(); configs.len()];
    let mut failures: Vec<Option<String>> = vec![None; configs.len()];
    for round in 1..=usize::from(args.rounds) {
        let mut order: Vec<usize> = (0..configs.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            if failures[i].is_some() {
                continue;
            }
            let keep = dir.join(format!("config-{i}.jsonl"));
            match run_child(&exe, args, configs[i], &keep) {
                Ok(r) => {
                    out!(
                        "round {round}: {:<16} runs as {}:{} | inference only {:6.1} | zero-cost {:6.1} | end to end {:6.1} | metadata only {:6.1} fps",
                        configs[i].to_string(),
                        r.device,
                        r.precision,
                        r.inference_only_fps,
                        r.zero_cost_fps,
                        r.end_to_end_fps,
                        r.metadata_only_fps
                    );
                    results[i].push(r);
                }
                Err(e) if i == 0 => anyhow::bail!("the reference {} failed: {e}", configs[0]),
                Err(e) => {
                    out!("round {round}: {} failed: {e}", configs[i]);
                    failures[i] = Some(e.to_string());
                }
            }
        }
    }
    print_table(&configs, &results, &failures, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pedvision-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Benches one configuration in a child process; its result line.
fn run_child(
    exe: &Path,
    args: &BenchArgs,
    config: Config,
    keep: &Path,
) -> anyhow::Result<BenchResult> {
    let d = &args.detector;
    let mut cmd = Command::new(exe);
    cmd.arg("bench")
        .args(["--rounds", "1", "--result-line", "--keep-metadata"])
        .arg(keep)
        .args([
            "--device",
            config.device.name(),
            "--precision",
            config.precision.name(),
        ])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--batch", &d.batch.to_string()])
        .args(["--threads", &d.runtime.threads.to_string()])
        .arg("--model")
        .arg(super::super::common::model_path(d.model.as_deref())?)
        .args(["--classes", &d.classes])
        .args(["--conf", &d.conf.to_string(), "--iou", &d.iou.to_string()])
        .args(["--max-detections", &d.max_detections.to_string()]);
    if let Some(input) = &args.input {
        cmd.args(["--input", input]);
    }
    if let Some(lib) = &d.runtime.ort_lib {
        cmd.arg("--ort-lib").arg(lib);
    }
    let output = cmd.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        anyhow::bail!("{last}");
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("bench-result: "))
        .ok_or_else(|| anyhow::anyhow!("the child bench printed no result line"))?;
    Ok(serde_json::from_str(line)?)
}

/// The table: per configuration, medians over the rounds, the end-to-end ratio to
/// the reference (per round, median), and parity with the reference.
fn print_table(
    configs: &[Config],
    results: &[Vec<BenchResult>],
    failures: &[Option<String>],
    dir: &Path,
) {
    out!(
        "{:<16} {:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "config",
        "runs as",
        "batch",
        "infer fps",
        "zero-cost",
        "end2end",
        "metadata",
        "e2e ratio",
        "parity"
    );
    let reference = &results[0];
    for (i, config) in configs.iter().enumerate() {
        if let Some(e) = &failures[i] {
            out!("{:<16} failed: {e}", config.to_string());
            continue;
        }
        let r = &results[i];
        let Some(first) = r.first() else { continue };
        let pick = |f: fn(&BenchResult) -> f64| median(&r.iter().map(f).collect::<Vec<_>>());
        let ratios: Vec<f64> = r
            .iter()
            .zip(reference)
            .map(|(a, b)| a.end_to_end_fps / b.end_to_end_fps.max(1e-9))
            .collect();
        let parity = if i == 0 {
            "ref".to_string()
        } else {
            match parity(
                &dir.join("config-0.jsonl"),
                &dir.join(format!("config-{i}.jsonl")),
            ) {
                Ok((matched, total)) if total > 0 => {
                    format!("{:.1}%", 100.0 * matched as f64 / total as f64)
                }
                Ok(_) => "no dets".into(),
                Err(e) => format!("? ({e})"),
            }
        };
        out!(
            "{:<16} {:<16} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9.3} {:>9}",
            config.to_string(),
            format!("{}:{}", first.device, first.precision),
            first.batch,
            pick(|b| b.inference_only_fps),
            pick(|b| b.zero_cost_fps),
            pick(|b| b.end_to_end_fps),
            pick(|b| b.metadata_only_fps),
            median(&ratios),
            parity
        );
    }
    out!(
        "(e2e ratio: end-to-end fps over the first row's, per round, median; parity: the first row's detections with score >= 0.5 matched one to one by a detection of the same class at IoU >= 0.9)"
    );
}

/// A detection from a JSON Lines record: class, score, box.
type Det = (u64, f64, BBox);

fn read_detections(path: &Path) -> anyhow::Result<Vec<(u64, Vec<Det>)>> {
    let text = std::fs::read_to_string(path)?;
    let mut frames = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        // Event records carry no frame_index.
        let Some(index) = v["frame_index"].as_u64() else {
            continue;
        };
        let dets = v["detections"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        let b = d["bbox"].as_array()?;
                        let bbox: BBox = std::array::from_fn(|i| {
                            b.get(i).and_then(|v| v.as_f64()).unwrap_or(f64::NAN) as f32
                        });
                        bbox.iter().all(|v| v.is_finite()).then_some((
                            d["class_id"].as_u64()?,
                            d["score"].as_f64()?,
                            bbox,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        frames.push((index, dets));
    }
    Ok(frames)
}

/// Of the reference's detections with score >= 0.5, how many the candidate matches
/// one to one (same class, IoU >= 0.9, best first); and how many there were.
pub fn parity(reference: &Path, candidate: &Path) -> anyhow::Result<(usize, usize)> {
    let (a, b) = (read_detections(reference)?, read_detections(candidate)?);
    let by_index: std::collections::HashMap<u64, &Vec<Det>> =
        b.iter().map(|(i, d)| (*i, d)).collect();
    let (mut matched, mut total) = (0, 0);
    for (index, dets) in &a {
        let empty = Vec::new();
        let others = by_index.get(index).copied().unwrap_or(&empty);
        let mut used = vec![false; others.len()];
        let mut confident: Vec<&Det> = dets.iter().filter(|d| d.1 >= 0.5).collect();
        confident.sort_by(|x, y| y.1.total_cmp(&x.1));
        for d in confident {
            total += 1;
            let best = others
                .iter()
                .enumerate()
                .filter(|(j, o)| !used[*j] && o.0 == d.0)
                .map(|(j, o)| (j, iou(&d.2, &o.2)))
                .max_by(|x, y| x.1.total_cmp(&y.1));
            if let Some((j, v)) = best
                && v >= 0.9
            {
                used[j] = true;
                matched += 1;
            }
        }
    }
    Ok((matched, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_auto_precision_by_default() {
        let c = parse_list("cpu:fp32,gpu").unwrap_err().to_string();
        assert!(c.contains("device"), "{c}");
        let c = parse_list("cpu:fp32,openvino").unwrap();
        assert_eq!(c[1].precision, Precision::Auto);
        assert!(parse_list("cpu").is_err());
        assert!(parse_list("cpu:fp33,auto").is_err());
    }

    #[test]
    fn parity_matches_one_to_one_by_class_and_iou() {
        let dir = std::env::temp_dir().join(format!("pv-parity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        std::fs::write(
            &a,
            r#"{"frame_index":0,"detections":[{"class_id":0,"score":0.9,"bbox":[0,0,10,10]},{"class_id":0,"score":0.8,"bbox":[0,0,10,10.5]},{"class_id":0,"score":0.4,"bbox":[50,50,60,60]}]}
{"event":"line_crossed"}
"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"{"frame_index":0,"detections":[{"class_id":0,"score":0.7,"bbox":[0,0,10,10]},{"class_id":1,"score":0.9,"bbox":[0,0,10,10.5]}]}
"#,
        )
        .unwrap();
        // Two confident reference boxes; one candidate of the same class takes one.
        assert_eq!(parity(&a, &b).unwrap(), (1, 2));
        assert_eq!(parity(&a, &a).unwrap(), (2, 2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
