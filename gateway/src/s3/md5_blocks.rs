//! MD5 block compression for several streams at once.
//!
//! MD5 is latency-bound: each of a block's 64 steps waits on the one before, so one
//! stream leaves most of a core's ALUs idle. Two ways to fill them, and which pays
//! depends on how many streams have bytes:
//!
//! - Interleaved scalar (`compress_interleaved`): the steps of 2-4 streams written
//!   side by side, so the out-of-order core runs their chains together. On this
//!   machine's EPYC (Zen 5) one stream hashed 0.91 GB per CPU second, two 1.8,
//!   three 2.2, four 2.15 (the ALUs are full at three).
//! - SIMD lanes (`x86::compress_x16`, `x86::compress_x8`): one chain whose every
//!   operation hashes 16 (AVX-512) or 8 (AVX2) streams. A pass costs the same however
//!   many lanes carry data (~160 ns per block of each lane here, 8 or 4 lanes alike),
//!   so it wins from 5 streams on: 8 streams in 8 lanes 3.2 GB per CPU second.
//!
//! md5-many (which Tessera used before) offers only the SIMD passes for several
//! streams, and its `Md5State` cannot be moved between its single-stream and lane
//! code and this one. Per core, `cargo bench -p tessera-benches --bench md5`
//! (`lanes/N`), md5-many's padded 16-lane pass against this: 2 streams 882 MiB/s vs
//! 1.72 GiB/s, 4 streams 1.54 vs 2.07 GiB/s, 1, 8 and 16 streams alike (the module
//! docs of `md5_lanes` have them all).

/// MD5's initial chaining value.
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-step rotation.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15,
    21,
];

/// Per-step constant (RFC 1321: floor(abs(sin(i + 1)) * 2^32)).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// The message word step `i` adds.
const fn word(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

/// `$step!(i, $arg)` for the 16 steps `i` of the round starting at `$from`.
macro_rules! unroll16 {
    ($step:ident, $from:expr, $arg:tt) => {
        $step!($from, $arg);
        $step!($from + 1, $arg);
        $step!($from + 2, $arg);
        $step!($from + 3, $arg);
        $step!($from + 4, $arg);
        $step!($from + 5, $arg);
        $step!($from + 6, $arg);
        $step!($from + 7, $arg);
        $step!($from + 8, $arg);
        $step!($from + 9, $arg);
        $step!($from + 10, $arg);
        $step!($from + 11, $arg);
        $step!($from + 12, $arg);
        $step!($from + 13, $arg);
        $step!($from + 14, $arg);
        $step!($from + 15, $arg);
    };
}

/// One MD5 stream: chaining value, the partial block, the length so far.
#[derive(Clone, Copy, Debug)]
pub struct Md5Stream {
    state: [u32; 4],
    buffer: [u8; 64],
    len: u64,
}

impl Default for Md5Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Md5Stream {
    pub const fn new() -> Self {
        Self { state: INIT, buffer: [0; 64], len: 0 }
    }

    /// Bytes hashed so far (buffered ones included).
    pub fn bytes_hashed(&self) -> u64 {
        self.len
    }

    /// Appends `input`, this stream alone.
    pub fn update(&mut self, mut input: &[u8]) {
        let buffered = (self.len % 64) as usize;
        self.len += input.len() as u64;
        if buffered != 0 {
            let take = (64 - buffered).min(input.len());
            self.buffer[buffered..buffered + take].copy_from_slice(&input[..take]);
            input = &input[take..];
            if buffered + take < 64 {
                return;
            }
            let block = self.buffer;
            compress_interleaved::<1>([&mut self.state], [&block], 1);
        }
        let blocks = input.len() / 64;
        compress_interleaved::<1>([&mut self.state], [input], blocks);
        let tail = &input[blocks * 64..];
        self.buffer[..tail.len()].copy_from_slice(tail);
    }

    /// The digest of what was appended; the stream is left as it was.
    pub fn finalize(&self) -> [u8; 16] {
        let mut state = self.state;
        let tail = (self.len % 64) as usize;
        let mut last = [0u8; 128];
        last[..tail].copy_from_slice(&self.buffer[..tail]);
        last[tail] = 0x80;
        let blocks = if tail < 56 { 1 } else { 2 };
        last[blocks * 64 - 8..blocks * 64].copy_from_slice(&(self.len.wrapping_mul(8)).to_le_bytes());
        compress_interleaved::<1>([&mut state], [&last[..]], blocks);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Appends the first `blocks` whole blocks of `inputs[i]` to `streams[i]`, each of
/// which sits on a block boundary, hashing them together: SIMD lanes for 5 or more
/// streams where the CPU has them, interleaved scalar code in groups of up to 4
/// otherwise.
pub fn update_blocks(streams: &mut [&mut Md5Stream], inputs: &[&[u8]], blocks: usize) {
    #[cfg(target_arch = "x86_64")]
    let simd_lanes = x86::lanes();
    #[cfg(not(target_arch = "x86_64"))]
    let simd_lanes = None;
    update_blocks_in(simd_lanes, streams, inputs, blocks);
}

/// [`update_blocks`] with SIMD passes `simd_lanes` (16 or 8) wide, or none.
fn update_blocks_in(simd_lanes: Option<usize>, streams: &mut [&mut Md5Stream], inputs: &[&[u8]], blocks: usize) {
    assert_eq!(streams.len(), inputs.len());
    for (s, input) in streams.iter().zip(inputs) {
        assert!(s.len.is_multiple_of(64), "update_blocks: a stream not on a block boundary");
        assert!(input.len() >= blocks * 64, "update_blocks: an input shorter than {blocks} blocks");
    }
    for s in streams.iter_mut() {
        s.len += (blocks * 64) as u64;
    }
    if blocks == 0 {
        return;
    }
    let done = simd_passes(simd_lanes, streams, inputs, blocks);
    for (group, input) in streams[done..].chunks_mut(4).zip(inputs[done..].chunks(4)) {
        match group {
            [a] => compress_interleaved::<1>([&mut a.state], [input[0]], blocks),
            [a, b] => compress_interleaved::<2>([&mut a.state, &mut b.state], [input[0], input[1]], blocks),
            [a, b, c] => compress_interleaved::<3>(
                [&mut a.state, &mut b.state, &mut c.state],
                [input[0], input[1], input[2]],
                blocks,
            ),
            [a, b, c, d] => compress_interleaved::<4>(
                [&mut a.state, &mut b.state, &mut c.state, &mut d.state],
                [input[0], input[1], input[2], input[3]],
                blocks,
            ),
            _ => unreachable!("chunks of at most 4"),
        }
    }
}

/// Hashes the first streams in SIMD passes `simd_lanes` wide while 5 or more are
/// left (fewer go faster interleaved). Returns how many it hashed.
#[cfg(target_arch = "x86_64")]
fn simd_passes(simd_lanes: Option<usize>, streams: &mut [&mut Md5Stream], inputs: &[&[u8]], blocks: usize) -> usize {
    let Some(width) = simd_lanes else { return 0 };
    assert!(width == 16 || width == 8);
    let mut done = 0;
    while streams.len() - done >= 5 {
        let n = (streams.len() - done).min(width);
        let mut states = [[0u32; 4]; 16];
        // Idle lanes hash a copy of the first input into throwaway states.
        let mut lane_inputs: [&[u8]; 16] = [inputs[done]; 16];
        for i in 0..n {
            states[i] = streams[done + i].state;
            lane_inputs[i] = inputs[done + i];
        }
        // SAFETY: `x86::lanes()` saw the CPU features of the kernel for this width
        // (tests pass 8 only where it saw 8 or 16), and every input holds `blocks`
        // whole blocks (asserted by the caller; the kernels assert it again).
        unsafe {
            if width == 16 {
                x86::compress_x16(&mut states, &lane_inputs, blocks);
            } else {
                let (s8, i8) = (&mut states[..8], &lane_inputs[..8]);
                x86::compress_x8(s8.try_into().expect("8"), i8.try_into().expect("8"), blocks);
            }
        }
        for i in 0..n {
            streams[done + i].state = states[i];
        }
        done += n;
    }
    done
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_passes(_: Option<usize>, _: &mut [&mut Md5Stream], _: &[&[u8]], _: usize) -> usize {
    0
}

/// `x`, computed before it is used: the compiler may not fold what it is added to
/// into it. Left alone, it moves the step constant after the mixing function
/// (`x + f + K` as `(x + f) + K`), onto the chain of additions each step waits on;
/// pinning `a + K + M` (and G's `c & !d` term) took one stream from 0.75 to 0.91 GB
/// per CPU second and two from 1.5 to 1.8. From 4 streams on the ALUs, not the
/// chains, are the limit, and pinning cost registers (4 streams: 1.8 against 2.1).
#[inline(always)]
fn pinned<const N: usize>(x: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if N <= 3 {
        let mut x = x;
        // SAFETY: no instruction (the template is a comment); it only claims to
        // change the register.
        unsafe { std::arch::asm!("/* {0:e} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags)) };
        return x;
    }
    x
}

/// Compresses `blocks` blocks of each of `N` streams, their 64 steps written side by
/// side so the core overlaps the `N` dependency chains.
#[inline(never)]
fn compress_interleaved<const N: usize>(states: [&mut [u32; 4]; N], inputs: [&[u8]; N], blocks: usize) {
    for input in &inputs {
        assert!(input.len() >= blocks * 64);
    }
    let mut v: [[u32; 4]; N] = std::array::from_fn(|l| *states[l]);
    for block in 0..blocks {
        let mut m = [[0u32; 16]; N];
        for l in 0..N {
            let b = &inputs[l][block * 64..block * 64 + 64];
            for (w, bytes) in m[l].iter_mut().zip(b.chunks_exact(4)) {
                *w = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
            }
        }
        let [mut a, mut b, mut c, mut d]: [[u32; N]; 4] = std::array::from_fn(|r| std::array::from_fn(|l| v[l][r]));
        macro_rules! step {
            ($i:expr, $mix:expr) => {
                for l in 0..N {
                    let t = pinned::<N>(a[l].wrapping_add(K[$i]).wrapping_add(m[l][word($i)]));
                    let t = $mix(t, b[l], c[l], d[l]);
                    let nb = b[l].wrapping_add(t.rotate_left(S[$i]));
                    a[l] = d[l];
                    d[l] = c[l];
                    c[l] = b[l];
                    b[l] = nb;
                }
            };
        }
        // Written out, not looped: the indices must be constants.
        macro_rules! steps {
            ($from:expr, $mix:expr) => {
                unroll16!(step, $from, $mix)
            };
        }
        steps!(0, |t: u32, b: u32, c: u32, d: u32| t.wrapping_add(d ^ (b & (c ^ d))));
        // G's two terms never share a bit, so they can be added apart: `c & !d` does
        // not wait on `b`, which shortens the chain.
        steps!(16, |t: u32, b: u32, c: u32, d: u32| pinned::<N>(t.wrapping_add(c & !d)).wrapping_add(b & d));
        steps!(32, |t: u32, b: u32, c: u32, d: u32| t.wrapping_add(b ^ c ^ d));
        steps!(48, |t: u32, b: u32, c: u32, d: u32| t.wrapping_add(c ^ (b | !d)));
        for l in 0..N {
            v[l] = [
                v[l][0].wrapping_add(a[l]),
                v[l][1].wrapping_add(b[l]),
                v[l][2].wrapping_add(c[l]),
                v[l][3].wrapping_add(d[l]),
            ];
        }
    }
    for (s, v) in states.into_iter().zip(v) {
        *s = v;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{word, K, S};

    /// The SIMD lanes this CPU offers: 16 with AVX-512F (and AVX2, which the
    /// compiler assumes with it and the 8-lane kernel needs), 8 with AVX2, else none.
    pub fn lanes() -> Option<usize> {
        static LANES: OnceLock<Option<usize>> = OnceLock::new();
        *LANES.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2");
            if avx2 && is_x86_feature_detected!("avx512f") {
                Some(16)
            } else if avx2 {
                Some(8)
            } else {
                None
            }
        })
    }

    /// Words `0..16` of block `block` of four streams, transposed: word `w` of
    /// stream `l` in lane `l` of `out[w]`.
    #[inline(always)]
    unsafe fn words4(inputs: [&[u8]; 4], block: usize) -> [__m128i; 16] {
        let mut out = [_mm_setzero_si128(); 16];
        for q in 0..4 {
            // SAFETY: the callers' inputs hold `blocks` whole blocks, block < blocks.
            let [r0, r1, r2, r3] =
                inputs.map(|i| unsafe { _mm_loadu_si128(i.as_ptr().add(block * 64 + q * 16).cast::<__m128i>()) });
            let (t0, t1) = (_mm_unpacklo_epi32(r0, r1), _mm_unpackhi_epi32(r0, r1));
            let (t2, t3) = (_mm_unpacklo_epi32(r2, r3), _mm_unpackhi_epi32(r2, r3));
            out[q * 4] = _mm_unpacklo_epi64(t0, t2);
            out[q * 4 + 1] = _mm_unpackhi_epi64(t0, t2);
            out[q * 4 + 2] = _mm_unpacklo_epi64(t1, t3);
            out[q * 4 + 3] = _mm_unpackhi_epi64(t1, t3);
        }
        out
    }

    /// One kernel: `$v` vectors of `$n` lanes, `$words` the transposing load, the
    /// MD5 mixing functions and rotate as given.
    macro_rules! kernel {
        ($(#[$attr:meta])* $name:ident, $n:expr, $v:ty, $words:ident, $add:ident, $set1:ident,
         $mf:ident, $mg:ident, $mh:ident, $mi:ident, $rol:ident) => {
            $(#[$attr])*
            pub unsafe fn $name(states: &mut [[u32; 4]; $n], inputs: &[&[u8]; $n], blocks: usize) {
                for input in inputs {
                    assert!(input.len() >= blocks * 64);
                }
                // SAFETY: the caller saw the CPU features; same-size transmutes of
                // plain integer arrays and vectors.
                unsafe {
                    let lanes = |r: usize| -> $v { std::mem::transmute::<[u32; $n], $v>(std::array::from_fn(|l| states[l][r])) };
                    let (mut a, mut b, mut c, mut d) = (lanes(0), lanes(1), lanes(2), lanes(3));
                    for block in 0..blocks {
                        let m = $words(inputs, block);
                        let (a0, b0, c0, d0) = (a, b, c, d);
                        // A loop, not written out: measured faster (the SIMD code
                        // written out, 8 streams hashed 2.5 GiB/s against 3.3).
                        macro_rules! steps {
                            ($from:expr, $mix:ident) => {
                                for i in $from..$from + 16 {
                                    let t = $add($add(a, $set1(K[i] as i32)), m[word(i)]);
                                    let t = $add(t, $mix!(b, c, d));
                                    let nb = $add(b, $rol!(t, S[i]));
                                    a = d;
                                    d = c;
                                    c = b;
                                    b = nb;
                                }
                            };
                        }
                        steps!(0, $mf);
                        steps!(16, $mg);
                        steps!(32, $mh);
                        steps!(48, $mi);
                        a = $add(a, a0);
                        b = $add(b, b0);
                        c = $add(c, c0);
                        d = $add(d, d0);
                    }
                    let out = [a, b, c, d].map(|v| std::mem::transmute::<$v, [u32; $n]>(v));
                    for (l, s) in states.iter_mut().enumerate() {
                        *s = [out[0][l], out[1][l], out[2][l], out[3][l]];
                    }
                }
            }
        };
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn words16(inputs: &[&[u8]; 16], block: usize) -> [__m512i; 16] {
        // SAFETY: as in words4; the caller saw AVX-512F.
        unsafe {
            let q: [[__m128i; 16]; 4] = std::array::from_fn(|g| {
                words4([inputs[4 * g], inputs[4 * g + 1], inputs[4 * g + 2], inputs[4 * g + 3]], block)
            });
            std::array::from_fn(|w| {
                let v = _mm512_castsi128_si512(q[0][w]);
                let v = _mm512_inserti32x4::<1>(v, q[1][w]);
                let v = _mm512_inserti32x4::<2>(v, q[2][w]);
                _mm512_inserti32x4::<3>(v, q[3][w])
            })
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn words8(inputs: &[&[u8]; 8], block: usize) -> [__m256i; 16] {
        // SAFETY: as in words4; the caller saw AVX2.
        unsafe {
            let lo = words4([inputs[0], inputs[1], inputs[2], inputs[3]], block);
            let hi = words4([inputs[4], inputs[5], inputs[6], inputs[7]], block);
            std::array::from_fn(|w| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo[w]), hi[w]))
        }
    }

    // AVX-512: ternary logic does each mixing function in one instruction (the
    // immediates are the truth tables of F, G, H, I over b = 0xF0, c = 0xCC, d = 0xAA),
    // and rotates are one instruction.
    macro_rules! f16 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0xCA>($b, $c, $d)
        };
    }
    macro_rules! g16 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0xE4>($b, $c, $d)
        };
    }
    macro_rules! h16 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0x96>($b, $c, $d)
        };
    }
    macro_rules! i16 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0x39>($b, $c, $d)
        };
    }
    macro_rules! rol16 {
        ($x:expr, $s:expr) => {
            _mm512_rolv_epi32($x, _mm512_set1_epi32($s as i32))
        };
    }

    // AVX2: no ternary logic and no rotate.
    macro_rules! f8 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
    }
    macro_rules! g8 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_or_si256(_mm256_and_si256($b, $d), _mm256_andnot_si256($d, $c))
        };
    }
    macro_rules! h8 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
        };
    }
    macro_rules! i8 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($c, _mm256_or_si256($b, _mm256_xor_si256($d, _mm256_set1_epi32(-1))))
        };
    }
    macro_rules! rol8 {
        ($x:expr, $s:expr) => {
            _mm256_or_si256(
                _mm256_sllv_epi32($x, _mm256_set1_epi32($s as i32)),
                _mm256_srlv_epi32($x, _mm256_set1_epi32(32 - $s as i32)),
            )
        };
    }

    kernel!(
        /// Sixteen streams in the lanes of AVX-512 vectors.
        ///
        /// # Safety
        /// The CPU has AVX-512F and AVX2 ([`lanes`] said 16).
        #[target_feature(enable = "avx512f")]
        compress_x16, 16, __m512i, words16, _mm512_add_epi32, _mm512_set1_epi32, f16, g16, h16, i16, rol16
    );
    kernel!(
        /// Eight streams in the lanes of AVX2 vectors.
        ///
        /// # Safety
        /// The CPU has AVX2 ([`lanes`] said 8 or 16).
        #[target_feature(enable = "avx2")]
        compress_x8, 8, __m256i, words8, _mm256_add_epi32, _mm256_set1_epi32, f8, g8, h8, i8, rol8
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use md5::Digest as _;
    use rand::{Rng, SeedableRng};

    /// md-5's digest of `data`: the reference the MD5 code here and in `md5_lanes` is
    /// checked against.
    pub(in crate::s3) fn reference(data: &[u8]) -> [u8; 16] {
        md5::Md5::digest(data).into()
    }

    #[test]
    fn one_stream_matches_the_reference_and_rfc_1321() {
        assert_eq!(hex::encode(Md5Stream::new().finalize()), "d41d8cd98f00b204e9800998ecf8427e");
        let mut s = Md5Stream::new();
        s.update(b"message digest");
        assert_eq!(hex::encode(s.finalize()), "f96b697d7cb7938d525a2f31aaf161d0");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let data: Vec<u8> = (0..5000).map(|_| rng.r#gen()).collect();
        // Every length around the padding edges (55, 56, 63, 64, ...) and pieces of every size.
        for len in (0..300).chain([1000, 4999, 5000]) {
            let mut s = Md5Stream::new();
            let mut rest = &data[..len];
            while !rest.is_empty() {
                let take = rng.gen_range(0..=rest.len().min(130));
                s.update(&rest[..take]);
                rest = &rest[take..];
            }
            assert_eq!(s.finalize(), reference(&data[..len]), "length {len}");
            assert_eq!(s.bytes_hashed(), len as u64);
        }
    }

    /// The SIMD widths this CPU can run, and none (scalar code only).
    fn widths() -> Vec<Option<usize>> {
        #[cfg(target_arch = "x86_64")]
        return match x86::lanes() {
            Some(16) => vec![None, Some(8), Some(16)],
            Some(8) => vec![None, Some(8)],
            _ => vec![None],
        };
        #[cfg(not(target_arch = "x86_64"))]
        vec![None]
    }

    /// Every stream count 1..=40 (interleaved groups of 1-4, SIMD passes with idle
    /// lanes and with a remainder), at every SIMD width the CPU has and with none,
    /// each stream with its own prefix, agrees with the reference.
    #[test]
    fn streams_hashed_together_match_the_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for width in widths() {
            for n in 1..=40usize {
                let blocks = 1 + n % 7;
                let prefixes: Vec<Vec<u8>> = (0..n).map(|i| (0..64 * (i % 3)).map(|_| rng.r#gen()).collect()).collect();
                let bodies: Vec<Vec<u8>> =
                    (0..n).map(|_| (0..64 * blocks + 20).map(|_| rng.r#gen()).collect()).collect();
                let mut streams: Vec<Md5Stream> = prefixes
                    .iter()
                    .map(|p| {
                        let mut s = Md5Stream::new();
                        s.update(p);
                        s
                    })
                    .collect();
                {
                    let mut refs: Vec<&mut Md5Stream> = streams.iter_mut().collect();
                    let inputs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
                    update_blocks_in(width, &mut refs, &inputs, blocks);
                }
                for (i, s) in streams.iter_mut().enumerate() {
                    s.update(&bodies[i][blocks * 64..]);
                    let whole = [&prefixes[i][..], &bodies[i][..]].concat();
                    assert_eq!(s.finalize(), reference(&whole), "width {width:?}, {n} streams, stream {i}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "not on a block boundary")]
    fn a_stream_off_a_block_boundary_is_refused() {
        let mut s = Md5Stream::new();
        s.update(&[1u8; 10]);
        update_blocks(&mut [&mut s], &[&[0u8; 64]], 1);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn both_simd_kernels_match_the_scalar_code_where_the_cpu_has_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let data: Vec<Vec<u8>> = (0..16).map(|_| (0..64 * 5).map(|_| rng.r#gen()).collect()).collect();
        let expect: Vec<[u32; 4]> = data
            .iter()
            .map(|d| {
                let mut s = INIT;
                compress_interleaved::<1>([&mut s], [&d[..]], 5);
                s
            })
            .collect();
        let inputs: [&[u8]; 16] = std::array::from_fn(|i| &data[i][..]);
        if x86::lanes() == Some(16) {
            let mut states = [INIT; 16];
            // SAFETY: lanes() saw AVX-512F and AVX2.
            unsafe { x86::compress_x16(&mut states, &inputs, 5) };
            assert_eq!(states.to_vec(), expect);
        }
        if x86::lanes().is_some() {
            let mut states = [INIT; 8];
            // SAFETY: lanes() saw AVX2 at least.
            unsafe { x86::compress_x8(&mut states, inputs[..8].try_into().unwrap(), 5) };
            assert_eq!(states.to_vec(), expect[..8].to_vec());
        }
    }
}
