//! `tessera-bench`: S3 and plain-HTTP load generator (see `tessera_tools::bench`).
//!
//! Exit status: 0 for a run without errors, 1 when requests failed during the run,
//! 2 for a usage error, 3 when setup (probe, bucket, uploads) or writing a report failed.
use std::process::ExitCode;

use clap::Parser;
use tessera_tools::bench::args::{Cli, Config};
use tessera_tools::bench::bench;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::from_cli(cli, &|name| std::env::var(name).ok()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = match bench(&cfg, command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            return ExitCode::from(3);
        }
    };
    for (path, text) in [(&cfg.json, report.json()), (&cfg.html, report.html())] {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("tessera-bench: writing {}: {e}", path.display());
                return ExitCode::from(3);
            }
        }
    }
    print!("{}", report.human());
    println!("{}", report.result_line());
    if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
