//! What the analytics report: one [`Event`] per line crossing, zone entry and
//! zone exit, with the frame it happened in. Serialised as JSON in the frame
//! records (`events`), on MQTT (`PREFIX/STREAM/events`) and in the README schema.

use serde::Serialize;

/// What happened, to which track.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A track's anchor crossed a line.
    LineCrossed {
        line: String,
        direction: String,
        track_id: u64,
        class: String,
    },
    /// A track's anchor came into a zone.
    ZoneEntered {
        zone: String,
        track_id: u64,
        class: String,
    },
    /// A track's anchor left a zone, or the track ended inside it.
    ZoneLeft {
        zone: String,
        track_id: u64,
        class: String,
        /// Seconds from the first frame inside to the first frame outside (or to
        /// the last frame the track was seen, when it ended inside).
        dwell_s: f64,
    },
}

/// Which message of which run a frame record or event is: consumers drop
/// repeats (a message redelivered after a broker outage or a restart of
/// pedvision) by this pair, since frame indices start over every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageId {
    /// Random per run, 16 hex digits.
    pub run_id: std::sync::Arc<str>,
    /// Per stream and run, counting frame records and events from 0.
    pub seq: u64,
}

/// An event with the frame it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Set by the pipeline when the event is published.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    pub stream_id: u32,
    pub frame_index: u64,
    /// The frame's presentation timestamp in nanoseconds, as in its record.
    pub pts_ns: Option<u64>,
    /// Live sources: when the frame was captured, as Unix time in nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_unix_ns: Option<u64>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event as one line of JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_flat_with_its_type() {
        let e = Event {
            id: None,
            stream_id: 1,
            frame_index: 41,
            pts_ns: Some(4_100_000_000),
            captured_unix_ns: None,
            kind: EventKind::ZoneLeft {
                zone: "queue".into(),
                track_id: 7,
                class: "person".into(),
                dwell_s: 2.5,
            },
        };
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"stream_id":1,"frame_index":41,"pts_ns":4100000000,"type":"zone_left","zone":"queue","track_id":7,"class":"person","dwell_s":2.5}"#
        );
    }
}
