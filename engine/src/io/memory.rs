//! An in-memory file system that models what a power cut does to a disk.
//!
//! Each file has a *volatile* image (what reads see while running) and a *durable*
//! image (what survives a crash). A write lands in the volatile image and in a list
//! of unsynced writes; `sync` moves them to the durable image. Directory entries
//! (create, remove, rename) become durable only when their directory is synced.
//!
//! [`MemIo::crash_image`] produces the file system a restart would find: durable
//! names and bytes, plus each unsynced write either lost, applied whole, or torn
//! (a random subset of its 512-byte sectors), chosen by a seeded generator.
//! [`MemIo::crash_at_op`] makes the N-th operation fail and every later one with it,
//! the way a process dies mid-flight. All randomness comes from one seed, so a
//! failing run reproduces exactly.
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Io, IoBuf, IoError, IoFile, IoOp, IoResult, OpenMode, ReadBuf, IO_ALIGN_BYTES};

/// Sector size a torn write is cut at.
pub const TEAR_SECTOR_BYTES: usize = 512;

/// SplitMix64: tiny, seedable, good enough to drive fault choices.
#[derive(Clone, Debug)]
pub struct SimRng(u64);
impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default)]
struct FileData {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

struct MemFs {
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    files: HashMap<u64, FileData>,
    next_file_id: u64,
    ops: u64,
    crash_at_op: Option<u64>,
    crashed: bool,
    rng: SimRng,
    yield_percent: u64,
}

/// The in-memory backend. Cloning shares the same file system.
#[derive(Clone)]
pub struct MemIo {
    fs: Rc<RefCell<MemFs>>,
}

impl MemIo {
    /// An empty file system. `seed` drives yields and tears.
    pub fn new(seed: u64) -> Self {
        MemIo {
            fs: Rc::new(RefCell::new(MemFs {
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dirs: BTreeSet::new(),
                files: HashMap::new(),
                next_file_id: 1,
                ops: 0,
                crash_at_op: None,
                crashed: false,
                rng: SimRng::new(seed),
                yield_percent: 0,
            })),
        }
    }

    /// Each IO operation yields to the executor first with this probability, so
    /// concurrent requests interleave differently per seed.
    pub fn set_yield_percent(&self, percent: u64) {
        self.fs.borrow_mut().yield_percent = percent.min(100);
    }

    /// Operation number `op` (counted from now, 1-based) and every later one fail as
    /// if the process had died. A write that is the crashing op may still be torn
    /// onto disk by [`MemIo::crash_image`].
    pub fn crash_at_op(&self, op: u64) {
        let mut fs = self.fs.borrow_mut();
        fs.crash_at_op = Some(fs.ops + op);
    }

    /// True once a crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.fs.borrow().crashed
    }

    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        self.fs.borrow().ops
    }

    /// The file system a restart would find after a power cut now.
    pub fn crash_image(&self, seed: u64) -> MemIo {
        let fs = self.fs.borrow();
        let mut rng = SimRng::new(seed);
        let out = MemIo::new(seed ^ 0x5eed);
        {
            let mut o = out.fs.borrow_mut();
            o.dirs = fs.dirs.clone();
            for (path, id) in &fs.durable_names {
                let data = &fs.files[id];
                let mut bytes = data.durable.clone();
                for (pos, w) in &data.unsynced {
                    match rng.below(3) {
                        0 => {}
                        1 => apply(&mut bytes, *pos, w, None),
                        _ => apply(&mut bytes, *pos, w, Some(&mut rng)),
                    }
                }
                o.names.insert(path.clone(), *id);
                o.durable_names.insert(path.clone(), *id);
                o.files.insert(*id, FileData { volatile: bytes.clone(), durable: bytes, unsynced: vec![] });
                o.next_file_id = o.next_file_id.max(id + 1);
            }
        }
        out
    }

    /// Flips every bit of `len` bytes at `offset` in both images (bitrot).
    pub fn corrupt(&self, path: &Path, offset: u64, len: usize) {
        let mut fs = self.fs.borrow_mut();
        let id = fs.names[path];
        let f = fs.files.get_mut(&id).expect("named file exists");
        for img in [&mut f.volatile, &mut f.durable] {
            for b in img.iter_mut().skip(offset as usize).take(len) {
                *b = !*b;
            }
        }
    }

    /// Names of files under `dir`, for tests that pick a victim file.
    pub fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        self.fs.borrow().names.keys().filter(|p| p.parent() == Some(dir)).cloned().collect()
    }

    fn begin(&self, op: IoOp, path: &Path, offset: u64) -> IoResult<()> {
        let mut fs = self.fs.borrow_mut();
        fs.ops += 1;
        if fs.crash_at_op.is_some_and(|at| fs.ops >= at) {
            fs.crashed = true;
        }
        if fs.crashed {
            return Err(IoError::new(op, path, offset, std::io::Error::other("simulated crash: process is dead")));
        }
        Ok(())
    }

    async fn maybe_yield(&self) {
        let y = {
            let mut fs = self.fs.borrow_mut();
            let p = fs.yield_percent;
            p > 0 && fs.rng.chance(p)
        };
        if y {
            futures_lite::future::yield_now().await;
        }
    }

    fn file_id(&self, op: IoOp, path: &Path) -> IoResult<u64> {
        self.fs
            .borrow()
            .names
            .get(path)
            .copied()
            .ok_or_else(|| IoError::new(op, path, 0, std::io::Error::from(std::io::ErrorKind::NotFound)))
    }
}

/// Copies `w` into `bytes` at `pos`; with a generator, only a random subset of
/// sectors (a torn write).
fn apply(bytes: &mut Vec<u8>, pos: u64, w: &[u8], tear: Option<&mut SimRng>) {
    let pos = pos as usize;
    if bytes.len() < pos + w.len() {
        bytes.resize(pos + w.len(), 0);
    }
    match tear {
        None => bytes[pos..pos + w.len()].copy_from_slice(w),
        Some(rng) => {
            for (i, sector) in w.chunks(TEAR_SECTOR_BYTES).enumerate() {
                if rng.chance(50) {
                    let at = pos + i * TEAR_SECTOR_BYTES;
                    bytes[at..at + sector.len()].copy_from_slice(sector);
                }
            }
        }
    }
}

pub struct MemBuf(Vec<u8>);
impl Deref for MemBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
impl DerefMut for MemBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
impl IoBuf for MemBuf {}

#[derive(Clone)]
pub struct MemRead {
    data: Rc<[u8]>,
    offset: usize,
    len: usize,
}
impl Deref for MemRead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[self.offset..self.offset + self.len]
    }
}
impl ReadBuf for MemRead {
    fn slice(&self, offset: usize, len: usize) -> Self {
        assert!(offset + len <= self.len, "slice {offset}+{len} past {}", self.len);
        MemRead { data: self.data.clone(), offset: self.offset + offset, len }
    }
}

pub struct MemFile {
    io: MemIo,
    path: PathBuf,
    id: u64,
}

fn check_aligned(op: IoOp, path: &Path, pos: u64, len: usize) -> IoResult<()> {
    if !pos.is_multiple_of(IO_ALIGN_BYTES as u64) || !len.is_multiple_of(IO_ALIGN_BYTES) {
        return Err(IoError::new(
            op,
            path,
            pos,
            std::io::Error::from_raw_os_error(22 /* EINVAL, as O_DIRECT answers */),
        ));
    }
    Ok(())
}

impl Io for MemIo {
    type File = MemFile;
    type Buf = MemBuf;
    type ReadBuf = MemRead;

    fn alloc(&self, len: usize) -> MemBuf {
        // Garbage, like recycled DMA memory: a caller that forgets to write a byte
        // puts 0xA5 on disk, which checksums and tests notice.
        MemBuf(vec![0xA5; len])
    }

    fn random_u64(&self) -> u64 {
        self.fs.borrow_mut().rng.next_u64()
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> IoResult<MemFile> {
        self.maybe_yield().await;
        let op = if mode == OpenMode::CreateNew { IoOp::Create } else { IoOp::Open };
        self.begin(op, path, 0)?;
        let mut fs = self.fs.borrow_mut();
        let parent_exists = path.parent().is_some_and(|p| fs.dirs.contains(p));
        let existing = fs.names.get(path).copied();
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(IoError::new(op, path, 0, std::io::ErrorKind::AlreadyExists.into()))
            }
            (OpenMode::CreateNew, None) if !parent_exists => {
                return Err(IoError::new(op, path, 0, std::io::ErrorKind::NotFound.into()))
            }
            (OpenMode::CreateNew, None) => {
                let id = fs.next_file_id;
                fs.next_file_id += 1;
                fs.files.insert(id, FileData::default());
                fs.names.insert(path.to_path_buf(), id);
                id
            }
            (_, Some(id)) => id,
            (_, None) => return Err(IoError::new(op, path, 0, std::io::ErrorKind::NotFound.into())),
        };
        Ok(MemFile { io: self.clone(), path: path.to_path_buf(), id })
    }

    async fn create_dir_all(&self, path: &Path) -> IoResult<()> {
        self.begin(IoOp::CreateDir, path, 0)?;
        let mut fs = self.fs.borrow_mut();
        // Directories are modelled as durable on creation: the engine creates its
        // directories once, before any data, and syncs them.
        for a in path.ancestors() {
            fs.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> IoResult<()> {
        self.maybe_yield().await;
        self.begin(IoOp::SyncDir, path, 0)?;
        let mut fs = self.fs.borrow_mut();
        let fs = &mut *fs;
        fs.durable_names.retain(|p, _| p.parent() != Some(path));
        for (p, id) in &fs.names {
            if p.parent() == Some(path) {
                fs.durable_names.insert(p.clone(), *id);
            }
        }
        Ok(())
    }

    async fn remove(&self, path: &Path) -> IoResult<()> {
        self.begin(IoOp::Remove, path, 0)?;
        self.file_id(IoOp::Remove, path)?;
        self.fs.borrow_mut().names.remove(path);
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> IoResult<()> {
        self.begin(IoOp::Rename, from, 0)?;
        let id = self.file_id(IoOp::Rename, from)?;
        let mut fs = self.fs.borrow_mut();
        fs.names.remove(from);
        fs.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> IoResult<Vec<String>> {
        self.begin(IoOp::ListDir, path, 0)?;
        let fs = self.fs.borrow();
        if !fs.dirs.contains(path) {
            return Err(IoError::new(IoOp::ListDir, path, 0, std::io::ErrorKind::NotFound.into()));
        }
        Ok(fs
            .names
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    async fn read_file(&self, path: &Path) -> IoResult<Vec<u8>> {
        self.begin(IoOp::Read, path, 0)?;
        let id = self.file_id(IoOp::Read, path)?;
        Ok(self.fs.borrow().files[&id].volatile.clone())
    }
}

impl IoFile for MemFile {
    type Buf = MemBuf;
    type ReadBuf = MemRead;

    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, buf: MemBuf, pos: u64) -> IoResult<()> {
        check_aligned(IoOp::Write, &self.path, pos, buf.len())?;
        self.io.maybe_yield().await;
        let res = self.io.begin(IoOp::Write, &self.path, pos);
        let mut fs = self.io.fs.borrow_mut();
        let f = fs.files.get_mut(&self.id).expect("open file has data");
        // Even the write that dies with the process may reach the disk, torn.
        f.unsynced.push((pos, buf.0.clone()));
        res?;
        apply(&mut f.volatile, pos, &buf.0, None);
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> IoResult<MemRead> {
        check_aligned(IoOp::Read, &self.path, pos, len)?;
        self.io.maybe_yield().await;
        self.io.begin(IoOp::Read, &self.path, pos)?;
        let fs = self.io.fs.borrow();
        let v = &fs.files[&self.id].volatile;
        let start = (pos as usize).min(v.len());
        let end = (pos as usize + len).min(v.len());
        let data: Rc<[u8]> = Rc::from(&v[start..end]);
        Ok(MemRead { len: data.len(), data, offset: 0 })
    }

    async fn sync(&self) -> IoResult<()> {
        self.io.maybe_yield().await;
        self.io.begin(IoOp::Sync, &self.path, 0)?;
        let mut fs = self.io.fs.borrow_mut();
        let f = fs.files.get_mut(&self.id).expect("open file has data");
        let len = f.volatile.len();
        f.durable.resize(len, 0);
        for (pos, w) in std::mem::take(&mut f.unsynced) {
            apply(&mut f.durable, pos, &w, None);
        }
        Ok(())
    }

    async fn preallocate(&self, len: u64) -> IoResult<()> {
        self.io.begin(IoOp::Preallocate, &self.path, 0)?;
        let mut fs = self.io.fs.borrow_mut();
        let f = fs.files.get_mut(&self.id).expect("open file has data");
        if (f.volatile.len() as u64) < len {
            f.volatile.resize(len as usize, 0);
        }
        Ok(())
    }

    async fn size(&self) -> IoResult<u64> {
        self.io.begin(IoOp::Size, &self.path, 0)?;
        Ok(self.io.fs.borrow().files[&self.id].volatile.len() as u64)
    }

    async fn close(self) -> IoResult<()> {
        Ok(())
    }
}
