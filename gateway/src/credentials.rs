//! The embedded server's one key pair: from `TESSERA_ACCESS_KEY` /
//! `TESSERA_SECRET_KEY`, else generated on first start and kept (mode 0600) in the
//! data directory, so restarts keep working with the same clients.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::Rng;

pub const CREDENTIALS_FILE: &str = "credentials";
/// AWS allows 16..=128; we check the same bounds on keys given to us.
const ACCESS_KEY_BYTES_RANGE: std::ops::RangeInclusive<usize> = 3..=128;
const SECRET_KEY_BYTES_RANGE: std::ops::RangeInclusive<usize> = 8..=128;

#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Where the keys came from, for the start-up message.
pub enum Source {
    Environment,
    File,
    /// Generated now: print them once.
    Generated,
}

pub fn check(access: &str, secret: &str) -> Result<(), String> {
    if !ACCESS_KEY_BYTES_RANGE.contains(&access.len()) || !access.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("access key must be {ACCESS_KEY_BYTES_RANGE:?} printable ASCII characters"));
    }
    if !SECRET_KEY_BYTES_RANGE.contains(&secret.len()) || !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("secret key must be {SECRET_KEY_BYTES_RANGE:?} printable ASCII characters"));
    }
    Ok(())
}

pub fn load(data_dir: &Path) -> Result<(Credentials, Source), String> {
    let env_access = std::env::var("TESSERA_ACCESS_KEY").ok().filter(|s| !s.is_empty());
    let env_secret = std::env::var("TESSERA_SECRET_KEY").ok().filter(|s| !s.is_empty());
    match (env_access, env_secret) {
        (Some(a), Some(s)) => {
            check(&a, &s)?;
            return Ok((Credentials { access_key: a, secret_key: s }, Source::Environment));
        }
        (None, None) => {}
        _ => return Err("set both TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY, or neither".into()),
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut access = None;
            let mut secret = None;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("access_key = ") {
                    access = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("secret_key = ") {
                    secret = Some(v.trim().to_string());
                }
            }
            let (Some(a), Some(s)) = (access, secret) else {
                return Err(format!("{} lacks access_key or secret_key lines", path.display()));
            };
            check(&a, &s).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((Credentials { access_key: a, secret_key: s }, Source::File))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut rng = rand::thread_rng();
            let access: String =
                "TS".chars().chain((0..18).map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)).collect();
            let secret: String = (0..40).map(|_| SECRET_CHARS[rng.gen_range(0..SECRET_CHARS.len())] as char).collect();
            std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
            let tmp = data_dir.join(format!("{CREDENTIALS_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f =
                    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
                writeln!(f, "# Tessera S3 credentials (generated on first start)")?;
                writeln!(f, "access_key = {access}")?;
                writeln!(f, "secret_key = {secret}")?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok((Credentials { access_key: access, secret_key: secret }, Source::Generated))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
