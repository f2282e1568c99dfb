//! Detects Intel ISA-L (`libisal`, Debian package `libisal-dev`) and, when
//! found, links it and enables `cfg(tessera_isal)` so the ISA-L erasure
//! codec is compiled in. Without it the engine still builds and falls back
//! to reed-solomon-simd.
//!
//! Environment:
//! * `TESSERA_ISAL=0` — never use ISA-L; `=1` — fail the build if it is not
//!   found; unset/`auto` — use it when found.
//! * `TESSERA_ISAL_LIB_DIR` — directory holding `libisal.so`/`libisal.a`
//!   (skips the search).
//!
//! Detection order: `TESSERA_ISAL_LIB_DIR`, `pkg-config libisal`, then the
//! usual library directories. Installing libisal after a build does not
//! re-run this script by itself: `touch engine/build.rs` (or set one of the
//! variables above) to re-detect.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tessera_isal)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=TESSERA_ISAL");
    println!("cargo::rerun-if-env-changed=TESSERA_ISAL_LIB_DIR");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");

    let mode = env::var("TESSERA_ISAL").unwrap_or_default();
    let mode = mode.trim().to_ascii_lowercase();
    if matches!(mode.as_str(), "0" | "no" | "off" | "false") {
        return;
    }
    let required = matches!(mode.as_str(), "1" | "yes" | "on" | "true");

    match find_isal() {
        Some(found) => {
            if let Some(dir) = found {
                println!("cargo::rustc-link-search=native={}", dir.display());
            }
            println!("cargo::rustc-link-lib=isal");
            println!("cargo::rustc-cfg=tessera_isal");
        }
        None if required => {
            panic!("TESSERA_ISAL=1 but libisal was not found (apt-get install libisal-dev)");
        }
        None => {
            println!(
                "cargo::warning=libisal not found: ISA-L erasure codec disabled, using \
                 reed-solomon-simd only (apt-get install libisal-dev, then touch engine/build.rs)"
            );
        }
    }
}

/// `Some(Some(dir))`: found in `dir`; `Some(None)`: found on the default
/// linker path; `None`: not found.
fn find_isal() -> Option<Option<PathBuf>> {
    if let Ok(dir) = env::var("TESSERA_ISAL_LIB_DIR") {
        let dir = PathBuf::from(dir);
        return has_lib(&dir).then_some(Some(dir));
    }

    // Only probe the host system when building for it.
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    if target != host {
        return None;
    }

    if let Some(dirs) = pkg_config_lib_dirs() {
        // pkg-config knows the package; prefer a dir that really has the lib.
        if let Some(dir) = dirs.into_iter().find(|d| has_lib(d)) {
            return Some(Some(dir));
        }
        if default_dirs().iter().any(|d| has_lib(d)) {
            return Some(None);
        }
    }

    default_dirs().into_iter().find(|d| has_lib(d)).map(Some)
}

fn has_lib(dir: &Path) -> bool {
    dir.join("libisal.so").exists() || dir.join("libisal.a").exists()
}

/// Library directories from `pkg-config --libs-only-L libisal`, or `None`
/// if pkg-config is missing or does not know libisal.
fn pkg_config_lib_dirs() -> Option<Vec<PathBuf>> {
    let out = Command::new("pkg-config").args(["--libs-only-L", "libisal"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.split_whitespace().filter_map(|t| t.strip_prefix("-L")).map(PathBuf::from).collect())
}

fn default_dirs() -> Vec<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let mut dirs = Vec::new();
    if !arch.is_empty() {
        dirs.push(PathBuf::from(format!("/usr/lib/{arch}-linux-gnu")));
    }
    for d in ["/usr/lib64", "/usr/lib", "/usr/local/lib64", "/usr/local/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}
