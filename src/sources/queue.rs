//! The queue between a source and the batcher, with the full-policy explicit: a
//! file's queue blocks (the file waits, nothing is lost); a live source's queue
//! drops its oldest frame to make room (latency never builds up), and counts it.

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::frame::Frame;
use crate::telemetry::StreamMetrics;

/// The sending side of a stream's queue.
pub struct StreamQueue {
    tx: Sender<Frame>,
    /// For live streams: a receiver used only to drop the oldest frame.
    oldest: Option<Receiver<Frame>>,
    metrics: StreamMetrics,
}

/// The batcher hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl StreamQueue {
    /// A queue of `capacity` frames; `live` picks drop-oldest over blocking.
    pub fn new(capacity: usize, live: bool, metrics: StreamMetrics) -> (Self, Receiver<Frame>) {
        let (tx, rx) = bounded(capacity.max(1));
        let oldest = live.then(|| rx.clone());
        (
            Self {
                tx,
                oldest,
                metrics,
            },
            rx,
        )
    }

    /// Queues a frame under the queue's policy.
    pub fn push(&self, frame: Frame) -> Result<(), Closed> {
        self.metrics.received.inc();
        let result = self.push_inner(frame);
        self.metrics.queue_depth.set(self.tx.len() as i64);
        result
    }

    fn push_inner(&self, frame: Frame) -> Result<(), Closed> {
        let Some(oldest) = &self.oldest else {
            return self.tx.send(frame).map_err(|_| Closed);
        };
        let mut frame = frame;
        loop {
            match self.tx.try_send(frame) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(Closed),
                Err(TrySendError::Full(back)) => {
                    frame = back;
                    if oldest.try_recv().is_ok() {
                        self.metrics.dropped.inc();
                    }
                }
            }
        }
    }

    /// Switches to blocking (`live` false) once a source turns out not to be live.
    /// A queue made blocking cannot become live again.
    pub fn set_live(&mut self, live: bool) {
        if !live {
            // Without the spare receiver a blocked send fails as soon as the
            // batcher hangs up, instead of waiting forever.
            self.oldest = None;
        }
    }

    /// The stream's metric handles.
    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::colour::ColourSpace;

    fn frame(index: u64) -> Frame {
        Frame::from_i420(0, index, 2, 2, ColourSpace::default(), vec![0; 6])
    }

    #[test]
    fn live_queue_drops_oldest_and_counts() {
        let metrics = StreamMetrics::default();
        let (q, rx) = StreamQueue::new(2, true, metrics.clone());
        for i in 0..5 {
            q.push(frame(i)).unwrap();
        }
        let kept: Vec<u64> = rx.try_iter().map(|f| f.index).collect();
        assert_eq!(kept, [3, 4], "the newest frames survive");
        assert_eq!(metrics.dropped.get(), 3);
        assert_eq!(metrics.received.get(), 5);
    }

    #[test]
    fn file_queue_blocks_instead_of_dropping() {
        let metrics = StreamMetrics::default();
        let (q, rx) = StreamQueue::new(1, false, metrics.clone());
        let producer = std::thread::spawn(move || {
            for i in 0..20 {
                q.push(frame(i)).unwrap();
            }
        });
        let got: Vec<u64> = rx.iter().map(|f| f.index).collect();
        producer.join().unwrap();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!(metrics.dropped.get(), 0);
    }
}
