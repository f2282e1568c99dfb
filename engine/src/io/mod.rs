//! The engine's IO boundary.
//!
//! Everything the engine does to a disk goes through [`Io`] and [`IoFile`], so the
//! same shard store runs on two backends:
//!
//! * [`glommio_io::GlommioIo`]: the real one. `O_DIRECT` files driven by io_uring
//!   through glommio's `DmaFile`; buffers are DMA-aligned and owned, and reads hand
//!   back glommio's `ReadResult` so a payload can go to a socket without a copy.
//! * [`memory::MemIo`]: an in-memory file system for tests and seeded simulation. It
//!   keeps *written* and *durable* bytes apart, can tear unsynced writes, crash at a
//!   chosen operation and flip bytes, so crash and bitrot tests need no real disk.
//!
//! The traits use `async fn` without `Send` bounds on purpose: the engine is
//! thread-per-core, and a file is only ever touched by the core that owns it.
#![allow(async_fn_in_trait)]

pub mod glommio_io;
pub mod memory;

use std::ops::{Deref, DerefMut};
use std::path::Path;

/// Alignment of every offset and length the engine hands to [`IoFile::write_at`]
/// and [`IoFile::read_at`]. 4 KiB satisfies `O_DIRECT` on every common block device
/// and file system (most need 512 B; 4Kn drives need 4 KiB).
pub const IO_ALIGN_BYTES: usize = 4096;

/// What the IO layer was doing when it failed; carried in [`IoError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Open,
    Create,
    Read,
    Write,
    Sync,
    SyncDir,
    Preallocate,
    Size,
    Remove,
    Rename,
    ListDir,
    CreateDir,
    Close,
}

/// An IO failure that names the operation, the file and the offset.
#[derive(Debug, thiserror::Error)]
#[error("{op:?} {path} at offset {offset}: {source}")]
pub struct IoError {
    pub op: IoOp,
    pub path: String,
    pub offset: u64,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: IoOp, path: &Path, offset: u64, source: std::io::Error) -> Self {
        IoError { op, path: path.display().to_string(), offset, source }
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

pub type IoResult<T> = Result<T, IoError>;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file for reading and writing; fails if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading only.
    ReadOnly,
}

/// An owned, aligned, writable buffer handed to [`IoFile::write_at`].
pub trait IoBuf: Deref<Target = [u8]> + DerefMut + 'static {}

/// A buffer returned by a read. Cheap to clone and slice (reference counted), so a
/// payload can be handed on without copying.
pub trait ReadBuf: Deref<Target = [u8]> + Clone + 'static {
    /// A view of `len` bytes starting at `offset` of this buffer. Callers guarantee
    /// `offset + len <= self.len()`.
    fn slice(&self, offset: usize, len: usize) -> Self;
}

/// A file system, as the engine sees one.
pub trait Io: Clone + 'static {
    type File: IoFile<Buf = Self::Buf, ReadBuf = Self::ReadBuf>;
    type Buf: IoBuf;
    type ReadBuf: ReadBuf;

    /// A buffer of `len` bytes (`len` a multiple of [`IO_ALIGN_BYTES`]), aligned
    /// for direct IO. Its contents are unspecified (memory is recycled): callers
    /// write every byte before handing it to a write, so nothing stale reaches disk.
    fn alloc(&self, len: usize) -> Self::Buf;

    /// A random number (salts). The simulator draws it from its seed.
    fn random_u64(&self) -> u64;

    async fn open(&self, path: &Path, mode: OpenMode) -> IoResult<Self::File>;
    async fn create_dir_all(&self, path: &Path) -> IoResult<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    async fn sync_dir(&self, path: &Path) -> IoResult<()>;
    async fn remove(&self, path: &Path) -> IoResult<()>;
    async fn rename(&self, from: &Path, to: &Path) -> IoResult<()>;
    /// Names (not paths) of the entries of a directory, sorted.
    async fn list_dir(&self, path: &Path) -> IoResult<Vec<String>>;
    /// Reads a whole small file (checkpoints). No alignment rules.
    async fn read_file(&self, path: &Path) -> IoResult<Vec<u8>>;

    /// Waits for the reactor's next turn, so the IO other tasks queued meanwhile
    /// is submitted and completions are reaped. Long CPU work (hashing, encoding)
    /// calls it every few hundred KiB: see `runtime.rs` on why glommio needs it.
    async fn yield_to_reactor() {}
}

/// An open file. Offsets and lengths of reads and writes are multiples of
/// [`IO_ALIGN_BYTES`].
pub trait IoFile: 'static {
    type Buf: IoBuf;
    type ReadBuf: ReadBuf;

    fn path(&self) -> &Path;
    /// Writes the whole buffer at `pos`; a short write is an error.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> IoResult<()>;
    /// Reads up to `len` bytes at `pos`; shorter only at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> IoResult<Self::ReadBuf>;
    /// Makes the file's written data (and the size changes it needs) durable.
    async fn sync(&self) -> IoResult<()>;
    /// Reserves `len` bytes of disk for the file, so later writes do not fail for
    /// space and do not need metadata updates beyond extent conversion.
    async fn preallocate(&self, len: u64) -> IoResult<()>;
    async fn size(&self) -> IoResult<u64>;
    async fn close(self) -> IoResult<()>;
}

/// Rounds `v` up to the next multiple of [`IO_ALIGN_BYTES`].
pub const fn align_up(v: u64) -> u64 {
    let a = IO_ALIGN_BYTES as u64;
    v.div_ceil(a) * a
}

/// Rounds `v` down to a multiple of [`IO_ALIGN_BYTES`].
pub const fn align_down(v: u64) -> u64 {
    let a = IO_ALIGN_BYTES as u64;
    v / a * a
}
