//! glommio ⇄ hyper glue: the socket adapter and the timer hyper's header-read
//! timeout needs.
//!
//! hyper 1.x brings its own IO traits (`hyper::rt::Read` / `Write`) instead of
//! tokio's, so a glommio `TcpStream` (futures-io `AsyncRead`/`AsyncWrite`)
//! needs a thin adapter. Two choices in it matter for throughput:
//!
//! - **Bulk reads** (once hyper offers 64 KiB or more: a body streaming in) go
//!   straight into hyper's uninitialised buffer: the adapter calls
//!   `recv(MSG_DONTWAIT)` on the socket's fd itself, up to
//!   [`READ_CHUNK_BYTES_MAX`] at once, and marks filled only what the kernel
//!   wrote. glommio's `poll_read` wants an initialised `&mut [u8]`, and zeroing
//!   the space first cost about as much as the kernel's own copy; it is called
//!   when the socket has nothing (with a small zeroed window), to register for
//!   readability, and for every smaller read (requests), where its wait for the
//!   reactor between reads keeps connections taking turns.
//!
//!   Fewer, larger reads matter on a PUT: each `recv` that frees receive window
//!   sends a window update, and on loopback the sender's next transmission runs
//!   inside that call. Server CPU per GB in 64 MiB PUTs at 8 connections
//!   (`tessera-bench -w put -s 64MiB -c 8`, interleaved A/B against 64 KiB reads
//!   zeroed first): 4% less at 128 KiB, 10% less at 256 KiB, throughput unchanged
//!   either way. 256 KiB cost 4 KiB GETs running beside uploads their tail (c8 GETs
//!   beside c4 64 MiB PUTs: p99 3.6-4.2 ms against 2.5-3.1, 5 rounds; letting the
//!   reactor turn after every read that emptied the socket did not help); at 128
//!   KiB it was 2.6 and 2.9 against 3.1 and 2.7. Hence 128 KiB.
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

/// Largest single read handed to the kernel (hyper's buffer offers up to ~400 KiB
/// once reads fill it; a new connection's starts at 8 KiB).
pub const READ_CHUNK_BYTES_MAX: usize = 128 * 1024;
/// Room in hyper's buffer from which a read goes straight to `recv` (hyper grows its
/// buffer once reads fill it: a body streaming in). Below it, glommio reads.
const DIRECT_READ_MIN_BYTES: usize = 64 * 1024;
/// The zeroed window handed to glommio's `poll_read` when the socket had nothing:
/// it only registers for readability, or takes what arrived in between.
const READ_WAIT_WINDOW_BYTES: usize = 4096;
/// Slices passed to one `sendmsg` (Linux's IOV_MAX is 1024; hyper queues at
/// most 64).
const IOV_COUNT_MAX: usize = 1024;

/// A glommio TCP stream as hyper sees it.
#[derive(Debug)]
pub struct HyperIo {
    /// glommio's unbuffered stream (`TcpStream<NonBuffered>`, the default): bulk
    /// reads `recv` on its fd directly, which is only right while glommio keeps no
    /// received bytes of its own. A buffered stream (`.buffered()`) would compile
    /// and reorder the body.
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
        // glommio's read timer is reset only by its own reads; the direct reads would
        // leave it armed, so a later wait could fail spuriously. Idle connections are
        // bounded by hyper's header-read timeout instead.
        debug_assert!(stream.read_timeout().is_none(), "HyperIo needs a stream without glommio's read timeout");
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
        if len < DIRECT_READ_MIN_BYTES {
            // Requests and small bodies: glommio's read, which after a short read waits
            // for the reactor's readiness poll before reading again. That wait is what
            // takes turns between connections: reading straight on whenever bytes are
            // there, 4 KiB GETs at 32 connections lost 15% of their requests/s and
            // their p99 went from 1.2 to 6 ms (interleaved A/B).
            #[cfg(test)]
            tests::count(|c| c.small += 1);
            return self.glommio_read(cx, buf, len);
        }
        let fd = self.stream.as_raw_fd();
        loop {
            // SAFETY: `fd` is owned by `self.stream` and open for the whole call.
            // `recv` writes at most `len` bytes into the cursor's spare capacity,
            // which holds at least `len` (`remaining`), and only the `n` bytes it
            // reports written are marked filled: no uninitialised byte is exposed.
            let n = unsafe {
                let dst = buf.as_mut();
                libc::recv(fd, dst.as_mut_ptr().cast::<libc::c_void>(), len, libc::MSG_DONTWAIT)
            };
            if n >= 0 {
                // SAFETY: the kernel wrote these `n` bytes (see above).
                unsafe { buf.advance(n as usize) };
                #[cfg(test)]
                tests::count(|c| c.direct += 1);
                return Poll::Ready(Ok(()));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                _ => return Poll::Ready(Err(e)),
            }
        }
        // Nothing to read: glommio registers this task for readability (and takes
        // whatever arrived since, into a small zeroed window).
        #[cfg(test)]
        tests::count(|c| c.waits += 1);
        self.glommio_read(cx, buf, len.min(READ_WAIT_WINDOW_BYTES))
    }
}

impl HyperIo {
    /// glommio's read into the first `window` bytes of the cursor, zeroed first
    /// (glommio wants an initialised slice). Waits for readability when there is
    /// nothing to read.
    fn glommio_read(
        &mut self,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
        window: usize,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled_to(window);
        let n = ready!(Pin::new(&mut self.stream).poll_read(cx, dst))?;
        // SAFETY: the first `window >= n` bytes were initialised just above, and
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
    use hyper::rt::Read as _;
    use hyper::rt::Timer as _;
    use std::io::Write as _;
    use std::mem::MaybeUninit;

    /// Which way `poll_read` went, per thread (each test runs its own executor thread).
    #[derive(Default, Clone, Copy, Debug)]
    pub(super) struct Paths {
        pub direct: usize,
        pub waits: usize,
        pub small: usize,
    }
    thread_local! {
        static PATHS: std::cell::Cell<Paths> = std::cell::Cell::new(Paths::default());
    }
    pub(super) fn count(f: impl FnOnce(&mut Paths)) {
        PATHS.with(|p| {
            let mut v = p.get();
            f(&mut v);
            p.set(v);
        });
    }
    fn paths() -> Paths {
        PATHS.with(|p| p.get())
    }

    /// Sends `data` in bursts ending at `marks`, each only once the reader reports it
    /// took the previous one whole (and after a pause, so the reader meets an empty
    /// socket first); reads with buffers of `room(i)` bytes for the i-th read. Returns
    /// what was read and the largest single read.
    async fn bursts(data: Vec<u8>, marks: Vec<usize>, room: impl Fn(usize) -> usize) -> (Vec<u8>, usize) {
        let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (taken_tx, taken_rx) = std::sync::mpsc::channel::<usize>();
        let (sent, ends) = (data.clone(), marks.clone());
        let writer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            for w in ends.windows(2) {
                std::thread::sleep(Duration::from_millis(2));
                s.write_all(&sent[w[0]..w[1]]).expect("write");
                assert_eq!(taken_rx.recv().expect("reader goes on"), w[1]);
            }
        });
        let stream = listener.accept().await.expect("accept");
        let mut io = HyperIo::new(stream, Duration::from_secs(10));
        let mut storage = vec![MaybeUninit::<u8>::uninit(); 1 << 20];
        let (mut got, mut largest, mut next, mut i) = (Vec::new(), 0, 1, 0);
        let read_all = async {
            loop {
                let mut rb = hyper::rt::ReadBuf::uninit(&mut storage[..room(i)]);
                futures_lite::future::poll_fn(|cx| Pin::new(&mut io).poll_read(cx, rb.unfilled())).await.expect("read");
                i += 1;
                let filled = rb.filled();
                if filled.is_empty() {
                    break;
                }
                largest = largest.max(filled.len());
                got.extend_from_slice(filled);
                if next < marks.len() && got.len() == marks[next] {
                    taken_tx.send(got.len()).expect("writer waits");
                    next += 1;
                }
            }
        };
        // A wait that never wakes fails here instead of hanging the test.
        glommio::timer::timeout(Duration::from_secs(20), async {
            read_all.await;
            Ok(())
        })
        .await
        .expect("reads end");
        // (Dropped first, so a writer still waiting for a burst's turn fails.)
        drop(taken_tx);
        writer.join().expect("writer");
        assert_eq!(next, marks.len(), "every burst taken whole");
        (got, largest)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    /// Burst ends of irregular size up to `len`.
    fn marks(len: usize) -> Vec<usize> {
        let (mut m, mut n) = (vec![0usize], 1usize);
        while *m.last().expect("non-empty") < len {
            m.push((m.last().expect("non-empty") + n).min(len));
            n = n * 5 % 900_001 + 1;
        }
        m
    }

    #[test]
    fn bulk_reads_deliver_every_byte_in_order_across_empty_socket_waits() {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        ex.run(async {
            let data = pattern(3 << 20);
            // More room than one read may take, as hyper offers once reads fill its buffer.
            let (got, largest) = bursts(data.clone(), marks(data.len()), |_| READ_CHUNK_BYTES_MAX + (144 << 10)).await;
            assert_eq!(got.len(), data.len());
            assert!(got == data, "bytes differ");
            assert!(largest <= READ_CHUNK_BYTES_MAX, "one read takes at most the chunk limit: {largest}");
            let p = paths();
            assert!(p.direct > 0 && p.waits > 0, "went straight to recv and waited through glommio: {p:?}");
        });
    }

    #[test]
    fn a_connection_moves_between_small_and_bulk_reads_without_losing_order() {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        ex.run(async {
            let data = pattern(2 << 20);
            // Small buffers, then bulk ones, then small again: as hyper's buffer grows
            // for a body and shrinks for the requests after it.
            let room = |i: usize| match i % 30 {
                0..=9 => 5 + i % 4000,
                10..=19 => DIRECT_READ_MIN_BYTES + (i * 7919) % (400 << 10),
                _ => DIRECT_READ_MIN_BYTES - 1,
            };
            let (got, _) = bursts(data.clone(), marks(data.len()), room).await;
            assert!(got == data, "bytes differ");
            let p = paths();
            assert!(p.direct > 0 && p.waits > 0 && p.small > 0, "every path taken: {p:?}");
        });
    }

    #[test]
    fn a_read_into_a_small_buffer_takes_only_what_fits() {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        ex.run(async {
            let data = b"0123456789abcdef".to_vec();
            let (got, largest) = bursts(data.clone(), vec![0, data.len()], |_| 5).await;
            assert_eq!(got, data);
            // 16 bytes, five at a time: at least 4 reads.
            assert!(largest <= 5, "a read took {largest} bytes into 5 of room");
        });
    }

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
