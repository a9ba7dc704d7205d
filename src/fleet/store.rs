//! The fleet's state in JetStream: the three key-value buckets and the metadata
//! stream, created on first use (by a worker or `pedvision fleet`) and bound to
//! afterwards. Creation settings (lease TTL, replicas) only matter the first
//! time; an existing bucket's own settings win, so every worker agrees on the TTL.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::{CAMERAS, DEDUP_WINDOW, FleetError, LEASES, STREAM, SUBJECT_PREFIX, WORKERS};

/// Delete markers on expired leases live this long (long enough for every
/// watcher to see them).
const MARKER_TTL: Duration = Duration::from_secs(60);
/// Metadata kept in the stream.
const STREAM_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Handles on the fleet's buckets.
#[derive(Clone)]
pub struct Stores {
    pub js: jetstream::Context,
    pub cameras: kv::Store,
    pub leases: kv::Store,
    pub workers: kv::Store,
    /// The lease bucket's max age: how long a lease lives unrenewed.
    pub ttl: Duration,
}

/// Binds to the buckets and the stream, creating what does not exist yet.
pub async fn open(
    client: async_nats::Client,
    ttl: Duration,
    replicas: usize,
) -> Result<Stores, FleetError> {
    let mut js = jetstream::new(client);
    js.set_timeout(request_timeout(ttl));
    bucket(
        &js,
        kv::Config {
            bucket: CAMERAS.into(),
            description: "pedvision: camera id -> the camera's stream settings (JSON)".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    let leases = bucket(
        &js,
        kv::Config {
            bucket: LEASES.into(),
            description: "pedvision: camera id -> the worker that runs it (expires unrenewed)"
                .into(),
            history: 1,
            max_age: ttl,
            limit_markers: Some(MARKER_TTL),
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    let status = leases.status().await.map_err(FleetError::js)?;
    let ttl = status.max_age();
    if ttl < Duration::from_secs(3) || status.info.config.subject_delete_marker_ttl.is_none() {
        return Err(FleetError::JetStream(format!(
            "bucket {LEASES} has max age {ttl:?} and {} delete markers on expiry: it needs a TTL of 3 s or more and markers (nats-server 2.11 or newer); remove it to have it created again",
            if status.info.config.subject_delete_marker_ttl.is_some() {
                ""
            } else {
                "no"
            }
        )));
    }
    // An answer lost with a dying server must not stall lease renewals past
    // their hold limit: give up on a request after a sixth of the real TTL.
    js.set_timeout(request_timeout(ttl));
    let leases = js.get_key_value(LEASES).await.map_err(FleetError::js)?;
    let cameras = js.get_key_value(CAMERAS).await.map_err(FleetError::js)?;
    let workers = bucket(
        &js,
        kv::Config {
            bucket: WORKERS.into(),
            description: "pedvision: worker id -> its last heartbeat".into(),
            history: 1,
            max_age: ttl * 3,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    metadata_stream(&js, replicas).await?;
    Ok(Stores {
        js,
        cameras,
        leases,
        workers,
        ttl,
    })
}

/// How long a JetStream request may take: a sixth of the lease TTL.
fn request_timeout(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// Binds to bucket `config.bucket`, creating it when it does not exist (another
/// process may create it at the same moment: then bind to theirs).
async fn bucket(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, FleetError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => {
            tracing::info!(bucket = %name, "created NATS key-value bucket");
            Ok(store)
        }
        Err(create) => js
            .get_key_value(&name)
            .await
            .map_err(|_| FleetError::JetStream(format!("cannot create bucket {name}: {create}"))),
    }
}

/// The stream that holds `pedvision.meta.>` and `pedvision.events.>`, with the
/// de-duplication window that drops resent messages.
async fn metadata_stream(js: &jetstream::Context, replicas: usize) -> Result<(), FleetError> {
    if js.get_stream(STREAM).await.is_ok() {
        return Ok(());
    }
    js.get_or_create_stream(stream::Config {
        name: STREAM.into(),
        description: Some("pedvision: per-frame metadata and events of fleet cameras".into()),
        subjects: vec![
            format!("{SUBJECT_PREFIX}.meta.>"),
            format!("{SUBJECT_PREFIX}.events.>"),
        ],
        duplicate_window: DEDUP_WINDOW,
        max_age: STREAM_MAX_AGE,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| FleetError::JetStream(format!("cannot create stream {STREAM}: {e}")))
}
