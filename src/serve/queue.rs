//! One worker per repository: at most one cycle running and one queued; further
//! triggers coalesce into the queued one.

use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    queued: bool,
    running: bool,
    closed: bool,
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A cycle will run after the current one (or now, if none runs).
    Queued,
    /// A cycle was already queued; this trigger joined it.
    Coalesced,
    /// The server is shutting down.
    Closed,
}

impl Queue {
    pub fn trigger(&self) -> Enqueued {
        let mut s = self.state.lock().unwrap();
        if s.closed {
            return Enqueued::Closed;
        }
        if s.queued {
            return Enqueued::Coalesced;
        }
        s.queued = true;
        drop(s);
        self.wake.notify_one();
        Enqueued::Queued
    }

    /// Waits for the next queued cycle; `false` once the queue is closed.
    pub async fn next(&self) -> bool {
        loop {
            {
                let mut s = self.state.lock().unwrap();
                if s.closed {
                    return false;
                }
                if s.queued {
                    s.queued = false;
                    s.running = true;
                    return true;
                }
            }
            self.wake.notified().await;
        }
    }

    pub fn done(&self) {
        self.state.lock().unwrap().running = false;
    }

    /// Cycles waiting or running.
    pub fn depth(&self) -> u64 {
        let s = self.state.lock().unwrap();
        s.queued as u64 + s.running as u64
    }

    /// Takes no more triggers and drops the queued cycle, if any; `true` when one was
    /// dropped. A running cycle is left to finish.
    pub fn close(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        s.closed = true;
        let dropped = std::mem::take(&mut s.queued);
        drop(s);
        self.wake.notify_one();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_coalesce_behind_one_queued_cycle() {
        let q = Queue::default();
        assert_eq!(q.trigger(), Enqueued::Queued);
        assert_eq!(q.trigger(), Enqueued::Coalesced);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(rt.block_on(q.next()));
        assert_eq!(q.depth(), 1);
        assert_eq!(q.trigger(), Enqueued::Queued);
        assert_eq!(q.trigger(), Enqueued::Coalesced);
        assert_eq!(q.depth(), 2);
        // Closing drops the queued cycle: only the running one is left to wait for.
        assert!(q.close());
        assert_eq!(q.depth(), 1);
        q.done();
        assert_eq!(q.depth(), 0);
        assert_eq!(q.trigger(), Enqueued::Closed);
        assert!(!rt.block_on(q.next()));
    }
}
