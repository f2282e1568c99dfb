//! Object contents: reproducible from the seed, free to produce and cheap to check.
//!
//! Every object is a window onto one seeded pseudo-random pattern of
//! [`PATTERN_PERIOD_BYTES`], repeated: object `i` starts at an offset into the pattern
//! derived from (seed, i). A PUT body is then a series of slices of one shared buffer
//! (no per-request generation, so the client is not the bottleneck at GB/s), and any
//! byte of any object, at any range offset, is known without storing the object, so
//! `--verify` is a `memcmp`. Different objects differ (unless two offsets collide) and
//! the period is not a power of two, so block-aligned repeats do not line up. The price:
//! objects larger than the period repeat themselves, which a deduplicating or
//! compressing store would profit from (Tessera does neither).

/// Period of the content pattern: prime, a little over 1 MiB.
pub const PATTERN_PERIOD_BYTES: usize = 1_048_583;

/// The shared content pattern for one seed.
pub struct Pattern {
    seed: u64,
    /// Two periods back to back, so a slice of up to one period starting anywhere in
    /// the first is contiguous.
    bytes: Vec<u8>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut state = seed ^ 0x7465_7373_6572_6121; // "tessera!": seed 0 is not all zeros
        let mut bytes = Vec::with_capacity(2 * PATTERN_PERIOD_BYTES + 8);
        while bytes.len() < PATTERN_PERIOD_BYTES {
            bytes.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        bytes.truncate(PATTERN_PERIOD_BYTES);
        bytes.extend_from_within(..PATTERN_PERIOD_BYTES);
        Pattern { seed, bytes }
    }

    /// Where object `index` starts in the pattern.
    pub fn object_start(&self, index: u64) -> usize {
        let mut state = self.seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (splitmix64(&mut state) % PATTERN_PERIOD_BYTES as u64) as usize
    }

    /// Up to `len_max` (at most one period) content bytes of the object starting at
    /// `start`, from byte `offset` of the object on.
    pub fn slice(&self, start: usize, offset: u64, len_max: usize) -> &[u8] {
        let at = (start as u64 + offset % PATTERN_PERIOD_BYTES as u64) as usize % PATTERN_PERIOD_BYTES;
        &self.bytes[at..at + len_max.min(PATTERN_PERIOD_BYTES)]
    }

    /// Whether `data` is the content of the object starting at `start` from `offset` on.
    pub fn matches(&self, start: usize, mut offset: u64, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let expect = self.slice(start, offset, data.len());
            if expect != &data[..expect.len()] {
                return false;
            }
            data = &data[expect.len()..];
            offset += expect.len() as u64;
        }
        true
    }

    /// The whole object (tests and small uploads).
    pub fn object(&self, index: u64, len: usize) -> Vec<u8> {
        let start = self.object_start(index);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(self.slice(start, out.len() as u64, len - out.len()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_reproducible_windows() {
        let p = Pattern::new(7);
        let a = p.object(3, 3 * PATTERN_PERIOD_BYTES + 17);
        assert_eq!(a, Pattern::new(7).object(3, a.len()), "same seed, same bytes");
        assert_ne!(a[..4096], Pattern::new(8).object(3, 4096)[..], "another seed, other bytes");
        assert_ne!(a[..4096], p.object(4, 4096)[..], "another object, other bytes");
        let start = p.object_start(3);
        // Any range of the object matches, whatever the split into reads.
        for (off, len) in [(0, 10), (PATTERN_PERIOD_BYTES as u64 - 5, 20), (2_400_000, 700_000)] {
            let range = &a[off as usize..off as usize + len];
            assert!(p.matches(start, off, range));
            let (x, y) = range.split_at(len / 3);
            assert!(p.matches(start, off, x) && p.matches(start, off + x.len() as u64, y));
            assert!(!p.matches(start, off + 1, range));
        }
        let mut bad = a[..1000].to_vec();
        bad[999] ^= 1;
        assert!(!p.matches(start, 0, &bad));
    }
}
