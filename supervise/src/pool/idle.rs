//! The pool's idle connection cache: keep-alive connections to its ready workers, waiting for
//! their next request. Most recently used last, so the next request takes the warmest one and
//! room is made by closing the coldest. It only holds connections: the pool decides, under its
//! lock, which may enter (their process must be ready) and closes the ones it takes out after
//! releasing the lock.

use crate::conn::WorkerConn;

#[derive(Default)]
pub(super) struct IdleConns {
    conns: Vec<WorkerConn>,
}

impl IdleConns {
    /// The most recently used connection.
    pub(super) fn take_newest(&mut self) -> Option<WorkerConn> {
        self.conns.pop()
    }

    /// The least recently used connection: its worker thread has waited longest.
    pub(super) fn take_oldest(&mut self) -> Option<WorkerConn> {
        (!self.conns.is_empty()).then(|| self.conns.remove(0))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(super) fn put(&mut self, conn: WorkerConn) {
        self.conns.push(conn);
    }

    /// Every connection to process `pid` (it is going away).
    pub(super) fn take_of(&mut self, pid: u32) -> Vec<WorkerConn> {
        let (gone, kept) = std::mem::take(&mut self.conns).into_iter().partition(|c| c.pid == pid);
        self.conns = kept;
        gone
    }

    /// Every connection (the pool is stopping).
    pub(super) fn take_all(&mut self) -> Vec<WorkerConn> {
        std::mem::take(&mut self.conns)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::conn::OpenSlot;
    use crate::frames::FrameReader;

    fn conn(pid: u32, open: &Arc<AtomicUsize>) -> WorkerConn {
        let (a, _b) = tokio::net::UnixStream::pair().expect("socketpair");
        WorkerConn { reader: FrameReader::new(a), pid, slot: OpenSlot::take(open) }
    }

    #[tokio::test]
    async fn newest_first_oldest_for_room_and_by_process() {
        let open = Arc::new(AtomicUsize::new(0));
        let mut idle = IdleConns::default();
        for pid in [1, 2, 1, 3] {
            idle.put(conn(pid, &open));
        }
        assert_eq!(idle.take_newest().map(|c| c.pid), Some(3));
        assert_eq!(idle.take_oldest().map(|c| c.pid), Some(1));
        assert_eq!(open.load(Ordering::Acquire), 2, "taken connections close when dropped");
        let gone = idle.take_of(1);
        assert_eq!(gone.iter().map(|c| c.pid).collect::<Vec<_>>(), [1]);
        assert_eq!(idle.take_all().iter().map(|c| c.pid).collect::<Vec<_>>(), [2]);
        assert!(idle.take_newest().is_none() && idle.take_oldest().is_none());
    }
}
