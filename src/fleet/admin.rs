//! What `pedvision fleet` reads and writes: cameras added to and removed from the
//! bucket, the workers' heartbeats, and each camera's owner and state joined from
//! the leases and the heartbeats.

use std::collections::BTreeMap;

use futures_util::TryStreamExt as _;
use serde::Serialize;

use super::camera::CameraSpec;
use super::lease::{Beat, Lease};
use super::store::Stores;
use super::{FleetError, valid_id};

/// Adds camera `id` (or replaces it with `replace`).
pub async fn add_camera(
    stores: &Stores,
    id: &str,
    spec: &CameraSpec,
    replace: bool,
) -> Result<(), FleetError> {
    if !valid_id(id) {
        return Err(FleetError::BadId(id.to_string()));
    }
    spec.check(id)?;
    let value = spec.to_json().into();
    if replace {
        stores
            .cameras
            .put(id, value)
            .await
            .map_err(FleetError::js)?;
        return Ok(());
    }
    match stores.cameras.create(id, value).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
            Err(FleetError::Exists(id.to_string()))
        }
        Err(e) => Err(FleetError::js(e)),
    }
}

/// Removes camera `id`; its worker stops it.
pub async fn remove_camera(stores: &Stores, id: &str) -> Result<(), FleetError> {
    if stores
        .cameras
        .get(id)
        .await
        .map_err(FleetError::js)?
        .is_none()
    {
        return Err(FleetError::NoCamera(id.to_string()));
    }
    stores.cameras.delete(id).await.map_err(FleetError::js)
}

/// Every key of a bucket with its current value, parsed.
async fn all<T: serde::de::DeserializeOwned>(
    store: &async_nats::jetstream::kv::Store,
) -> Result<BTreeMap<String, Result<T, String>>, FleetError> {
    let keys: Vec<String> = match store.keys().await {
        Ok(k) => k.try_collect().await.map_err(FleetError::js)?,
        Err(e) => return Err(FleetError::js(e)),
    };
    let mut out = BTreeMap::new();
    for key in keys {
        if let Some(bytes) = store.get(&key).await.map_err(FleetError::js)? {
            out.insert(
                key,
                serde_json::from_slice::<T>(&bytes).map_err(|e| e.to_string()),
            );
        }
    }
    Ok(out)
}

/// The cameras, by id (a value that is not a camera is an `Err` with why).
pub async fn cameras(
    stores: &Stores,
) -> Result<BTreeMap<String, Result<CameraSpec, String>>, FleetError> {
    all(&stores.cameras).await
}

/// The live workers' last heartbeats: those heard from within the lease TTL
/// (a killed worker's last beat stays in the bucket for three TTLs).
pub async fn workers(stores: &Stores) -> Result<Vec<Beat>, FleetError> {
    let fresh = stores.ttl.as_millis() as u64;
    Ok(all::<Beat>(&stores.workers)
        .await?
        .into_values()
        .filter_map(Result::ok)
        .filter(|b| super::now_ms().saturating_sub(b.seen_ms) <= fresh)
        .collect())
}

/// One camera in `fleet status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CameraStatus {
    pub camera: String,
    /// The input, credentials hidden.
    pub input: String,
    /// The worker holding its lease; `None`: unowned.
    pub owner: Option<String>,
    /// Its stream's state on the owner (from the owner's heartbeat).
    pub state: String,
    pub fps: f64,
    /// Capture-to-metadata latency on the owner, median of the last 2 s.
    pub lag_ms: Option<f64>,
    /// Since when the owner holds it, Unix ms.
    pub since_ms: Option<u64>,
    pub error: Option<String>,
}

/// Every camera with its owner and what the owner reports of it.
pub async fn status(stores: &Stores) -> Result<Vec<CameraStatus>, FleetError> {
    let cameras = cameras(stores).await?;
    let leases = all::<Lease>(&stores.leases).await?;
    let beats: BTreeMap<String, Beat> = workers(stores)
        .await?
        .into_iter()
        .map(|b| (b.worker.clone(), b))
        .collect();
    Ok(cameras
        .into_iter()
        .map(|(camera, spec)| {
            let lease = leases.get(&camera).and_then(|l| l.as_ref().ok());
            let seen = lease
                .and_then(|l| beats.get(&l.worker))
                .and_then(|b| b.cameras.iter().find(|c| c.camera == camera));
            let state = match (lease, seen) {
                (None, _) => "unowned".to_string(),
                (Some(_), None) => "starting".to_string(),
                (Some(_), Some(c)) => c.state.clone(),
            };
            CameraStatus {
                input: spec
                    .as_ref()
                    .map_or_else(|e| format!("(bad value: {e})"), CameraSpec::shown_input),
                owner: lease.map(|l| l.worker.clone()),
                state,
                fps: seen.map_or(0.0, |c| c.fps),
                lag_ms: seen.and_then(|c| c.lag_ms),
                since_ms: lease.map(|l| l.since_ms),
                error: seen.and_then(|c| c.error.clone()),
                camera,
            }
        })
        .collect())
}
