//! Fault injection for the tests of the pipeline's failure paths: a stage that
//! fails must leave its outputs marked incomplete, and one that panics must stop
//! the run within seconds, never hang. Compiled in only with the
//! `fault-injection` cargo feature, which `make test` enables; without it
//! [`inject`] is an empty inline function that always succeeds.
//!
//! `PEDVISION_FAULT=KIND:STAGE:N`, KIND `panic`, `fail` or `stall`, makes stage
//! `STAGE` (`source`, `infer`, `post`) panic, fail, or hang for an hour (a stalled
//! pipeline, for the systemd watchdog's test) when its count reaches `N`: frames
//! for `post`, batches for `infer`, the stream id for `source` (checked once, at
//! its start).

/// A failure injected by `PEDVISION_FAULT`.
#[derive(Debug, thiserror::Error)]
#[error("fault injected by PEDVISION_FAULT={0}")]
pub struct InjectedFault(pub String);

/// Panics or fails if `PEDVISION_FAULT` asks for it in `stage` at `count`.
#[cfg(feature = "fault-injection")]
pub fn inject(stage: &str, count: u64) -> Result<(), InjectedFault> {
    let Ok(spec) = std::env::var("PEDVISION_FAULT") else {
        return Ok(());
    };
    let mut parts = spec.split(':');
    let (kind, at, n) = (parts.next(), parts.next(), parts.next());
    let n: u64 = n.and_then(|n| n.parse().ok()).unwrap_or(0);
    if at != Some(stage) || count != n {
        return Ok(());
    }
    match kind {
        Some("panic") => panic!("fault injected by PEDVISION_FAULT={spec}"),
        Some("fail") => Err(InjectedFault(spec)),
        Some("stall") => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_stage: &str, _count: u64) -> Result<(), InjectedFault> {
    Ok(())
}
