//! The control pipe of a worker: the frames it sends the router outside any request
//! (`Ready` once its app is loaded, `Retire` when it reached `max_requests`).

use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use paddock_proto::Frame;
use tokio::net::unix::pipe;

use crate::frames::{FrameReader, ReadError};

/// A control pipe's first buffer: its frames (`Ready`, `Retire`) are a few bytes each.
const CONTROL_BUF: usize = 256;

/// Frames a worker sends on its control pipe (`Ready`, `Retire`).
pub struct Control {
    rx: Option<FrameReader<pipe::Receiver>>,
}

impl Control {
    pub(crate) fn new(fd: OwnedFd) -> std::io::Result<Control> {
        let rx = FrameReader::with_capacity(pipe::Receiver::from_owned_fd(fd)?, CONTROL_BUF);
        Ok(Control { rx: Some(rx) })
    }

    /// A control pipe for a worker that is no process (see [`Proc::in_process`]): what is
    /// written to the sender (encoded frames) is read as a worker process's pipe would be.
    pub fn pipe() -> std::io::Result<(Control, pipe::Sender)> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        Ok((Control::new(read)?, pipe::Sender::from_owned_fd(write)?))
    }

    /// Wait for the `Ready` frame; an error if the pipe closes (the worker died) first.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        match self.next().await {
            Some(Frame::Ready(_)) => Ok(()),
            Some(other) => Err(format!("unexpected control frame {:?}", other.frame_type())),
            None => Err("it closed its control pipe".to_string()),
        }
    }

    /// The next frame; `None` once the pipe is closed or broken (then it pends forever, so a
    /// `select!` on it waits for the other branches).
    pub async fn next(&mut self) -> Option<Frame> {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        match rx.next().await {
            Ok(Some(f)) => Some(f),
            Ok(None) | Err(ReadError::Broken) => {
                self.rx = None;
                None
            }
            Err(ReadError::Protocol(e)) => {
                tracing::warn!("bad frame on a worker's control pipe: {e}");
                self.rx = None;
                None
            }
        }
    }
}
