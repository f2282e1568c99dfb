//! glommio ⇄ hyper glue: the socket adapter and the timer hyper's header-read
//! timeout needs.
//!
//! hyper 1.x brings its own IO traits (`hyper::rt::Read` / `Write`) instead of
//! tokio's, so a glommio `TcpStream` (futures-io `AsyncRead`/`AsyncWrite`)
//! needs a thin adapter. Two choices in it matter for throughput:
//!
//! - **Reads** go into hyper's uninitialised buffer. futures-io wants `&mut [u8]`,
//!   so the part handed to the kernel is zeroed first (hyper's
//!   `initialize_unfilled_to`, no `unsafe` reinterpretation of uninitialised
//!   memory). Zeroing costs about as much as the kernel's own copy, so one read
//!   is capped at [`READ_CHUNK_BYTES_MAX`]: enough to amortise the syscall,
//!   small enough that we never zero hundreds of KiB to receive a 200-byte
//!   request.
//! - **Writes** are vectored: hyper then queues response body chunks (`Bytes`)
//!   behind the head and hands them to one `writev(2)` instead of copying them
//!   into its flat buffer first. glommio's stream has no vectored write, so the
//!   adapter calls `sendmsg(MSG_DONTWAIT)` on the socket's fd itself and only
//!   falls back to glommio's `poll_write`, which registers for writability,
//!   when the kernel buffer is full. (glommio's sockets are *blocking*; it
//!   passes `MSG_DONTWAIT` on every call, and so must we.)
//!
//! The timer: hyper's `Sleep` must be `Send + Sync` because hyper is written
//! for work-stealing runtimes; glommio's `Timer` is neither (it holds an `Rc`
//! into the per-core reactor). On a thread-per-core server the connection
//! future, and hence every `Sleep` hyper creates for it, never leaves the
//! core, so [`GlommioSleep`] asserts Send/Sync and checks the thread at every
//! use that touches the reactor, which makes the assertion sound rather than
//! merely true in practice.
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Largest single read handed to the kernel (and zeroed beforehand). 64 KiB
/// keeps a large PUT at a few syscalls per MiB while the zeroing stays in L2.
pub const READ_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Slices passed to one `sendmsg` (Linux's IOV_MAX is 1024; hyper queues at
/// most 64).
const IOV_COUNT_MAX: usize = 1024;

/// A glommio TCP stream as hyper sees it.
#[derive(Debug)]
pub struct HyperIo {
    stream: TcpStream,
    /// A write that makes no progress for this long fails with `TimedOut`.
    write_stall_timeout: Duration,
    /// Armed while a write is blocked on a full kernel buffer, dropped on any
    /// progress. Ours rather than glommio's `set_write_timeout`, whose timer is
    /// only reset by its own send path and would fire spuriously after
    /// progress made through `try_send_vectored`.
    write_stall: Option<glommio::timer::Timer>,
}

impl HyperIo {
    /// Must be called on the executor that will poll it.
    pub fn new(stream: TcpStream, write_stall_timeout: Duration) -> Self {
        Self { stream, write_stall_timeout, write_stall: None }
    }

    /// Applies the write-stall limit to the outcome of one write attempt.
    fn watch_write(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(result) = attempt {
            self.write_stall = None;
            return Poll::Ready(result);
        }
        let timeout = self.write_stall_timeout;
        let timer = self.write_stall.get_or_insert_with(|| glommio::timer::Timer::new(timeout));
        if Pin::new(timer).poll(cx).is_ready() {
            self.write_stall = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }

    /// A vectored, non-blocking send on the socket, bypassing glommio (which
    /// has no vectored write). `Ok(None)` means the kernel buffer is full.
    ///
    /// glommio leaves its sockets in blocking mode and passes `MSG_DONTWAIT`
    /// per call, so this must do the same: `sendmsg` with `MSG_DONTWAIT`, not
    /// `writev`, which would block the whole core on a slow client.
    fn try_send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        let fd = self.stream.as_raw_fd();
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only
        // reads through the pointer.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(IOV_COUNT_MAX) as _;
        loop {
            // SAFETY: `fd` is owned by `self.stream` and open for the whole
            // call; `msg` points at `bufs`, which outlives the call.
            let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if sent >= 0 {
                return Ok(Some(sent as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let len = buf.remaining().min(READ_CHUNK_BYTES_MAX);
        let dst = buf.initialize_unfilled_to(len);
        let n = ready!(Pin::new(&mut self.stream).poll_read(cx, dst))?;
        // SAFETY: the first `len >= n` bytes were initialised just above, and
        // the read wrote `n` of them.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let attempt = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch_write(cx, attempt)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let attempt = match self.try_send_vectored(bufs) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(e)),
            Ok(None) => {
                // Kernel buffer full: glommio's poll_write retries the send once
                // and then registers this task for writability, so no wake-up
                // is lost between our EAGAIN and the registration.
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
                Pin::new(&mut self.stream).poll_write(cx, first)
            }
        };
        self.watch_write(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // glommio writes straight to the socket; nothing is buffered here.
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// hyper's timer on glommio's per-core timer wheel.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioTimer;

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(GlommioSleep::new(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(GlommioSleep::new(deadline))
    }
}

/// One hyper sleep. The glommio timer is created on first poll only: hyper
/// creates a header-read sleep for every request, but most heads arrive
/// before it is ever polled.
pub struct GlommioSleep {
    deadline: Instant,
    owner: ThreadId,
    timer: Option<glommio::timer::Timer>,
}

// SAFETY: the only non-Send/Sync part is the glommio `Timer` (an `Rc` into
// this core's reactor). It is created, polled and dropped only on `owner`:
// `poll` asserts the thread before touching it and `drop` leaks it rather than
// touch it from another thread. No `&self` method reaches it, so sharing
// `&GlommioSleep` across threads cannot reach it either.
unsafe impl Send for GlommioSleep {}
unsafe impl Sync for GlommioSleep {}

impl GlommioSleep {
    fn new(deadline: Instant) -> Self {
        Self { deadline, owner: thread::current().id(), timer: None }
    }
}

impl Future for GlommioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A programmer error (a connection future moved between cores), not
        // something a client can cause.
        assert_eq!(thread::current().id(), self.owner, "hyper sleep polled off its core");
        let now = Instant::now();
        if now >= self.deadline {
            self.timer = None;
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let timer = self.timer.get_or_insert_with(|| glommio::timer::Timer::new(deadline - now));
        Pin::new(timer).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for GlommioSleep {}

impl Drop for GlommioSleep {
    fn drop(&mut self) {
        if thread::current().id() != self.owner {
            // Leak rather than touch another core's reactor state.
            if let Some(timer) = self.timer.take() {
                std::mem::forget(timer);
            }
        }
    }
}

impl std::fmt::Debug for GlommioSleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlommioSleep").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    #[test]
    fn sleep_fires_at_deadline_and_not_before() {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        ex.run(async {
            let t0 = Instant::now();
            GlommioTimer.sleep(Duration::from_millis(30)).await;
            assert!(t0.elapsed() >= Duration::from_millis(30));
            // A deadline already in the past is ready at once.
            GlommioTimer.sleep_until(t0).await;
            // Dropping an armed sleep removes its timer; nothing fires later.
            let mut s = GlommioTimer.sleep(Duration::from_secs(60));
            let waker = futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let mut cx = Context::from_waker(&waker);
            assert!(s.as_mut().poll(&mut cx).is_pending());
            drop(s);
        });
    }

    #[test]
    fn sleep_dropped_on_another_thread_leaks_instead_of_touching_the_reactor() {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        // Returned in an Option: an async block yielding a bare future is what
        // clippy's async_yields_async flags, and here that is the point.
        let s = ex.run(async {
            let mut s = GlommioSleep::new(Instant::now() + Duration::from_secs(60));
            let waker = futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let mut cx = Context::from_waker(&waker);
            assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
            Some(s)
        });
        std::thread::spawn(move || drop(s)).join().expect("foreign drop does not panic");
    }
}
