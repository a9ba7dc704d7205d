//! A bounded, crash-safe disk spool: the write-ahead queue between the pipeline and
//! the MQTT broker.
//!
//! Every message is appended here before it is published, and leaves only when the
//! broker has acknowledged it, so a broker that is down or slow loses nothing and a
//! restart of pedvision picks up where it stopped.
//!
//! On disk: a folder of segment files `SEQ.seg` (named by their first sequence
//! number) holding records `[len u32][crc32 u32][seq u64][topic len u16][topic]
//! [payload]` (little-endian; the CRC covers everything after it), and `acked`, the
//! highest acknowledged sequence number, replaced atomically (write + rename).
//! Records are written with one `write` each (a crash of the process loses none)
//! and synced to disk at most every second and on close. Opening a spool scans the
//! segments and stops at the first torn or corrupt record, truncating it away, so a
//! crash (even a power cut mid-write) leaves a readable spool.
//!
//! Durability order: the folder itself is synced after a segment or the `acked`
//! file is created, renamed or deleted (a power cut could otherwise lose the name
//! though the data was synced), and the acknowledgement is on disk before any
//! segment it covers is deleted. Opening tolerates what a crash or a damaged disk
//! leaves: an `acked` below the first record (or missing, or garbage), gaps in the
//! sequence where a corrupt record was cut, segments out of order. The tests check
//! the spool against a model (a queue in memory) under crashes injected between
//! every pair of operations and tails torn at random bytes.
//!
//! The bound is on bytes on disk. Past it the oldest segment is deleted, and its
//! records that were never acknowledged are counted as dropped. Unacknowledged
//! records are also kept in memory (the same bound applies), so publishing never
//! reads back from disk except after a restart.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::SinkError;

const HEADER: usize = 4 + 4;
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// The spool. Sequence numbers start at 1 and only grow.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Messages not yet acknowledged, oldest first.
    pending: VecDeque<Message>,
    next_seq: u64,
    acked: u64,
    acked_on_disk: u64,
    dropped: u64,
    recovered: u64,
    last_sync: Instant,
    dirty: bool,
}

fn io_error(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, bounded to `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        // A garbled marker counts as nothing acknowledged: messages may be sent
        // twice (at least once), never lost.
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0).min(u64::MAX / 2),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(&dir.join("acked"), e)),
        };
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io_error(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let seq = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()?;
                Some((seq, p))
            })
            .collect();
        files.sort();
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(64 * 1024),
            segment_bytes: (max_bytes / 8).clamp(16 * 1024, 8 * 1024 * 1024),
            segments: VecDeque::new(),
            writer: None,
            pending: VecDeque::new(),
            next_seq: acked.saturating_add(1),
            acked,
            acked_on_disk: acked,
            dropped: 0,
            recovered: 0,
            last_sync: Instant::now(),
            dirty: false,
        };
        for (first_seq, path) in files {
            spool.recover_segment(first_seq, &path)?;
        }
        // Names can disagree with contents (a damaged or renamed file): the queue
        // goes out in sequence order, each message once.
        let mut queue: Vec<Message> = spool.pending.drain(..).collect();
        queue.sort_by_key(|m| m.seq);
        queue.dedup_by_key(|m| m.seq);
        spool.pending = queue.into();
        spool.recovered = spool.pending.len() as u64;
        spool.delete_acked_segments()?;
        Ok(spool)
    }

    /// Reads one segment back, keeping the intact prefix.
    fn recover_segment(&mut self, first_seq: u64, path: &Path) -> Result<(), SinkError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io_error(path, e))?;
        let mut offset = 0usize;
        let mut last_seq = first_seq.saturating_sub(1);
        while let Some((message, len)) = decode(&bytes[offset..]) {
            if message.seq <= last_seq && offset > 0 {
                break;
            }
            last_seq = message.seq;
            offset += len;
            if message.seq > self.acked {
                self.pending.push_back(message);
            }
        }
        if offset < bytes.len() {
            tracing::warn!(path = %path.display(), kept = offset, lost = bytes.len() - offset, "spool segment ends in a torn or corrupt record; truncating it");
        }
        // What was read back is made durable (it may have been only in the page
        // cache when the last run died), with any torn tail cut away.
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        if offset < bytes.len() {
            f.set_len(offset as u64).map_err(|e| io_error(path, e))?;
        }
        f.sync_all().map_err(|e| io_error(path, e))?;
        if offset == 0 {
            let _ = std::fs::remove_file(path);
            self.sync_dir()?;
            return Ok(());
        }
        self.next_seq = self.next_seq.max(last_seq.saturating_add(1));
        self.segments.push_back(Segment {
            last_seq,
            path: path.to_path_buf(),
            bytes: offset as u64,
        });
        Ok(())
    }

    /// Appends a message; returns its sequence number.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<u64, SinkError> {
        let seq = self.next_seq;
        let record = encode(seq, topic, payload);
        let roll = self
            .segments
            .back()
            .is_none_or(|s| s.bytes + record.len() as u64 > self.segment_bytes)
            || self.writer.is_none();
        if roll {
            self.sync()?;
            let path = self.dir.join(format!("{seq:020}.seg"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            self.sync_dir()?;
            self.writer = Some(file);
            self.segments.push_back(Segment {
                last_seq: seq,
                path,
                bytes: 0,
            });
        }
        let segment = self.segments.back_mut().expect("a segment was just opened");
        let writer = self.writer.as_mut().expect("a writer was just opened");
        writer
            .write_all(&record)
            .map_err(|e| io_error(&segment.path, e))?;
        segment.bytes += record.len() as u64;
        segment.last_seq = seq;
        self.next_seq += 1;
        self.dirty = true;
        self.pending.push_back(Message {
            seq,
            topic: topic.to_string(),
            payload: payload.to_vec(),
        });
        self.enforce_bound()?;
        self.sync_if_due()?;
        Ok(seq)
    }

    /// Drops whole oldest segments while the spool is over its bound, counting the
    /// unacknowledged messages they held.
    fn enforce_bound(&mut self) -> Result<(), SinkError> {
        while self.segments.len() > 1 && self.disk_bytes() > self.max_bytes {
            let oldest = self.segments.pop_front().expect("more than one segment");
            let before = self.pending.len();
            self.pending.retain(|m| m.seq > oldest.last_seq);
            let lost = (before - self.pending.len()) as u64;
            self.dropped += lost;
            if lost > 0 {
                tracing::warn!(
                    messages = lost,
                    total_dropped = self.dropped,
                    "MQTT spool full: dropped its oldest messages"
                );
            }
            self.acked = self.acked.max(oldest.last_seq);
            // The marker first: a crash between the two must not bring the
            // dropped messages back as if they were still owed.
            self.write_acked()?;
            std::fs::remove_file(&oldest.path).map_err(|e| io_error(&oldest.path, e))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Makes created, renamed and deleted names in the folder durable.
    fn sync_dir(&self) -> Result<(), SinkError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }

    /// The sequence number the next [`Spool::push`] will give.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Unacknowledged messages, oldest first.
    pub fn pending(&self) -> &VecDeque<Message> {
        &self.pending
    }

    /// Marks every message up to `seq` as delivered.
    pub fn ack_through(&mut self, seq: u64) -> Result<(), SinkError> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        while self.pending.front().is_some_and(|m| m.seq <= seq) {
            self.pending.pop_front();
        }
        self.sync_if_due()
    }

    /// Highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Messages dropped by the bound since the spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages found undelivered when the spool was opened.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// [`Spool::sync`] when the last one is more than a second old.
    pub fn sync_if_due(&mut self) -> Result<(), SinkError> {
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Syncs records and the acknowledgement to disk; deletes fully delivered segments.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.last_sync = Instant::now();
        if self.dirty {
            if let (Some(w), Some(s)) = (&self.writer, self.segments.back()) {
                w.sync_data().map_err(|e| io_error(&s.path, e))?;
            }
            self.dirty = false;
        }
        if self.acked != self.acked_on_disk {
            self.write_acked()?;
        }
        self.delete_acked_segments()
    }

    fn write_acked(&mut self) -> Result<(), SinkError> {
        let path = self.dir.join("acked");
        let temp = self.dir.join("acked.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&temp)?;
            writeln!(f, "{}", self.acked)?;
            f.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| io_error(&path, e))?;
        self.sync_dir()?;
        self.acked_on_disk = self.acked;
        Ok(())
    }

    /// Removes segments whose every record is acknowledged (on disk), except the
    /// one being written.
    fn delete_acked_segments(&mut self) -> Result<(), SinkError> {
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.last_seq <= self.acked_on_disk)
        {
            let s = self.segments.pop_front().expect("checked");
            std::fs::remove_file(&s.path).map_err(|e| io_error(&s.path, e))?;
            self.sync_dir()?;
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "cannot sync the MQTT spool");
        }
    }
}

fn encode(seq: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
    let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
    let body_len = 8 + 2 + topic.len() + payload.len();
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// One record from the start of `bytes`, with its length; `None` if torn or corrupt.
fn decode(bytes: &[u8]) -> Option<(Message, usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    if len < 10 || crc32fast::hash(body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let topic_len = u16::from_le_bytes(body[8..10].try_into().ok()?) as usize;
    let topic = std::str::from_utf8(body.get(10..10 + topic_len)?)
        .ok()?
        .to_string();
    let payload = body[10 + topic_len..].to_vec();
    Some((
        Message {
            seq,
            topic,
            payload,
        },
        HEADER + len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(s: &Spool) -> Vec<u64> {
        s.pending().iter().map(|m| m.seq).collect()
    }

    #[test]
    fn survives_reopening_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5 {
                s.push("t/0", format!("m{i}").as_bytes()).unwrap();
            }
            s.ack_through(2).unwrap();
        }
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&s), vec![3, 4, 5]);
        assert_eq!(s.recovered(), 3);
        assert_eq!(s.pending()[0].payload, b"m2");
        assert_eq!(s.push("t/1", b"x").unwrap(), 6, "sequence numbers continue");
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.push("t", b"first").unwrap();
            s.push("t", b"second").unwrap();
        }
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        // A crash in the middle of a write: half a record at the end ...
        let half = &encode(3, "t", b"third")[..9];
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(half)
            .unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&s), vec![1, 2]);
        assert_eq!(s.push("t", b"third").unwrap(), 3);
        drop(s);
        // ... and a flipped bit in the last record (written to a new segment).
        let newest = dir.path().join(format!("{:020}.seg", 3));
        let mut bytes = std::fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x40;
        std::fs::write(&newest, bytes).unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&s), vec![1, 2]);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB bound, 16 KiB segments; 1 KiB messages.
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        let payload = vec![b'x'; 1000];
        for _ in 0..200 {
            s.push("t", &payload).unwrap();
        }
        assert!(s.dropped() > 0);
        assert_eq!(s.dropped() + s.pending().len() as u64, 200);
        let kept = seqs(&s);
        assert_eq!(*kept.last().unwrap(), 200, "the newest are kept");
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
        assert!(s.disk_bytes() <= 64 * 1024 + 16 * 1024);
        drop(s);
        let s = Spool::open(dir.path(), 64 * 1024).unwrap();
        assert_eq!(seqs(&s), kept, "the same after a restart");
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        let payload = vec![b'y'; 1000];
        for _ in 0..40 {
            s.push("t", &payload).unwrap();
        }
        s.ack_through(40).unwrap();
        s.sync().unwrap();
        let segs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 1, "only the segment being written remains");
        assert!(s.pending().is_empty());
    }

    /// What the spool must do, kept as a plain queue.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        pub enum Op {
            Push(usize),
            /// Acknowledge through the n-th pending message (modulo their count).
            Ack(usize),
            Sync,
            /// The process dies without syncing; a power cut then tears the newest
            /// segment at a byte past what was synced (`cut` in thousandths of
            /// that tail) and may flip a byte there.
            Crash {
                cut: Option<u16>,
                flip: Option<u16>,
            },
        }

        pub fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0usize..8000).prop_map(Op::Push),
                2 => any::<usize>().prop_map(Op::Ack),
                1 => Just(Op::Sync),
                2 => (prop::option::of(0u16..=1000), prop::option::of(0u16..=1000))
                    .prop_map(|(cut, flip)| Op::Crash { cut, flip }),
            ]
        }

        /// The model: every message pushed, and what is known to be durable.
        #[derive(Default)]
        pub struct Model {
            pub messages: std::collections::BTreeMap<u64, Vec<u8>>,
            /// Acknowledged in memory.
            pub acked: u64,
            /// Acknowledged and synced.
            pub acked_durable: u64,
            /// Every message up to this seq was synced.
            pub durable_through: u64,
        }

        pub fn payload(seq: u64, len: usize) -> Vec<u8> {
            (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
        }

        /// The newest segment file and how many of its bytes are durable.
        fn newest_segment(dir: &Path, m: &Model) -> Option<(PathBuf, u64)> {
            let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    Some((
                        p.file_name()?
                            .to_str()?
                            .strip_suffix(".seg")?
                            .parse()
                            .ok()?,
                        p,
                    ))
                })
                .collect();
            segs.sort();
            let (first, path) = segs.pop()?;
            let durable = m
                .messages
                .iter()
                .filter(|(seq, _)| (first..=m.durable_through).contains(*seq))
                .map(|(seq, p)| encode(*seq, "t", p).len() as u64)
                .sum();
            Some((path, durable))
        }

        /// Tears the newest segment past its durable bytes.
        pub fn tear(dir: &Path, m: &Model, cut: Option<u16>, flip: Option<u16>) {
            let Some((path, durable)) = newest_segment(dir, m) else {
                return;
            };
            let mut bytes = std::fs::read(&path).unwrap();
            let len = bytes.len() as u64;
            if len <= durable {
                return;
            }
            let tail = len - durable;
            if let Some(f) = flip {
                let at = durable + (tail - 1) * u64::from(f) / 1000;
                bytes[at as usize] ^= 0x5a;
            }
            if let Some(c) = cut {
                bytes.truncate((durable + tail * u64::from(c) / 1000) as usize);
            }
            std::fs::write(&path, bytes).unwrap();
        }

        /// What a reopened spool must hold; then the model forgets what was lost.
        pub fn check_reopened(s: &Spool, m: &mut Model) -> Result<(), TestCaseError> {
            let pending: Vec<&Message> = s.pending().iter().collect();
            prop_assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
            for msg in &pending {
                let want = m.messages.get(&msg.seq);
                prop_assert_eq!(want, Some(&msg.payload), "seq {} is intact", msg.seq);
                prop_assert!(
                    msg.seq > m.acked_durable,
                    "seq {} was acknowledged on disk",
                    msg.seq
                );
            }
            let owed = m
                .messages
                .keys()
                .filter(|s| **s > m.acked && **s <= m.durable_through);
            for &seq in owed {
                prop_assert!(
                    pending.iter().any(|p| p.seq == seq),
                    "seq {seq} was synced and never acknowledged, yet is lost"
                );
            }
            prop_assert!(s.next_seq() > pending.last().map_or(0, |p| p.seq));
            // Lost unsynced messages are gone; what was read back is durable now.
            let kept: std::collections::BTreeMap<u64, Vec<u8>> =
                pending.iter().map(|p| (p.seq, p.payload.clone())).collect();
            m.messages
                .retain(|seq, _| *seq <= s.acked() || kept.contains_key(seq));
            // Acknowledgements not yet synced died with the process.
            m.acked = s.acked();
            m.acked_durable = s.acked();
            m.durable_through = pending
                .last()
                .map_or(m.durable_through, |p| p.seq.max(m.durable_through));
            Ok(())
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The spool against its model, crashing between any two operations.
        #[test]
        fn matches_its_model_through_crashes_and_torn_writes(
            ops in proptest::collection::vec(model::op(), 1..60)
        ) {
            use proptest::prop_assert_eq;
            let dir = tempfile::tempdir().unwrap();
            let mut spool = Some(Spool::open(dir.path(), 1 << 20).unwrap());
            let mut m = model::Model::default();
            for op in ops {
                let s = spool.as_mut().unwrap();
                match op {
                    model::Op::Push(len) => {
                        let seq = s.next_seq();
                        let payload = model::payload(seq, len);
                        prop_assert_eq!(s.push("t", &payload).unwrap(), seq);
                        m.messages.insert(seq, payload);
                    }
                    model::Op::Ack(n) => {
                        if !s.pending().is_empty() {
                            let seq = s.pending()[n % s.pending().len()].seq;
                            s.ack_through(seq).unwrap();
                            m.acked = m.acked.max(seq);
                        }
                    }
                    model::Op::Sync => {
                        s.sync().unwrap();
                        m.durable_through = m.messages.keys().next_back().copied().unwrap_or(0);
                        m.acked_durable = m.acked;
                    }
                    model::Op::Crash { cut, flip } => {
                        // No Drop, so no final sync: what a killed process leaves.
                        std::mem::forget(spool.take());
                        model::tear(dir.path(), &m, cut, flip);
                        let reopened = Spool::open(dir.path(), 1 << 20).unwrap();
                        model::check_reopened(&reopened, &mut m)?;
                        spool = Some(reopened);
                    }
                }
            }
        }
    }

    #[test]
    fn an_ack_below_the_first_record_and_garbage_markers_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            for _ in 0..5 {
                s.push("t", b"m").unwrap();
            }
        }
        // The first segment is renamed as if it started at 100 (records 1..5
        // inside): the marker (0) is below every record.
        let seg = dir.path().join(format!("{:020}.seg", 1));
        std::fs::rename(&seg, dir.path().join(format!("{:020}.seg", 100))).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&s), vec![1, 2, 3, 4, 5]);
        assert_eq!(s.push("t", b"n").unwrap(), 6);
        drop(s);
        for garbage in ["not a number", "18446744073709551615", ""] {
            std::fs::write(dir.path().join("acked"), garbage).unwrap();
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            assert!(s.next_seq() > 0, "no overflow with {garbage:?}");
        }
    }
}
