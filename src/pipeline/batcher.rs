//! The batcher: forms batches for the one inference session from whatever frames
//! the streams have ready, round-robin so no stream starves, up to the batch size,
//! or fewer when the batch timeout runs out (like DeepStream's
//! batched-push-timeout, counted from the batch's first frame). Without a timeout
//! it waits for a full batch, which is right when every input is a file. Every
//! frame keeps its stream id, index and pts.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::Frame;

/// Runs until every stream has closed and its frames are batched, or `tx` hangs up.
pub fn run(
    streams: Vec<Receiver<Frame>>,
    tx: Sender<Vec<Frame>>,
    size: usize,
    timeout: Option<Duration>,
) {
    let mut open: Vec<Option<Receiver<Frame>>> = streams.into_iter().map(Some).collect();
    let n = open.len();
    let mut next = 0usize;
    loop {
        let mut batch: Vec<Frame> = Vec::with_capacity(size);
        let mut deadline: Option<Instant> = None;
        while batch.len() < size {
            // One sweep: at most one frame from each stream, starting after the one
            // served last.
            let mut got_any = false;
            for k in 0..n {
                let i = (next + k) % n;
                let Some(rx) = &open[i] else { continue };
                match rx.try_recv() {
                    Ok(frame) => {
                        batch.push(frame);
                        got_any = true;
                        if batch.len() == size {
                            next = i + 1;
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => open[i] = None,
                }
            }
            if batch.len() == size || open.iter().all(Option::is_none) {
                break;
            }
            if got_any {
                if deadline.is_none() {
                    deadline = timeout.map(|t| Instant::now() + t);
                }
                continue;
            }
            if !wait_for_any(&open, if batch.is_empty() { None } else { deadline }) {
                break; // the batch timeout ran out
            }
        }
        next %= n.max(1);
        if batch.is_empty() {
            return;
        }
        if tx.send(batch).is_err() {
            return;
        }
    }
}

/// Blocks until some open stream has a frame or closed; `false` if `deadline`
/// passed first.
fn wait_for_any(open: &[Option<Receiver<Frame>>], deadline: Option<Instant>) -> bool {
    let mut select = Select::new();
    for rx in open.iter().flatten() {
        select.recv(rx);
    }
    match deadline {
        None => {
            select.ready();
            true
        }
        Some(d) => select.ready_deadline(d).is_ok(),
    }
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
        run(vec![a_rx, b_rx], tx, 4, None);
        let batches: Vec<Vec<(u32, u64)>> = rx
            .iter()
            .map(|b| b.iter().map(|f| (f.stream_id, f.index)).collect())
            .collect();
        assert_eq!(
            batches,
            vec![
                vec![(0, 0), (1, 0), (0, 1), (1, 1)],
                vec![(0, 2), (1, 2), (0, 3), (1, 3)]
            ]
        );
    }

    #[test]
    fn timeout_flushes_a_partial_batch() {
        let (a_tx, a_rx) = bounded(8);
        let (tx, rx) = bounded(8);
        let batcher =
            std::thread::spawn(move || run(vec![a_rx], tx, 4, Some(Duration::from_millis(30))));
        a_tx.send(frame(0, 0)).unwrap();
        let started = Instant::now();
        let first = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("a partial batch after the timeout");
        assert_eq!(first.len(), 1);
        assert!(
            started.elapsed() >= Duration::from_millis(25),
            "{:?}",
            started.elapsed()
        );
        drop(a_tx);
        batcher.join().unwrap();
        assert!(
            rx.recv().is_err(),
            "no more batches after the streams close"
        );
    }

    #[test]
    fn without_timeout_waits_for_a_full_batch_then_flushes_the_rest_at_the_end() {
        let (a_tx, a_rx) = bounded(8);
        let (tx, rx) = bounded(8);
        let batcher = std::thread::spawn(move || run(vec![a_rx], tx, 3, None));
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
        let sizes: Vec<usize> = rx.iter().map(|b| b.len()).collect();
        batcher.join().unwrap();
        assert_eq!(sizes, [3, 1]);
    }
}
