//! `tessera-fsck DIR...`: read-only check of shard store directories
//! (`<drive>/core-<n>`, or a drive, or a whole data directory: store directories
//! are found below it). Verifies every segment header and record, the checkpoint,
//! and reads back every piece a restart would serve. Exit status 0: clean; 1:
//! problems found (printed); 2: could not run.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::store::{verify_store, VerifyReport};

#[derive(Parser)]
#[command(name = "tessera-fsck", version, about = "Check Tessera shard stores without changing them")]
struct Args {
    /// Store, drive or data directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Print every segment.
    #[arg(short, long)]
    verbose: bool,
}

/// Store directories at or below `dir` (a store holds segment files), bounded depth.
fn stores_under(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut is_store = false;
    let mut subdirs = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("seg-") && name.ends_with(".tsg") {
            is_store = true;
        } else if e.file_type()?.is_dir() {
            subdirs.push(e.path());
        }
    }
    if is_store {
        out.push(dir.to_path_buf());
    } else if depth > 0 {
        subdirs.sort();
        for d in subdirs {
            stores_under(&d, depth - 1, out)?;
        }
    }
    Ok(())
}

fn print(dir: &Path, r: &VerifyReport, verbose: bool) {
    let records: u64 = r.segments.iter().map(|s| s.records).sum();
    let torn = r.segments.iter().filter(|s| s.stopped.is_some()).count();
    println!(
        "{}: {} segments, {} records, {} live pieces ({} bytes), checkpoint {}, {} segments end in a torn or damaged record, {} problems",
        dir.display(),
        r.segments.len(),
        records,
        r.live_keys,
        r.live_payload_bytes,
        r.checkpoint_entries.map_or("none".to_string(), |n| format!("{n} entries")),
        torn,
        r.problems.len()
    );
    for s in &r.segments {
        if verbose || s.stopped.is_some() {
            println!(
                "  segment {}: {} records ({} tombstones), valid to {} of {} bytes{}",
                s.id,
                s.records,
                s.tombstones,
                s.valid_end,
                s.file_bytes,
                s.stopped.as_ref().map_or(String::new(), |w| format!("; stopped: {w}"))
            );
        }
    }
    for p in &r.problems {
        println!("  PROBLEM: {p}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stores = Vec::new();
    for d in &args.dirs {
        if let Err(e) = stores_under(d, 3, &mut stores) {
            eprintln!("tessera-fsck: {}: {e}", d.display());
            return ExitCode::from(2);
        }
    }
    if stores.is_empty() {
        eprintln!("tessera-fsck: no shard stores (directories with seg-*.tsg files) found");
        return ExitCode::from(2);
    }
    let verbose = args.verbose;
    let result = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut problems = 0;
            for dir in &stores {
                match verify_store(&GlommioIo, dir).await {
                    Ok(r) => {
                        print(dir, &r, verbose);
                        problems += r.problems.len();
                    }
                    Err(e) => {
                        println!("{}: cannot check: {e}", dir.display());
                        problems += 1;
                    }
                }
            }
            problems
        })
        .and_then(|h| h.join());
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tessera-fsck: executor: {e}");
            ExitCode::from(2)
        }
    }
}
