//! Limits on client connections: a cap on open connections taken before `accept`
//! ([`ConnLimit`]) and a send timeout on every accepted stream ([`ClientIo`]).
//!
//! The cap is a semaphore with one permit per connection, taken before `accept` and moved
//! into the connection's task (as mini-redis does): at the cap the listener stops accepting,
//! so new clients wait in the kernel's backlog instead of being refused, and the router never
//! runs out of file descriptors.
//!
//! A client that stops reading fills its socket's send buffer, and from then on every write
//! to it is pending; without a bound the response (and the pool slot behind it) waits for as
//! long as the client likes. [`ClientIo`] arms a timer when a write or flush makes no
//! progress and disarms it on the next one that does: after `send_timeout` without progress
//! the write fails, hyper ends the connection, and dropping the response body frees the slot
//! and tells the worker to stop. Idle keep-alive connections are not affected: the timer only
//! runs while there is something to send.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The cap on open client connections (`max_connections`), resizable on reload.
pub struct ConnLimit {
    sem: Arc<Semaphore>,
    size: Mutex<usize>,
    /// `paddock_connections_open`.
    open: IntGauge,
    /// `paddock_connections_capped_total`.
    capped: IntCounter,
}

/// One open connection's share of the cap; dropping it lets the next client in.
pub struct ConnPermit {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl ConnLimit {
    pub fn new(size: usize, open: IntGauge, capped: IntCounter) -> Self {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        ConnLimit { sem: Arc::new(Semaphore::new(size)), size: Mutex::new(size), open, capped }
    }

    /// Wait for room for one more connection. Each time the cap is found reached counts
    /// once in `paddock_connections_capped_total`.
    pub async fn acquire(&self) -> ConnPermit {
        let permit = match self.sem.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => {
                self.capped.inc();
                tracing::debug!("max_connections reached: not accepting until one closes");
                self.sem.clone().acquire_owned().await
            }
        };
        let Ok(permit) = permit else {
            // The semaphore is never closed; should it be, accept nothing more.
            return std::future::pending().await;
        };
        self.open.inc();
        ConnPermit { _permit: permit, open: self.open.clone() }
    }

    /// Change the cap. Growing takes effect at once; shrinking forgets free permits now and
    /// the rest as open connections close (new clients wait until the count is under it).
    pub fn resize(&self, new: usize) {
        let new = new.clamp(1, Semaphore::MAX_PERMITS);
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        if new > *size {
            self.sem.add_permits(new - *size);
        } else if new < *size {
            let k = *size - new;
            let missing = k - self.sem.forget_permits(k);
            if missing > 0 {
                let sem = self.sem.clone();
                let n = u32::try_from(missing).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(n).await {
                        p.forget();
                    }
                });
            }
        }
        *size = new;
    }

    /// Connections that may open now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// An accepted client stream whose writes fail after `send_timeout` without progress.
pub struct ClientIo<S> {
    inner: S,
    send_timeout: Duration,
    /// Allocated at the first stall, then reset for each later one.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    timed_out: bool,
    /// `paddock_client_timeouts_total{kind="send"}`.
    timeouts: IntCounter,
}

impl<S> ClientIo<S> {
    pub fn new(inner: S, send_timeout: Duration, timeouts: IntCounter) -> Self {
        ClientIo { inner, send_timeout, timer: None, armed: false, timed_out: false, timeouts }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The write made progress (or failed on its own): the next stall starts a new count.
    fn progress<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.armed = false;
        Poll::Ready(r)
    }

    /// The write is pending: start the timer if it is not running, and fail once it fires.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = Instant::now() + self.send_timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.timed_out {
            self.timed_out = true;
            self.timeouts.inc();
        }
        Poll::Ready(Err(self.timeout_error()))
    }

    fn timeout_error(&self) -> io::Error {
        let t = self.send_timeout;
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client took nothing for {t:?} (send_timeout)"),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timeout_error()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => self.progress(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timeout_error()));
        }
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.progress(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => self.progress(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").expect("counter")
    }

    #[tokio::test]
    async fn the_cap_holds_the_next_connection_and_resizes() {
        let open = IntGauge::new("o", "o").expect("gauge");
        let capped = counter();
        let limit = ConnLimit::new(2, open.clone(), capped.clone());
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        assert_eq!(open.get(), 2);
        let wait = Duration::from_millis(50);
        assert!(tokio::time::timeout(wait, limit.acquire()).await.is_err(), "third waits");
        assert_eq!(capped.get(), 1);
        drop(a);
        let c = tokio::time::timeout(wait, limit.acquire()).await.expect("room again");
        limit.resize(3);
        let d = tokio::time::timeout(wait, limit.acquire()).await.expect("grown");
        assert_eq!(open.get(), 3);
        // Shrink below what is open: nobody new until two have closed.
        limit.resize(1);
        drop(b);
        drop(c);
        tokio::task::yield_now().await;
        assert!(tokio::time::timeout(wait, limit.acquire()).await.is_err(), "still at 1");
        drop(d);
        let e = tokio::time::timeout(wait, limit.acquire()).await.expect("under the cap");
        assert_eq!((open.get(), limit.available()), (1, 0));
        drop(e);
    }

    #[tokio::test]
    async fn a_reader_that_stops_gets_a_timeout_once() {
        let (a, mut b) = tokio::io::duplex(1024);
        let c = counter();
        let mut io = ClientIo::new(a, Duration::from_millis(200), c.clone());
        io.write_all(&[1; 1024]).await.expect("fits the buffer");
        let started = Instant::now();
        let e = io.write_all(&[2; 10]).await.expect_err("nobody reads");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(io.write(&[3]).await.is_err(), "stays failed");
        assert_eq!(c.get(), 1);
        let mut got = vec![0; 1024];
        b.read_exact(&mut got).await.expect("the first bytes arrived");
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (a, mut b) = tokio::io::duplex(64);
        let c = counter();
        let mut io = ClientIo::new(a, Duration::from_millis(300), c.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 64 * 20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += b.read(&mut buf).await.expect("read");
            }
            total
        });
        // A second in all, well past the timeout, but never 300 ms without progress.
        io.write_all(&[7; 64 * 20]).await.expect("progress every 50 ms");
        assert_eq!(reader.await.expect("reader"), 64 * 20);
        assert_eq!(c.get(), 0);
    }
}
