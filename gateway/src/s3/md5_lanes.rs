//! MD5 of several uploads at once.
//!
//! The ETag of a single-part object is the MD5 of its body, and MD5 was the largest
//! CPU cost of a PUT (~45% of both cores at 64 MiB, perf). One MD5 stream cannot go
//! faster: each 64-byte block depends on the one before. But a core owning several
//! uploads holds several independent streams, and hashing them together fills the
//! core: 2-4 interleaved in scalar code, 5 or more in the 16 lanes of an AVX-512 pass
//! (8 with AVX2), as MinIO's md5-simd does in Go ([`super::md5_blocks`]).
//!
//! So an upload does not hash what it receives at once: it queues the bytes on its
//! [`LaneMd5`] (a reference count, no copy) and, when it next lets the reactor turn,
//! calls [`hash_queued`], which hashes what the core's uploads have queued, up to
//! [`LANES_MAX`] streams at a time, for as long as enough of them have bytes (see
//! [`WAIT_FOR_MAX`]). What a stream has queued beyond the others waits for a later
//! pass, when they will have caught up, unless it exceeds [`QUEUED_MAX`]: then it is
//! hashed beside whichever streams have bytes, by the single-stream code only when
//! none has (or when the upload ends). A stream alone on its core is hashed at once.
//! Hashing each upload's bytes as they came, the uploads of a core were out of phase
//! (each waits on its socket) and a pass found one stream queued most times: the
//! single-stream code did 90% of it.
//!
//! `cargo bench -p tessera-benches --bench md5` (`lanes/N`: N streams on one core,
//! 128 KiB each per turn) on this machine's EPYC, md5-many's padded 16-lane pass
//! (87eef3d) against `md5_blocks` (now): 1 stream 864 vs 892 MiB/s, 2 882 MiB/s vs
//! 1.72 GiB/s, 4 1.54 vs 2.07 GiB/s, 8 3.09 vs 3.09 GiB/s, 16 6.05 vs 6.04 GiB/s.
//!
//! Everything here is per thread (per core); nothing is shared between cores.
//! One pool for all cores was tried (streams behind a lock, hashed by whichever
//! core got to it first, so a pass filled up to 8 lanes however the cores owned
//! the uploads): at 8 connections it took 9% less server CPU per GB (1.78 vs 1.96 s
//! over 6 interleaved rounds) but PUT throughput moved within the noise (841 vs
//! 819 MB/s), and at 4 connections it lost (681 vs 713 MB/s). Not established
//! why; a suspect is the core that hashes for both holding its reactor longer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Buf, Bytes};

use super::checksum::Md5Digest;
use super::md5_blocks::{update_blocks, Md5Stream};

/// Most streams hashed together in one call (the widest SIMD pass).
const LANES_MAX: usize = 16;

/// The fewest streams with bytes worth hashing together: two interleaved streams
/// hashed 1.72 GiB/s on one core of this machine's EPYC, one 0.89 (`md5_blocks`).
const LANES_MIN: usize = 2;

/// Streams with bytes queued a pass waits for (fewer when fewer are live on the
/// core): the more streams hashed together the better (2: 1.72 GiB/s per core, 4:
/// 2.07, 16: 6.0). Waiting for up to 8 measured no better than 4 in 64 MiB PUTs
/// (579 vs 608 MB/s over 3 interleaved rounds at 8 connections, with md5-many's
/// lane passes): the wait costs what the fuller pass saves.
const WAIT_FOR_MAX: usize = 4;

/// Bytes one stream may hold queued while it waits for others to hash beside.
/// Past it, a pass runs with the streams that have bytes: hashing in the
/// single-stream code instead, as the first version did, left 11% of the server's
/// CPU in it at 8 connections (perf; one stalled upload of four made the three
/// others overflow), 4.7% after, and 64 MiB PUTs took ~5% less server CPU per
/// byte (2.34/2.20/2.23 vs 2.48/2.34/2.37 s per GB over 3 interleaved rounds).
const QUEUED_MAX: usize = 1 << 20;

/// One stream's state and the bytes it has queued but not hashed yet.
#[derive(Default)]
struct Lane {
    state: Md5Stream,
    queued: VecDeque<Bytes>,
    /// In this core's pending list.
    listed: bool,
}

thread_local! {
    /// Streams (uploads) of this core.
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Streams of this core with queued bytes.
    static PENDING: RefCell<Vec<Rc<RefCell<Lane>>>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Bytes hashed by the single-stream code and in lanes, and lane passes.
    static COUNTS: std::cell::Cell<(usize, usize, usize)> = const { std::cell::Cell::new((0, 0, 0)) };
}

#[cfg(test)]
fn count(single: usize, lanes: usize, passes: usize) {
    COUNTS.with(|c| {
        let (s, l, p) = c.get();
        c.set((s + single, l + lanes, p + passes));
    });
}

/// One upload's MD5, hashed beside the core's other uploads. Not `Send`: it lives
/// on the core that owns the upload.
pub struct LaneMd5 {
    lane: Rc<RefCell<Lane>>,
}

impl Default for LaneMd5 {
    fn default() -> Self {
        Self::new()
    }
}

impl LaneMd5 {
    pub fn new() -> Self {
        LIVE.with(|n| n.set(n.get() + 1));
        Self { lane: Rc::new(RefCell::new(Lane::default())) }
    }

    /// Queues `b` (no copy) for the core's next [`hash_queued`].
    pub fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        let mut lane = self.lane.borrow_mut();
        lane.queued.push_back(b);
        if !lane.listed {
            lane.listed = true;
            PENDING.with(|p| p.borrow_mut().push(self.lane.clone()));
        }
    }

    /// The digest of everything pushed. Hashes what the core has queued first.
    pub fn finish(self) -> Md5Digest {
        if self.lane.borrow().listed {
            hash_queued();
        }
        let mut lane = self.lane.borrow_mut();
        drain(&mut lane);
        Md5Digest(lane.state.finalize())
        // Drop takes the lane off the pending list.
    }

    #[cfg(test)]
    /// Bytes queued, not hashed yet.
    fn queued(&self) -> usize {
        self.lane.borrow().queued.iter().map(Bytes::len).sum()
    }
}

impl Drop for LaneMd5 {
    fn drop(&mut self) {
        LIVE.with(|n| n.set(n.get() - 1));
        // Finished, or an abandoned upload whose bytes need no hashing.
        let mut lane = self.lane.borrow_mut();
        lane.queued.clear();
        if std::mem::take(&mut lane.listed) {
            PENDING.with(|p| p.borrow_mut().retain(|l| !Rc::ptr_eq(l, &self.lane)));
        }
    }
}

/// Hashes what the streams of this core have queued, in lanes while enough of
/// them have bytes (see [`WAIT_FOR_MAX`]); leaves the rest queued up to
/// [`QUEUED_MAX`] per stream.
pub fn hash_queued() {
    let lanes = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if lanes.is_empty() {
        return;
    }
    let live = LIVE.with(|n| n.get());
    // A lone stream has nobody to wait for.
    let want = if live < LANES_MIN { usize::MAX } else { live.min(WAIT_FOR_MAX) };
    for group in lanes.chunks(LANES_MAX) {
        let mut borrowed: Vec<_> = group.iter().map(|l| l.borrow_mut()).collect();
        let mut group: Vec<&mut Lane> = borrowed.iter_mut().map(|l| &mut **l).collect();
        hash_group(&mut group, want);
    }
    PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        for l in lanes {
            let mut lane = l.borrow_mut();
            if lane.queued.is_empty() {
                lane.listed = false;
            } else {
                drop(lane);
                pending.push(l);
            }
        }
    });
}

/// The single-stream code hashes all `lane` has queued.
fn drain(lane: &mut Lane) {
    for b in lane.queued.drain(..) {
        #[cfg(test)]
        count(b.len(), 0, 0);
        lane.state.update(&b);
    }
}

/// Hashes the queued bytes of up to [`LANES_MAX`] streams together while `want` or more
/// have some (at least [`LANES_MIN`]); the single-stream code takes what exceeds
/// [`QUEUED_MAX`] then, and all of it when `want` is `usize::MAX`.
fn hash_group(lanes: &mut [&mut Lane], want: usize) {
    debug_assert!(lanes.len() <= LANES_MAX);
    loop {
        // Bring each stream to a block boundary with a front of at least a block;
        // what is shorter goes through the single-stream code.
        let mut active = [0usize; LANES_MAX];
        let mut n_active = 0;
        for (i, lane) in lanes.iter_mut().enumerate() {
            if align(lane) {
                active[n_active] = i;
                n_active += 1;
            }
        }
        if n_active < want.max(LANES_MIN) {
            let over = |l: &Lane| l.queued.iter().map(Bytes::len).sum::<usize>() > QUEUED_MAX;
            // A stream over its limit does not wait longer: it is hashed beside
            // whichever streams have bytes, alone only when none has.
            let forced =
                want != usize::MAX && n_active >= LANES_MIN && active[..n_active].iter().any(|&i| over(lanes[i]));
            if !forced {
                for &i in &active[..n_active] {
                    if want == usize::MAX || over(lanes[i]) {
                        drain(lanes[i]);
                    }
                }
                return;
            }
        }
        // The longest run of whole blocks every active stream has in its front.
        let run = active[..n_active].iter().map(|&i| lanes[i].queued[0].len()).min().expect("active") & !63;
        {
            // `active` is in ascending order, as `lanes` is walked here.
            let (mut streams, inputs): (Vec<&mut Md5Stream>, Vec<&[u8]>) = lanes
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| active[..n_active].contains(i))
                .map(|(_, lane)| {
                    let lane: &mut Lane = lane;
                    (&mut lane.state, &lane.queued[0][..run])
                })
                .unzip();
            update_blocks(&mut streams, &inputs, run / 64);
            #[cfg(test)]
            count(0, run * n_active, 1);
        }
        for &i in &active[..n_active] {
            lanes[i].queued[0].advance(run);
        }
    }
}

/// Feeds the single-stream code until `lane` sits on a block boundary with a whole
/// block at its front. False when its queue ran out first.
fn align(lane: &mut Lane) -> bool {
    while let Some(front) = lane.queued.front_mut() {
        let buffered = (lane.state.bytes_hashed() % 64) as usize;
        if buffered != 0 {
            let take = (64 - buffered).min(front.len());
            lane.state.update(&front[..take]);
            front.advance(take);
        } else if front.len() >= 64 {
            return true;
        } else {
            lane.state.update(front);
            front.clear();
        }
        if front.is_empty() {
            lane.queued.pop_front();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::md5_blocks::tests::reference;
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Many streams fed in chunks of random sizes (blocks, odd tails, empty), hashed
    /// together at random moments, each agree with md-5 over its whole body.
    #[test]
    fn lanes_agree_with_the_reference_whatever_the_chunking() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..60 {
            let streams = 1 + round % 19;
            let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); streams];
            let mut hashers: Vec<LaneMd5> = (0..streams).map(|_| LaneMd5::new()).collect();
            for _ in 0..rng.gen_range(1..40) {
                for s in 0..streams {
                    if rng.gen_bool(0.3) {
                        continue;
                    }
                    let len = match rng.gen_range(0..4) {
                        0 => rng.gen_range(0..64),
                        1 => 64 * rng.gen_range(1..64),
                        _ => rng.gen_range(0..20_000),
                    };
                    let mut chunk = vec![0u8; len];
                    rng.fill(&mut chunk[..]);
                    bodies[s].extend_from_slice(&chunk);
                    hashers[s].push(Bytes::from(chunk));
                }
                if rng.gen_bool(0.5) {
                    hash_queued();
                }
            }
            for (s, h) in hashers.into_iter().enumerate() {
                assert_eq!(h.finish().0, reference(&bodies[s]), "round {round} stream {s} of {streams}");
            }
        }
        assert!(PENDING.with(|p| p.borrow().is_empty()));
    }

    /// A stream waits for company only up to QUEUED_MAX, and not at all alone.
    #[test]
    fn a_stream_waits_for_others_within_a_bound() {
        let mut body = Vec::new();
        let mut fed = LaneMd5::new();
        // Two others to wait for.
        let idle = [LaneMd5::new(), LaneMd5::new()];
        for i in 0..40u8 {
            let chunk = vec![i; 100_000];
            body.extend_from_slice(&chunk);
            fed.push(Bytes::from(chunk));
            hash_queued();
            assert!(fed.queued() <= QUEUED_MAX, "{} queued after chunk {i}", fed.queued());
        }
        assert!(fed.queued() > 0, "hashed at once though another stream is live");
        drop(idle);
        fed.push(Bytes::from(vec![7u8; 1000]));
        body.extend_from_slice(&[7u8; 1000]);
        hash_queued();
        assert_eq!(fed.queued(), 0, "alone on its core, a stream has nobody to wait for");
        assert_eq!(fed.finish().0, reference(&body));
    }

    /// Three streams of five fed, two idle: past QUEUED_MAX the fed ones are hashed
    /// together in lanes, not one by one, and never hold more than the bound.
    #[test]
    fn streams_over_the_bound_are_hashed_together() {
        let idle: Vec<LaneMd5> = (0..2).map(|_| LaneMd5::new()).collect();
        let mut fed: Vec<LaneMd5> = (0..3).map(|_| LaneMd5::new()).collect();
        let mut bodies = vec![Vec::new(); 3];
        COUNTS.with(|c| c.set((0, 0, 0)));
        for i in 0..40u8 {
            for (s, h) in fed.iter_mut().enumerate() {
                let chunk = vec![i ^ s as u8; 100_000];
                bodies[s].extend_from_slice(&chunk);
                h.push(Bytes::from(chunk));
            }
            hash_queued();
            assert!(fed.iter().all(|h| h.queued() <= QUEUED_MAX));
        }
        let (single, lanes, passes) = COUNTS.with(|c| c.get());
        assert!(passes > 0 && lanes > 3 * 3_000_000 / 2, "{lanes} bytes in {passes} lane passes");
        // Only what brings a stream to a block boundary goes one by one.
        assert!(single < 64 * 3 * 40, "{single} bytes hashed one stream at a time");
        for (h, body) in fed.into_iter().zip(&bodies) {
            assert_eq!(h.finish().0, reference(body));
        }
        drop(idle);
    }

    /// Two streams on a core wait for each other and are hashed together, not one
    /// by one; both digests right.
    #[test]
    fn two_streams_are_hashed_together() {
        COUNTS.with(|c| c.set((0, 0, 0)));
        let mut hashers = [LaneMd5::new(), LaneMd5::new()];
        let mut bodies = vec![Vec::new(); 2];
        for i in 0..20u8 {
            for (s, h) in hashers.iter_mut().enumerate() {
                let chunk = vec![i ^ (s as u8 * 91); 100_000];
                bodies[s].extend_from_slice(&chunk);
                h.push(Bytes::from(chunk));
            }
            hash_queued();
        }
        let (single, lanes, passes) = COUNTS.with(|c| c.get());
        assert!(passes > 0 && lanes > 3_000_000 && single < 64 * 2 * 20, "{lanes} together, {single} alone");
        for (h, body) in hashers.into_iter().zip(&bodies) {
            assert_eq!(h.finish().0, reference(body));
        }
    }

    #[test]
    fn an_empty_stream_has_the_empty_digest_and_a_dropped_one_is_forgotten() {
        let mut dropped = LaneMd5::new();
        dropped.push(Bytes::from(vec![1u8; 1000]));
        let mut kept = LaneMd5::new();
        kept.push(Bytes::from(vec![2u8; 300]));
        drop(dropped);
        assert_eq!(kept.finish().0, reference(&[2u8; 300]));
        assert_eq!(LaneMd5::new().finish().0, reference(b""));
        assert!(PENDING.with(|p| p.borrow().is_empty()));
    }
}
