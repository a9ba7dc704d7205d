//! The batcher: forms batches for the one inference session from whatever frames
//! the streams have ready, round-robin so no stream starves, up to the batch size,
//! or fewer when the batch timeout runs out (like DeepStream's
//! batched-push-timeout, counted from the batch's first frame). Without a timeout
//! it waits for a full batch, which is right when every input is a file. Every
//! frame keeps its stream id, index and pts.
//!
//! Streams join at any time through `joins` (the controller sends a new stream's
//! queue before its source starts) and leave when their queue closes. A stream that
//! left is named in the `ended` list of the next batch, which travels behind the
//! stream's last frame: the post stage finalises the stream's outputs only once
//! every frame it sent is written. The batcher ends when every stream has left
//! and `joins` has closed.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::Frame;

/// What the batcher hands on: frames from any streams, and the streams whose
/// last frame came before this batch's end.
#[derive(Debug, Default)]
pub struct Batch {
    pub frames: Vec<Frame>,
    pub ended: Vec<u32>,
}

/// A stream's queue, by stream id.
pub type StreamInput = (u32, Receiver<Frame>);

/// The streams the batcher takes frames from, and the door for new ones.
struct Inputs {
    open: Vec<StreamInput>,
    joins: Option<Receiver<StreamInput>>,
    /// Where the next sweep starts, so no stream starves.
    next: usize,
}

impl Inputs {
    /// Lets in every stream waiting at the door.
    fn admit(&mut self) {
        while let Some(joins) = &self.joins {
            match joins.try_recv() {
                Ok(stream) => self.open.push(stream),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => self.joins = None,
            }
        }
    }

    fn finished(&self) -> bool {
        self.open.is_empty() && self.joins.is_none()
    }

    /// One sweep: at most one frame from each stream, starting after the one
    /// served last; streams that closed leave and are named in `batch.ended`.
    /// Whether it got a frame.
    fn sweep(&mut self, batch: &mut Batch, size: usize) -> bool {
        let n = self.open.len();
        let mut got_any = false;
        let mut closed = Vec::new();
        for k in 0..n {
            let i = (self.next + k) % n;
            match self.open[i].1.try_recv() {
                Ok(frame) => {
                    batch.frames.push(frame);
                    got_any = true;
                    if batch.frames.len() == size {
                        self.next = i + 1;
                        break;
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => closed.push(i),
            }
        }
        // Highest index first, so each removal leaves the others' indices valid
        // (the sweep visits them in rotated order, not sorted).
        closed.sort_unstable_by(|a, b| b.cmp(a));
        for i in closed {
            batch.ended.push(self.open.remove(i).0);
        }
        self.next %= self.open.len().max(1);
        got_any
    }

    /// Blocks until some stream has a frame or closed, or a stream joins; `false`
    /// if `deadline` passed first.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut select = Select::new();
        for (_, rx) in &self.open {
            select.recv(rx);
        }
        if let Some(joins) = &self.joins {
            select.recv(joins);
        }
        match deadline {
            None => {
                select.ready();
                true
            }
            Some(d) => select.ready_deadline(d).is_ok(),
        }
    }
}

/// Runs until every stream has closed and its frames are batched and `joins` has
/// closed, or `tx` hangs up.
pub fn run(
    streams: Vec<StreamInput>,
    joins: Receiver<StreamInput>,
    tx: Sender<Batch>,
    size: usize,
    timeout: Option<Duration>,
) {
    let mut inputs = Inputs {
        open: streams,
        joins: Some(joins),
        next: 0,
    };
    loop {
        let batch = fill(&mut inputs, size, timeout);
        if batch.frames.is_empty() && batch.ended.is_empty() {
            if inputs.finished() {
                return;
            }
            continue;
        }
        if tx.send(batch).is_err() {
            return;
        }
    }
}

/// One batch: full, or cut by the timeout, or ending streams' markers as soon as
/// nothing else is waiting (a removed stream's outputs are finalised promptly).
fn fill(inputs: &mut Inputs, size: usize, timeout: Option<Duration>) -> Batch {
    let mut batch = Batch {
        frames: Vec::with_capacity(size),
        ended: Vec::new(),
    };
    let mut deadline: Option<Instant> = None;
    while batch.frames.len() < size {
        inputs.admit();
        let got_any = inputs.sweep(&mut batch, size);
        if batch.frames.len() == size {
            break;
        }
        // With no stream open, nothing more can fill this batch: it goes now,
        // with the end markers. An empty one waits for a stream to join.
        if inputs.open.is_empty() {
            if !batch.frames.is_empty() || !batch.ended.is_empty() || inputs.joins.is_none() {
                break;
            }
            inputs.wait(None);
            continue;
        }
        if got_any {
            if deadline.is_none() {
                deadline = timeout.map(|t| Instant::now() + t);
            }
            continue;
        }
        if batch.frames.is_empty() && !batch.ended.is_empty() {
            break;
        }
        if !inputs.wait(if batch.frames.is_empty() {
            None
        } else {
            deadline
        }) {
            break; // the batch timeout ran out
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::colour::ColourSpace;
    use crossbeam_channel::bounded;

    fn frame(stream_id: u32, index: u64) -> Frame {
        let mut f = Frame::from_i420(stream_id, index, 2, 2, ColourSpace::default(), vec![0; 6]);
        f.pts_ns = Some(index * 100);
        f
    }

    #[test]
    fn batches_across_streams_round_robin_and_keeps_identity() {
        let (a_tx, a_rx) = bounded(8);
        let (b_tx, b_rx) = bounded(8);
        for i in 0..4 {
            a_tx.send(frame(0, i)).unwrap();
            b_tx.send(frame(1, i)).unwrap();
        }
        drop((a_tx, b_tx));
        let (tx, rx) = bounded(8);
        let (_joins_tx, joins) = bounded(1);
        drop(_joins_tx);
        run(vec![(0, a_rx), (1, b_rx)], joins, tx, 4, None);
        let batches: Vec<Vec<(u32, u64)>> = rx
            .iter()
            .filter(|b: &Batch| !b.frames.is_empty())
            .map(|b| b.frames.iter().map(|f| (f.stream_id, f.index)).collect())
            .collect();
        assert_eq!(
            batches,
            vec![
                vec![(0, 0), (1, 0), (0, 1), (1, 1)],
                vec![(0, 2), (1, 2), (0, 3), (1, 3)]
            ]
        );
    }

    /// Found by the fleet test: streams closing in one sweep that wrapped around
    /// (visited as 1, then 0) were removed by descending visit order, not index.
    #[test]
    fn streams_closing_in_one_wrapped_sweep_all_leave() {
        let (a_tx, a_rx) = bounded::<Frame>(1);
        let (b_tx, b_rx) = bounded::<Frame>(1);
        drop((a_tx, b_tx));
        let mut inputs = Inputs {
            open: vec![(0, a_rx), (1, b_rx)],
            joins: None,
            next: 1,
        };
        let mut batch = Batch {
            frames: Vec::new(),
            ended: Vec::new(),
        };
        assert!(!inputs.sweep(&mut batch, 4));
        let mut ended = batch.ended.clone();
        ended.sort_unstable();
        assert_eq!(ended, vec![0, 1]);
        assert!(inputs.finished());
    }

    #[test]
    fn timeout_flushes_a_partial_batch() {
        let (a_tx, a_rx) = bounded(8);
        let (tx, rx) = bounded(8);
        let (joins_tx, joins) = bounded(1);
        drop(joins_tx);
        let batcher = std::thread::spawn(move || {
            run(
                vec![(0, a_rx)],
                joins,
                tx,
                4,
                Some(Duration::from_millis(30)),
            )
        });
        a_tx.send(frame(0, 0)).unwrap();
        let started = Instant::now();
        let first = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("a partial batch after the timeout");
        assert_eq!(first.frames.len(), 1);
        assert!(
            started.elapsed() >= Duration::from_millis(25),
            "{:?}",
            started.elapsed()
        );
        drop(a_tx);
        batcher.join().unwrap();
        let rest: Vec<Batch> = rx.iter().collect();
        assert_eq!(rest.len(), 1, "one last batch: the end marker");
        assert_eq!((rest[0].frames.len(), rest[0].ended.clone()), (0, vec![0]));
    }

    #[test]
    fn without_timeout_waits_for_a_full_batch_then_flushes_the_rest_at_the_end() {
        let (a_tx, a_rx) = bounded(8);
        let (tx, rx) = bounded(8);
        let (joins_tx, joins) = bounded(1);
        drop(joins_tx);
        let batcher = std::thread::spawn(move || run(vec![(0, a_rx)], joins, tx, 3, None));
        for i in 0..2 {
            a_tx.send(frame(0, i)).unwrap();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "no partial batch while the file is open"
        );
        a_tx.send(frame(0, 2)).unwrap();
        a_tx.send(frame(0, 3)).unwrap();
        drop(a_tx);
        let sizes: Vec<(usize, Vec<u32>)> = rx.iter().map(|b| (b.frames.len(), b.ended)).collect();
        batcher.join().unwrap();
        assert_eq!(sizes, [(3, vec![]), (1, vec![0])]);
    }

    #[test]
    fn a_stream_joins_a_running_batcher_and_its_end_follows_its_last_frame() {
        let (joins_tx, joins) = bounded(1);
        let (tx, rx) = bounded(8);
        let batcher =
            std::thread::spawn(move || run(vec![], joins, tx, 2, Some(Duration::from_millis(10))));
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "idle: nothing to batch"
        );
        let (a_tx, a_rx) = bounded(8);
        joins_tx.send((7, a_rx)).unwrap();
        for i in 0..3 {
            a_tx.send(frame(7, i)).unwrap();
        }
        drop(a_tx);
        let mut seen = Vec::new();
        let mut ended_after = None;
        while ended_after.is_none() {
            let b = rx.recv_timeout(Duration::from_secs(2)).expect("a batch");
            seen.extend(b.frames.iter().map(|f| f.index));
            if b.ended.contains(&7) {
                ended_after = Some(seen.len());
            }
        }
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(
            ended_after,
            Some(3),
            "the end marker comes with or after the last frame"
        );
        drop(joins_tx);
        batcher.join().unwrap();
        assert!(rx.recv().is_err(), "the batcher ends once its door closes");
    }

    #[test]
    fn a_partial_batch_goes_when_its_last_stream_ends_though_the_door_stays_open() {
        let (joins_tx, joins) = bounded(1);
        let (a_tx, a_rx) = bounded(8);
        let (tx, rx) = bounded(8);
        let batcher = std::thread::spawn(move || run(vec![(0, a_rx)], joins, tx, 3, None));
        for i in 0..4 {
            a_tx.send(frame(0, i)).unwrap();
        }
        drop(a_tx);
        let first = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        let last = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("the partial batch, without waiting for the door to close");
        assert_eq!((first.frames.len(), last.frames.len()), (3, 1));
        assert_eq!(last.ended, [0]);
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "idle, not spinning out batches"
        );
        drop(joins_tx);
        batcher.join().unwrap();
    }
}
