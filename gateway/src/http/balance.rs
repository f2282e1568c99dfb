//! Spreading connections over the cores by how many each has open.
//!
//! Every serving core listens on the port (`SO_REUSEPORT`), and the kernel picks
//! the listener from a hash of the connection's addresses: a coin toss per
//! connection. For the few long keep-alive connections of a benchmark or a CDN's
//! origin pool that is a poor spread: 8 connections land 4/4 on two cores in only
//! 27% of cases (binomial), 6/2 or worse in 29%, and the busier core sets the pace
//! while the other idles. So the core that accepts a connection keeps it only
//! when no serving core has fewer open; otherwise it hands the socket to the
//! core with the fewest, which serves it from then on (Seastar's
//! `load_balancing_algorithm::connection_distribution` does the same). The
//! socket crosses once, as a file descriptor, before a byte of it is read; no
//! request or object byte crosses for it.
//!
//! The counts are the one piece of state the cores share, one atomic per core,
//! touched when a connection opens and when it closes, with a flag per core that
//! says whether it still takes connections (shutdown clears it). Two cores
//! deciding at the same instant may both keep theirs; the next connection
//! evens it out.
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use glommio::net::TcpStream;

/// The serving cores' open-connection counts and inboxes.
struct Shared {
    open: Box<[AtomicUsize]>,
    /// Cleared when a core stops taking connections: no more are handed to it.
    taking: Box<[AtomicBool]>,
    inboxes: Box<[flume::Sender<OwnedFd>]>,
}

/// One serving core's side of the balance: give it to that core's
/// [`super::serve`].
pub struct CoreBalance {
    me: usize,
    shared: Arc<Shared>,
    inbox: flume::Receiver<OwnedFd>,
}

/// One [`CoreBalance`] per serving core, in order. `inbox_max` bounds the
/// sockets waiting for one core to take them (a hand-off that finds it full
/// is served where it was accepted).
pub fn balance(cores: usize, inbox_max: usize) -> Vec<CoreBalance> {
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..cores).map(|_| flume::bounded(inbox_max.max(1))).unzip();
    let shared = Arc::new(Shared {
        open: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
        taking: (0..cores).map(|_| AtomicBool::new(true)).collect(),
        inboxes: inboxes.into_boxed_slice(),
    });
    receivers.into_iter().enumerate().map(|(me, inbox)| CoreBalance { me, shared: shared.clone(), inbox }).collect()
}

/// Counts a connection open on its core until dropped.
pub struct Open {
    shared: Arc<Shared>,
    core: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shared.open[self.core].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where [`CoreBalance::place`] put a connection.
pub enum Placed {
    /// Serve it on this core, counted here while `Open` lives.
    Here(TcpStream, Open),
    /// Handed to another core.
    Away,
}

impl CoreBalance {
    /// Places a connection this core just accepted: here when no serving core has
    /// fewer open, else on the one with the fewest. A hand-off that cannot be made
    /// (no descriptor to spare, that core's inbox full or closed) serves it here.
    pub fn place(&self, stream: TcpStream) -> Placed {
        let target = self.least_loaded();
        if target != self.me {
            // A second descriptor of the same socket goes; this core's is closed when
            // `stream` drops (glommio has only queued its readiness poll, and cancels it).
            // SAFETY: `stream` owns the descriptor and outlives the borrow.
            let dup = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
            if let Ok(fd) = dup {
                self.shared.open[target].fetch_add(1, Ordering::Relaxed);
                if self.shared.inboxes[target].try_send(fd).is_ok() {
                    return Placed::Away;
                }
                self.shared.open[target].fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(core = self.me, target, fd = stream.as_raw_fd(), "connection hand-off refused");
            }
        }
        self.shared.open[self.me].fetch_add(1, Ordering::Relaxed);
        Placed::Here(stream, self.counted_here())
    }

    /// The guard of a connection already counted on this core.
    fn counted_here(&self) -> Open {
        Open { shared: self.shared.clone(), core: self.me }
    }

    /// A socket another core handed here, counted already, and its count.
    pub async fn next_handed(&self) -> Option<(OwnedFd, Open)> {
        let fd = self.inbox.recv_async().await.ok()?;
        Some((fd, self.counted_here()))
    }

    /// Stops taking connections from other cores (shutdown) and closes those
    /// already handed here: their clients see the connection reset, as those in
    /// a closing listener's backlog do.
    pub fn stop_taking(&self) {
        self.shared.taking[self.me].store(false, Ordering::SeqCst);
        // A core that read the flag just before it was cleared may still send one;
        // the drop drains again.
        while let Ok(fd) = self.inbox.try_recv() {
            drop(fd);
            self.shared.open[self.me].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The core taking connections with the fewest open; this one on a tie.
    fn least_loaded(&self) -> usize {
        let load = |c: usize| self.shared.open[c].load(Ordering::Relaxed);
        let mut best = (load(self.me), self.me);
        for c in 0..self.shared.open.len() {
            let l = load(c);
            if l < best.0 && self.shared.taking[c].load(Ordering::SeqCst) {
                best = (l, c);
            }
        }
        best.1
    }

    /// Each serving core's open connections, for tests.
    #[cfg(test)]
    pub fn counts(&self) -> impl Fn() -> Vec<usize> + Send + 'static {
        let shared = self.shared.clone();
        move || shared.open.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}

impl Drop for CoreBalance {
    fn drop(&mut self) {
        // Queued sockets would otherwise stay open until every core's balance is gone.
        self.stop_taking();
    }
}
