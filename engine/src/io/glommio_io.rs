//! The real backend: `O_DIRECT` files on io_uring through glommio's `DmaFile`.
//!
//! Data-path operations (read, write, fdatasync, fallocate) go through io_uring.
//! Rare metadata operations (rename, remove, listing, reading a checkpoint at start)
//! use blocking std calls: they happen at open, at segment roll-over and after
//! compaction, never per request, and glommio offers no cheaper form for most.
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{Io, IoBuf, IoError, IoFile, IoOp, IoResult, OpenMode, ReadBuf};

/// The glommio backend. Must be used from inside a glommio executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioIo;

/// A DMA buffer from glommio's allocator (registered with io_uring when the
/// executor could register its IO memory).
pub struct GlommioBuf(DmaBuffer);

impl Deref for GlommioBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
impl DerefMut for GlommioBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}
impl IoBuf for GlommioBuf {}

/// A read result: a reference-counted view into the DMA buffer the kernel read into.
#[derive(Clone)]
pub struct GlommioRead(ReadResult);

impl Deref for GlommioRead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
impl ReadBuf for GlommioRead {
    fn slice(&self, offset: usize, len: usize) -> Self {
        assert!(offset + len <= self.0.len(), "slice {offset}+{len} past {}", self.0.len());
        // `ReadResult::slice` returns None only for out-of-range views; len 0 is fine.
        match ReadResult::slice(&self.0, offset, len) {
            Some(r) => GlommioRead(r),
            None => unreachable!("range checked above"),
        }
    }
}

pub struct GlommioFile {
    file: DmaFile,
    path: PathBuf,
}

fn io_err(op: IoOp, path: &Path, offset: u64, e: glommio::GlommioError<()>) -> IoError {
    IoError::new(op, path, offset, e.into())
}

impl Io for GlommioIo {
    type File = GlommioFile;
    type Buf = GlommioBuf;
    type ReadBuf = GlommioRead;

    async fn yield_to_reactor() {
        // A timer is only ever completed by the reactor; a plain yield would leave
        // the task runnable, and glommio turns the reactor only once none is.
        glommio::timer::sleep(std::time::Duration::from_micros(10)).await;
    }

    fn alloc(&self, len: usize) -> GlommioBuf {
        debug_assert_eq!(len % super::IO_ALIGN_BYTES, 0);
        // Not zeroed: every caller writes every byte (see `Io::alloc`); zeroing a
        // 1 MiB buffer cost ~30% of building a record (measured by bench-engine).
        GlommioBuf(glommio::allocate_dma_buffer(len))
    }

    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness; enough for a salt.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        );
        h.finish()
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> IoResult<GlommioFile> {
        let path = &absolute(path, IoOp::Open)?;
        if mode == OpenMode::CreateNew {
            // glommio decides whether a device takes polled IO by reading the first
            // block of the file it opens. On an empty (or sparse) file that read ends
            // before reaching the device and "succeeds", so the device is wrongly
            // marked pollable and every later read fails with EOPNOTSUPP (seen on
            // virtio disks). Give the probe a real block to read.
            create_with_first_block(path).map_err(|e| IoError::new(IoOp::Create, path, 0, e))?;
            return Box::pin(self.open(path, OpenMode::ReadWrite)).await;
        }
        let mut opts = OpenOptions::new();
        let (op, opts) = match mode {
            OpenMode::CreateNew => (IoOp::Create, opts.create_new(true).read(true).write(true)),
            OpenMode::ReadWrite => (IoOp::Open, opts.read(true).write(true)),
            OpenMode::ReadOnly => (IoOp::Open, opts.read(true)),
        };
        let file = opts.dma_open(path).await.map_err(|e| io_err(op, path, 0, e))?;
        Ok(GlommioFile { file, path: path.to_path_buf() })
    }

    async fn create_dir_all(&self, path: &Path) -> IoResult<()> {
        std::fs::create_dir_all(path).map_err(|e| IoError::new(IoOp::CreateDir, path, 0, e))
    }

    async fn sync_dir(&self, path: &Path) -> IoResult<()> {
        let path = &absolute(path, IoOp::SyncDir)?;
        let dir = glommio::io::Directory::open(path).await.map_err(|e| io_err(IoOp::SyncDir, path, 0, e))?;
        dir.sync().await.map_err(|e| io_err(IoOp::SyncDir, path, 0, e))?;
        dir.close().await.map_err(|e| io_err(IoOp::SyncDir, path, 0, e))
    }

    async fn remove(&self, path: &Path) -> IoResult<()> {
        std::fs::remove_file(path).map_err(|e| IoError::new(IoOp::Remove, path, 0, e))
    }

    async fn rename(&self, from: &Path, to: &Path) -> IoResult<()> {
        std::fs::rename(from, to).map_err(|e| IoError::new(IoOp::Rename, from, 0, e))
    }

    async fn list_dir(&self, path: &Path) -> IoResult<Vec<String>> {
        let err = |e| IoError::new(IoOp::ListDir, path, 0, e);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read_file(&self, path: &Path) -> IoResult<Vec<u8>> {
        std::fs::read(path).map_err(|e| IoError::new(IoOp::Read, path, 0, e))
    }
}

/// glommio opens paths relative to dirfd -1 rather than `AT_FDCWD`, so a relative
/// path fails with EBADF; hand it absolute ones.
fn absolute(path: &Path, op: IoOp) -> IoResult<PathBuf> {
    std::path::absolute(path).map_err(|e| IoError::new(op, path, 0, e))
}

fn create_with_first_block(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(&[0u8; super::IO_ALIGN_BYTES])?;
    f.sync_data()
}

impl IoFile for GlommioFile {
    type Buf = GlommioBuf;
    type ReadBuf = GlommioRead;

    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, buf: GlommioBuf, pos: u64) -> IoResult<()> {
        let len = buf.len();
        let written = self.file.write_at(buf.0, pos).await.map_err(|e| io_err(IoOp::Write, &self.path, pos, e))?;
        if written != len {
            return Err(IoError::new(
                IoOp::Write,
                &self.path,
                pos,
                std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {written} of {len} bytes")),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> IoResult<GlommioRead> {
        let r = self.file.read_at_aligned(pos, len).await.map_err(|e| io_err(IoOp::Read, &self.path, pos, e))?;
        Ok(GlommioRead(r))
    }

    async fn sync(&self) -> IoResult<()> {
        self.file.fdatasync().await.map_err(|e| io_err(IoOp::Sync, &self.path, 0, e))
    }

    async fn preallocate(&self, len: u64) -> IoResult<()> {
        self.file.pre_allocate(len, false).await.map_err(|e| io_err(IoOp::Preallocate, &self.path, 0, e))
    }

    async fn size(&self) -> IoResult<u64> {
        self.file.file_size().await.map_err(|e| io_err(IoOp::Size, &self.path, 0, e))
    }

    async fn close(self) -> IoResult<()> {
        self.file.close().await.map_err(|e| io_err(IoOp::Close, &self.path, 0, e))
    }
}
