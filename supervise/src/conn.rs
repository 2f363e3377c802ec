//! A connection to one of a pool's workers, kept open between requests.
//!
//! Each open connection occupies one worker thread for as long as it is open, idle or not, so
//! a pool never has more open connections than it has threads (processes × threads): a new
//! connection beyond that would wait in the socket's backlog for a thread that an idle
//! connection holds. [`OpenSlot`] counts them; the pool closes an idle one to make room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::UnixStream;

use crate::frames::FrameReader;

/// One open connection of a pool; dropping it gives the slot back.
#[derive(Debug)]
pub struct OpenSlot(Arc<AtomicUsize>);

impl OpenSlot {
    /// Count one more open connection in `open`.
    pub fn take(open: &Arc<AtomicUsize>) -> OpenSlot {
        open.fetch_add(1, Ordering::AcqRel);
        OpenSlot(Arc::clone(open))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open, idle-or-busy connection to a known worker process.
pub struct WorkerConn {
    pub reader: FrameReader<UnixStream>,
    /// The process on the other end (from its `Hello`).
    pub pid: u32,
    pub slot: OpenSlot,
}

impl WorkerConn {
    /// Whether an idle connection can carry a request: nothing came from the worker since its
    /// last response (a `Goodbye`, or the end of stream of a process that died). Uses the
    /// readiness the reactor already knows, so it costs no system call.
    pub fn is_quiet(&self) -> bool {
        if self.reader.buffered() > 0 {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(
            self.reader.get_ref().try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}
