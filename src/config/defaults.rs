//! Defaults of the settings that no library type owns (thresholds, batching, the
//! MQTT sink). Written once: [`super::PipelineConfig::defaults`] and the flags'
//! help both read them. Settings owned by a type (RTSP client, reconnection,
//! tracker) take their defaults from that type's `Default`.

/// Classes kept: pedestrians.
pub const CLASSES: &str = "person";
/// Minimum class score of a reported detection.
pub const CONF: f32 = 0.35;
/// NMS IoU threshold.
pub const IOU: f32 = 0.5;
/// Frames per inference call.
pub const BATCH: u16 = 1;
/// Largest batch accepted (a batch is allocated up front: 64 frames of 512×384 is
/// 151 MB of tensor).
pub const MAX_BATCH: u16 = 64;
/// Most streams open at once in one run.
pub const MAX_STREAMS: usize = 64;
/// Most detections per frame after NMS (COCO's limit).
pub const MAX_DETECTIONS: usize = 100;
/// Longest wait for a partial batch when any input is live, in ms.
pub const LIVE_BATCH_TIMEOUT_MS: u64 = 20;
/// Harvest: most frames saved per stream per minute of its time.
pub const HARVEST_PER_MINUTE: f64 = 6.0;
/// Harvest: a reported detection scoring below this makes its frame "unsure".
pub const HARVEST_UNSURE_BELOW: f32 = 0.5;
/// MQTT topic prefix.
pub const MQTT_TOPIC_PREFIX: &str = "pedvision";
/// MQTT disk spool folder.
pub const MQTT_SPOOL: &str = "out/mqtt-spool";
/// MQTT spool bound, in MiB.
pub const MQTT_SPOOL_MAX_MB: u64 = 256;
/// How long the end of a run keeps delivering the spool, in s.
pub const MQTT_DRAIN_TIMEOUT_S: f64 = 10.0;
/// Fleet: seconds a camera's lease lives after its last renewal (set when the
/// lease bucket is created; workers use the bucket's).
pub const FLEET_LEASE_TTL_S: f64 = 10.0;
/// Fleet: replicas of the buckets and the metadata stream when first created.
pub const FLEET_REPLICAS: usize = 1;
/// Fleet: the worker's JetStream spool folder (`{worker}` is replaced).
pub const FLEET_SPOOL: &str = "out/nats-spool-{worker}";
