//! CPU time per pipeline stage, for `bench`: a sampler thread reads every thread's
//! user + system time from `/proc/self/task/*/stat` while a run goes, and sorts the
//! threads into stages by name.
//!
//! pedvision names its stage threads (`source-N`, `batcher`, `preprocess`, `infer`);
//! the post stage runs on the main thread; ONNX Runtime's workers inherit the name
//! of the thread that made the session (`pedvision`, the main one); GStreamer names
//! its streaming threads after the element and pad (`avidemux0:sink`,
//! `multiqueue0:src` for decoding, `src:src` for the encoder's appsrc, where
//! conversion and x264 run, with x264's own threads named after it). A thread that
//! ends between two samples loses at most one sampling interval of time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The stages CPU time is reported for, in pipeline order.
pub const STAGES: [&str; 6] = [
    "decode",
    "preprocess",
    "inference",
    "post",
    "encode",
    "other",
];

/// How often the sampler reads the threads' times.
const INTERVAL: Duration = Duration::from_millis(40);

/// The stage a thread belongs to, from its name (`main` is whether it is the
/// process's main thread).
pub fn stage_of(name: &str, main: bool) -> &'static str {
    if main {
        return "post";
    }
    let n = name.to_ascii_lowercase();
    let has = |s: &str| n.contains(s);
    if n == "infer" || n == "pedvision" || n.starts_with("ort") || has("tbb") {
        "inference"
    } else if n == "preprocess" || n == "batcher" {
        "preprocess"
    } else if n.starts_with("source-")
        || [
            "demux",
            "multiqueue",
            "typefind",
            "decodebin",
            "queue",
            "rtp",
            "udpsrc",
            "souphttp",
            "filesrc",
            "v4l2",
        ]
        .iter()
        .any(|s| has(s))
    {
        "decode"
    } else if n.starts_with("src:")
        || n.starts_with("encode")
        || ["x264", "mp4mux", "h264parse", "rtsp-out", "mux"]
            .iter()
            .any(|s| has(s))
    {
        "encode"
    } else {
        "other"
    }
}

/// Samples the process's threads until stopped.
pub struct StageSampler {
    stop: Arc<AtomicBool>,
    /// `None` if the thread could not start: every stage then reads zero.
    thread: Option<std::thread::JoinHandle<HashMap<u32, (String, u64)>>>,
}

impl StageSampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stage-sampler".into())
            .spawn(move || {
                let mut seen: HashMap<u32, (String, u64)> = HashMap::new();
                let sample = |seen: &mut HashMap<u32, (String, u64)>| {
                    for (tid, name, ticks) in threads() {
                        // A new thread names itself just after it starts: the
                        // latest name is the right one.
                        let entry = seen.entry(tid).or_insert((String::new(), 0));
                        entry.0 = name;
                        entry.1 = entry.1.max(ticks);
                    }
                };
                let at_start = {
                    let mut first = HashMap::new();
                    sample(&mut first);
                    first
                };
                while !flag.load(Ordering::Relaxed) {
                    sample(&mut seen);
                    std::thread::sleep(INTERVAL);
                }
                sample(&mut seen);
                // Only what each thread used during the run.
                for (tid, (_, ticks)) in seen.iter_mut() {
                    if let Some((_, before)) = at_start.get(tid) {
                        *ticks = ticks.saturating_sub(*before);
                    }
                }
                seen
            });
        Self {
            stop,
            thread: thread.ok(),
        }
    }

    /// Stops sampling; CPU time per stage, in [`STAGES`] order.
    pub fn finish(self) -> [Duration; 6] {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.thread.and_then(|t| t.join().ok()).unwrap_or_default();
        let main = std::process::id();
        let mut per_stage = [Duration::ZERO; 6];
        for (tid, (name, ticks)) in seen {
            // The sampler's own thread is measurement, not pipeline.
            if name == "stage-sampler" {
                continue;
            }
            let stage = stage_of(&name, tid == main);
            let i = STAGES.iter().position(|s| *s == stage).unwrap_or(5);
            // Linux reports these in USER_HZ, 100 on every mainstream platform.
            per_stage[i] += Duration::from_millis(ticks * 10);
        }
        per_stage
    }
}

/// Every thread of this process: id, name and user + system ticks so far.
fn threads() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, ticks) = parse_stat(&stat)?;
            Some((tid, name, ticks))
        })
        .collect()
}

/// The name and user + system ticks in a `stat` line (the name, in parentheses,
/// may hold spaces and parentheses).
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (src:src (x)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("src:src (x)".into(), 175)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn thread_names_map_to_stages() {
        assert_eq!(stage_of("pedvision", true), "post");
        assert_eq!(stage_of("pedvision", false), "inference");
        assert_eq!(stage_of("infer", false), "inference");
        assert_eq!(stage_of("avidemux0:sink", false), "decode");
        assert_eq!(stage_of("multiqueue0:src", false), "decode");
        assert_eq!(stage_of("source-0", false), "decode");
        assert_eq!(stage_of("src:src", false), "encode");
        assert_eq!(stage_of("mp4mux0:src", false), "encode");
        assert_eq!(stage_of("preprocess", false), "preprocess");
        assert_eq!(stage_of("pool-pedvision", false), "other");
    }

    #[test]
    fn the_sampler_sees_a_busy_named_thread() {
        let sampler = StageSampler::start();
        std::thread::Builder::new()
            .name("preprocess".into())
            .spawn(|| {
                // Busy until this thread has used 300 ms of CPU (however long that
                // takes on a loaded machine), then idle long enough to be sampled.
                let own = || {
                    std::fs::read_to_string("/proc/thread-self/stat")
                        .ok()
                        .and_then(|s| parse_stat(&s))
                        .map_or(0, |(_, ticks)| ticks)
                };
                let mut x = 0u64;
                while own() < 30 {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(31).wrapping_add(7);
                    }
                }
                std::hint::black_box(x);
                std::thread::sleep(INTERVAL * 3);
            })
            .unwrap()
            .join()
            .unwrap();
        let per_stage = sampler.finish();
        assert!(per_stage[1] >= Duration::from_millis(150), "{per_stage:?}");
    }
}
