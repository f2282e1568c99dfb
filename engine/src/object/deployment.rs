//! The deployment descriptor: what every drive of an embedded server must agree on
//! (erasure geometry, codec, partition count, the partition hash key). Kept as a
//! small text file on every drive, so it survives the loss of any `m` of them.
//!
//! ```text
//! <drive>/tessera-drive        key value, one per line
//!   format tessera-drive 1
//!   set    <32 hex>            deployment id, equal on every drive
//!   drive  <i>                 this drive's position in the drive list
//!   drives <n>  k <k>  m <m>  codec <isa-l|rs-simd>  partitions <p>
//!   hash-key <32 hex>          key of the partition hash (crafted keys cannot pile up)
//!   chunk-bytes <c>  group-stripes <g>  cores <c>
//! ```
//!
//! Start-up rules: no drive formatted → a new deployment, every drive directory is
//! created and formatted. Otherwise every descriptor must agree and sit at its own
//! position (drives given in another order are refused, not silently remapped). A
//! drive directory that is missing is **offline**: it is not recreated, because a
//! missing mount would otherwise turn into an empty drive on the root filesystem.
//! An existing empty directory without a descriptor is a replacement drive: it is
//! formatted and joins empty (its pieces read as missing and are reconstructed).
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::erasure::CodecKind;

pub const DESCRIPTOR_FILE: &str = "tessera-drive";
const FORMAT_LINE: &str = "format tessera-drive 1";
/// A descriptor is a few hundred bytes; anything larger is not ours.
const DESCRIPTOR_BYTES_MAX: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub set_id: u128,
    pub drives: usize,
    pub k: usize,
    pub m: usize,
    pub codec: CodecKind,
    pub partitions: u32,
    pub hash_key: u128,
    pub chunk_bytes: u32,
    pub group_stripes: u32,
    /// Executors the data was laid out for: partitions map to cores (and so to
    /// `core-<n>` directories) by `partition % cores`, so this never changes.
    pub cores: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveStatus {
    Online,
    /// Joined empty now (a replacement, or a new deployment).
    Formatted,
    /// The directory is missing or unusable.
    Offline(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("drive {drive}: {reason}")]
    Drive { drive: PathBuf, reason: String },
    #[error("drives disagree: {0}")]
    Mismatch(String),
    #[error("invalid geometry: {0}")]
    Geometry(String),
}

/// Default erasure geometry for `n` drives: a third of them parity (4+2 for 6).
pub fn default_geometry(drives: usize) -> Result<(usize, usize), DeploymentError> {
    if drives < 2 {
        return Err(DeploymentError::Geometry(format!("need at least 2 drives, got {drives}")));
    }
    let m = (drives / 3).max(1);
    Ok((drives - m, m))
}

impl Deployment {
    fn render(&self, drive: usize) -> String {
        format!(
            "{FORMAT_LINE}\nset {:032x}\ndrive {drive}\ndrives {}\nk {}\nm {}\ncodec {}\npartitions {}\nhash-key {:032x}\n\
             chunk-bytes {}\ngroup-stripes {}\ncores {}\n",
            self.set_id,
            self.drives,
            self.k,
            self.m,
            self.codec.as_str(),
            self.partitions,
            self.hash_key,
            self.chunk_bytes,
            self.group_stripes,
            self.cores
        )
    }

    fn parse(text: &str) -> Result<(Deployment, usize), String> {
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT_LINE) {
            return Err(format!("first line is not {FORMAT_LINE:?}"));
        }
        let mut get = std::collections::HashMap::new();
        for l in lines {
            let (k, v) = l.split_once(' ').ok_or_else(|| format!("bad line {l:?}"))?;
            get.insert(k, v);
        }
        let field = |name: &str| get.get(name).copied().ok_or_else(|| format!("missing {name}"));
        let num = |name: &str| field(name)?.parse::<u64>().map_err(|e| format!("{name}: {e}"));
        let hex = |name: &str| u128::from_str_radix(field(name)?, 16).map_err(|e| format!("{name}: {e}"));
        let d = Deployment {
            set_id: hex("set")?,
            drives: num("drives")? as usize,
            k: num("k")? as usize,
            m: num("m")? as usize,
            codec: field("codec")?.parse().map_err(|e| format!("{e}"))?,
            partitions: num("partitions")? as u32,
            hash_key: hex("hash-key")?,
            chunk_bytes: num("chunk-bytes")? as u32,
            group_stripes: num("group-stripes")? as u32,
            cores: num("cores")? as usize,
        };
        d.validate()?;
        Ok((d, num("drive")? as usize))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.k + self.m != self.drives || self.k == 0 || self.m == 0 {
            return Err(format!("k {} + m {} must equal drives {} (k, m >= 1)", self.k, self.m, self.drives));
        }
        if self.partitions == 0 || self.partitions > 1 << 20 {
            return Err(format!("partitions {} outside 1..=2^20", self.partitions));
        }
        if self.chunk_bytes == 0 || !self.chunk_bytes.is_multiple_of(4096) || self.chunk_bytes > 16 << 20 {
            return Err(format!(
                "chunk-bytes {} must be a positive multiple of 4096, at most 16 MiB",
                self.chunk_bytes
            ));
        }
        if self.group_stripes == 0 || self.chunk_bytes as u64 * self.group_stripes as u64 > 32 << 20 {
            return Err("group-stripes must be positive and a piece record at most 32 MiB".into());
        }
        if self.cores == 0 || self.cores > crate::runtime::CORES_MAX {
            return Err(format!("cores {} outside 1..={}", self.cores, crate::runtime::CORES_MAX));
        }
        Ok(())
    }
}

fn write_descriptor(dir: &Path, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{DESCRIPTOR_FILE}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(DESCRIPTOR_FILE))?;
    fs::File::open(dir)?.sync_all()
}

/// Opens the deployment on `drives`, creating it when no drive is formatted yet
/// (`new` supplies the descriptor of a new deployment). Blocking file IO: runs once
/// at start-up, before the executors.
pub fn open_or_create(
    drives: &[PathBuf],
    new: impl FnOnce() -> Deployment,
) -> Result<(Deployment, Vec<DriveStatus>), DeploymentError> {
    let mut found: Vec<Option<(Deployment, usize)>> = Vec::with_capacity(drives.len());
    let mut present = Vec::with_capacity(drives.len());
    for d in drives {
        let err = |reason: String| DeploymentError::Drive { drive: d.clone(), reason };
        if d.exists() && !d.is_dir() {
            return Err(err("exists and is not a directory".into()));
        }
        present.push(d.is_dir());
        let path = d.join(DESCRIPTOR_FILE);
        match fs::metadata(&path) {
            Ok(md) if md.len() > DESCRIPTOR_BYTES_MAX => return Err(err(format!("{} is too large", path.display()))),
            Ok(_) => {
                let text = fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                found.push(Some(Deployment::parse(&text).map_err(|e| err(format!("{}: {e}", path.display())))?));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.push(None),
            Err(e) => return Err(err(format!("{}: {e}", path.display()))),
        }
    }
    let reference = found.iter().flatten().next().map(|(d, _)| d.clone());
    let Some(dep) = reference else {
        // A new deployment: every drive is created and formatted.
        let dep = new();
        dep.validate().map_err(DeploymentError::Geometry)?;
        if dep.drives != drives.len() {
            return Err(DeploymentError::Geometry(format!(
                "{} drives given, geometry wants {}",
                drives.len(),
                dep.drives
            )));
        }
        for (i, d) in drives.iter().enumerate() {
            let err = |e: std::io::Error| DeploymentError::Drive { drive: d.clone(), reason: e.to_string() };
            if d.is_dir() && fs::read_dir(d).map_err(err)?.next().is_some() {
                return Err(DeploymentError::Drive {
                    drive: d.clone(),
                    reason: "is not empty but holds no tessera-drive descriptor: refusing to format it".into(),
                });
            }
            fs::create_dir_all(d).map_err(err)?;
            write_descriptor(d, &dep.render(i)).map_err(err)?;
        }
        return Ok((dep, vec![DriveStatus::Formatted; drives.len()]));
    };
    if dep.drives != drives.len() {
        return Err(DeploymentError::Mismatch(format!(
            "the deployment has {} drives, {} were given",
            dep.drives,
            drives.len()
        )));
    }
    let mut status = Vec::with_capacity(drives.len());
    for (i, d) in drives.iter().enumerate() {
        match &found[i] {
            Some((other, pos)) => {
                if other != &dep {
                    return Err(DeploymentError::Mismatch(format!("{} belongs to another deployment", d.display())));
                }
                if *pos != i {
                    return Err(DeploymentError::Mismatch(format!(
                        "{} is drive {pos} of the deployment but was given as drive {i}: keep the drive order",
                        d.display()
                    )));
                }
                status.push(DriveStatus::Online);
            }
            None if !present[i] => status.push(DriveStatus::Offline("directory missing".into())),
            None => {
                let nonempty = fs::read_dir(d).map(|mut r| r.next().is_some()).unwrap_or(true);
                if nonempty {
                    status.push(DriveStatus::Offline("not empty and holds no tessera-drive descriptor".into()));
                } else {
                    write_descriptor(d, &dep.render(i))
                        .map_err(|e| DeploymentError::Drive { drive: d.clone(), reason: e.to_string() })?;
                    status.push(DriveStatus::Formatted);
                }
            }
        }
    }
    Ok((dep, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(n: usize) -> Deployment {
        let (k, m) = default_geometry(n).unwrap();
        Deployment {
            set_id: 42,
            drives: n,
            k,
            m,
            codec: CodecKind::ReedSolomonSimd,
            partitions: 64,
            hash_key: 7,
            chunk_bytes: 256 << 10,
            group_stripes: 4,
            cores: 2,
        }
    }

    #[test]
    fn create_reopen_missing_replaced_reordered() {
        let t = tempfile::tempdir().unwrap();
        let drives: Vec<PathBuf> = (0..6).map(|i| t.path().join(format!("d{i}"))).collect();
        let (d, st) = open_or_create(&drives, || dep(6)).unwrap();
        assert_eq!((d.k, d.m), (4, 2));
        assert!(st.iter().all(|s| *s == DriveStatus::Formatted));
        let (d2, st) = open_or_create(&drives, || panic!("must not create")).unwrap();
        assert_eq!(d, d2);
        assert!(st.iter().all(|s| *s == DriveStatus::Online));
        fs::remove_dir_all(&drives[1]).unwrap();
        let (_, st) = open_or_create(&drives, || panic!()).unwrap();
        assert!(matches!(st[1], DriveStatus::Offline(_)));
        assert!(!drives[1].exists(), "a missing drive is not recreated");
        fs::create_dir(&drives[1]).unwrap();
        let (_, st) = open_or_create(&drives, || panic!()).unwrap();
        assert_eq!(st[1], DriveStatus::Formatted);
        let mut swapped = drives.clone();
        swapped.swap(0, 2);
        assert!(matches!(open_or_create(&swapped, || panic!()), Err(DeploymentError::Mismatch(_))));
        assert!(matches!(open_or_create(&drives[..5], || panic!()), Err(DeploymentError::Mismatch(_))));
        fs::write(drives[3].join(DESCRIPTOR_FILE), "garbage").unwrap();
        assert!(matches!(open_or_create(&drives, || panic!()), Err(DeploymentError::Drive { .. })));
    }

    #[test]
    fn refuses_to_format_foreign_data() {
        let t = tempfile::tempdir().unwrap();
        let drives: Vec<PathBuf> = (0..3).map(|i| t.path().join(format!("d{i}"))).collect();
        fs::create_dir_all(&drives[0]).unwrap();
        fs::write(drives[0].join("precious"), "x").unwrap();
        assert!(open_or_create(&drives, || dep(3)).is_err());
        assert!(default_geometry(1).is_err());
        assert_eq!(default_geometry(3).unwrap(), (2, 1));
    }
}
