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
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
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
            next_seq: acked + 1,
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
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, e))?;
            f.set_len(offset as u64).map_err(|e| io_error(path, e))?;
        }
        if offset == 0 {
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        self.next_seq = self.next_seq.max(last_seq + 1);
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
            std::fs::remove_file(&oldest.path).map_err(|e| io_error(&oldest.path, e))?;
            self.write_acked()?;
        }
        Ok(())
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
}
