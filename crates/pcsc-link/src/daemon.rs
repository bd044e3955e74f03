//! Finds or starts pcscd with the vpcd driver, for tests and the latency bench.
//!
//! The vpcd driver's port is fixed (35963) by `/etc/reader.conf.d/vpcd`, so one pcscd and
//! one virtual card per machine at a time: callers serialise (one test binary, one mutex).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcsc::{Context, Scope};
use thiserror::Error;

pub const PCSCD: &str = "/usr/sbin/pcscd";
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
pub const VPCD_READER_CONF: &str = "/etc/reader.conf.d/vpcd";
/// What to install when something is missing.
pub const PACKAGES: &str = "pcscd vsmartcard-vpcd pcsc-tools";

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(
        "{what} is missing: install the Debian packages `{PACKAGES}` (apt-get install {PACKAGES})"
    )]
    Missing { what: String },
    #[error("starting pcscd: {0}")]
    Spawn(std::io::Error),
    #[error("pcscd did not answer within {0} ms")]
    NotReady(u64),
}

/// pcscd, running; if this process started it, dropping the guard stops it.
#[derive(Debug)]
pub struct Pcscd {
    child: Option<Child>,
}

impl Pcscd {
    /// Whether this process started pcscd (it was not running before).
    pub fn started_here(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Only the daemon we spawned, by its own handle.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn answers() -> bool {
    Context::establish(Scope::User).is_ok()
}

/// Checks the packages are installed, then returns the running pcscd or starts one
/// (`pcscd --foreground`) and waits until it answers.
pub fn ensure_pcscd() -> Result<Pcscd, DaemonError> {
    for what in [PCSCD, VPCD_DRIVER, VPCD_READER_CONF] {
        if !Path::new(what).exists() {
            return Err(DaemonError::Missing {
                what: what.to_string(),
            });
        }
    }
    if answers() {
        return Ok(Pcscd { child: None });
    }
    let child = Command::new(PCSCD)
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(DaemonError::Spawn)?;
    let guard = Pcscd { child: Some(child) };
    let timeout_ms = 10_000;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    while Instant::now() < deadline {
        if answers() {
            return Ok(guard);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(DaemonError::NotReady(timeout_ms))
}

/// Checks an outside PC/SC tool is installed (`opensc-tool` or `scriptor`).
pub fn require_tool(name: &str) -> Result<(), DaemonError> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).exists()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(DaemonError::Missing {
            what: name.to_string(),
        })
    }
}
