//! A started `tessera` process (node, gateway): its stdout watched for the line
//! "ready", its stderr in a log file with its stdout lines (what it says it did:
//! moves, repairs) interleaved, SIGKILLed on drop (a crash, not a clean stop).
#![allow(dead_code)]
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a process may take to print "ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stderr appended to `log`.
    pub fn start(mut cmd: Command, log: PathBuf) -> Proc {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(err).spawn().expect("start tessera");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let mut copy = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "stdout: {line}");
                let _ = tx.send(line);
            }
        });
        Proc { child, lines, log }
    }

    /// Starts `cmd` and waits for its "ready" line.
    pub fn start_ready(cmd: Command, log: PathBuf, what: &str) -> Proc {
        let mut p = Proc::start(cmd, log);
        p.wait_ready(what);
        p
    }

    /// Waits for the "ready" line; panics with the log's tail if the process exits
    /// first or takes longer than [`READY_TIMEOUT`].
    pub fn wait_ready(&mut self, what: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l == "ready" => return,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(200)),
            }
            assert!(Instant::now() < deadline, "{what} not ready after {READY_TIMEOUT:?}:\n{}", self.log_tail());
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last 30 lines of the process's log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
