//! Finds or starts pcscd with the vpcd driver, for tests and the latency bench.
//!
//! pcscd's socket (`/run/pcscd/pcscd.comm`) is fixed, so one pcscd per machine: callers
//! serialise (one test binary, one mutex). When no pcscd runs, [`ensure_pcscd`] starts one with
//! its own reader configuration (`pcscd --config FILE`) whose vpcd reader listens on a port
//! free at that moment, not on Debian's fixed 35963: a port inside the ephemeral range can be
//! held by any client connection of an earlier test (then pcscd silently starts without the
//! reader and the card's connection is refused). A pcscd that was already running is used
//! only if it lists the vpcd reader; otherwise the error says so.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcsc::{Context, Scope};
use thiserror::Error;

use crate::vpcd::{VPCD_PORT, VpcdConfig};

pub const PCSCD: &str = "/usr/sbin/pcscd";
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
pub const VPCD_READER_CONF: &str = "/etc/reader.conf.d/vpcd";
/// What to install when something is missing.
pub const PACKAGES: &str = "pcscd vsmartcard-vpcd pcsc-tools";
/// The vpcd reader's friendly name; pcscd lists it as `Virtual PCD 00 00`.
pub const VPCD_READER_PREFIX: &str = "Virtual PCD";
/// How long pcscd gets to answer and list the vpcd reader.
const READY_MS: u64 = 10_000;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(
        "{what} is missing: install the Debian packages `{PACKAGES}` (apt-get install {PACKAGES})"
    )]
    Missing { what: String },
    #[error("starting pcscd: {0}")]
    Spawn(std::io::Error),
    #[error("writing pcscd's reader configuration {path}: {source}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pcscd did not answer within {0} ms")]
    NotReady(u64),
    #[error(
        "pcscd answers but does not list the vpcd reader ({VPCD_READER_PREFIX}) after {ms} ms \
         (readers: {readers:?}){hint}"
    )]
    NoVpcdReader {
        ms: u64,
        readers: Vec<String>,
        hint: &'static str,
    },
}

/// pcscd, running, and where its vpcd reader listens; if this process started it, dropping the
/// guard stops it and removes its configuration.
#[derive(Debug)]
pub struct Pcscd {
    child: Option<Child>,
    config: Option<PathBuf>,
    vpcd_port: u16,
}

impl Pcscd {
    /// Whether this process started pcscd (it was not running before).
    pub fn started_here(&self) -> bool {
        self.child.is_some()
    }

    /// The port the vpcd reader of this pcscd listens on.
    pub fn vpcd_port(&self) -> u16 {
        self.vpcd_port
    }

    /// A vpcd link configuration aimed at this pcscd's reader.
    pub fn vpcd_config(&self) -> VpcdConfig {
        VpcdConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.vpcd_port)),
            ..VpcdConfig::default()
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Only the daemon we spawned, by its own handle.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn answers() -> bool {
    Context::establish(Scope::User).is_ok()
}

/// The readers pcscd lists now (empty when it does not answer or lists none).
pub fn readers() -> Vec<String> {
    let Ok(ctx) = Context::establish(Scope::User) else {
        return Vec::new();
    };
    let Ok(names) = ctx.list_readers_owned() else {
        return Vec::new();
    };
    names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

fn has_vpcd_reader() -> bool {
    readers().iter().any(|r| r.starts_with(VPCD_READER_PREFIX))
}

/// Waits until pcscd answers and lists the vpcd reader.
fn wait_for_reader(child: Option<&mut Child>, hint: &'static str) -> Result<(), DaemonError> {
    let deadline = Instant::now() + Duration::from_millis(READY_MS);
    let mut child = child;
    while Instant::now() < deadline {
        if answers() && has_vpcd_reader() {
            return Ok(());
        }
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(DaemonError::Spawn(std::io::Error::other(format!(
                "pcscd exited at start ({status}); is another pcscd holding /run/pcscd/pcscd.comm?"
            ))));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !answers() {
        return Err(DaemonError::NotReady(READY_MS));
    }
    Err(DaemonError::NoVpcdReader {
        ms: READY_MS,
        readers: readers(),
        hint,
    })
}

/// A port `p` such that `p` and `p + 1` are free at this moment: the vpcd driver opens two
/// readers, listening on the configured port and the next one (on all interfaces).
fn free_port() -> std::io::Result<u16> {
    for _ in 0..64 {
        let first = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::UNSPECIFIED, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no two adjacent free ports for the vpcd reader after 64 tries",
    ))
}

/// Checks the packages are installed, then returns the running pcscd (if it lists the vpcd
/// reader on Debian's port) or starts one (`pcscd --foreground --config FILE`, its vpcd reader
/// on a free port) and waits until it answers and lists the reader.
pub fn ensure_pcscd() -> Result<Pcscd, DaemonError> {
    for what in [PCSCD, VPCD_DRIVER, VPCD_READER_CONF] {
        if !Path::new(what).exists() {
            return Err(DaemonError::Missing {
                what: what.to_string(),
            });
        }
    }
    if answers() {
        wait_for_reader(
            None,
            ": the pcscd already running was started without the vpcd driver (before \
             vsmartcard-vpcd was installed, or while port 35963 was taken); restart it \
             (service pcscd restart) or stop it so the tests start their own",
        )?;
        return Ok(Pcscd {
            child: None,
            config: None,
            vpcd_port: VPCD_PORT,
        });
    }
    let port = free_port().map_err(DaemonError::Spawn)?;
    let path = std::env::temp_dir().join(format!("citycard-pcscd-{}.conf", std::process::id()));
    let conf = format!(
        "FRIENDLYNAME \"{VPCD_READER_PREFIX}\"\nDEVICENAME /dev/null:0x{port:04X}\n\
         LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
    );
    std::fs::write(&path, conf).map_err(|source| DaemonError::Config {
        path: path.clone(),
        source,
    })?;
    let child = Command::new(PCSCD)
        .arg("--foreground")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(DaemonError::Spawn)?;
    let mut guard = Pcscd {
        child: Some(child),
        config: Some(path),
        vpcd_port: port,
    };
    wait_for_reader(
        guard.child.as_mut(),
        ": the port chosen for it was taken in the meantime, or the driver failed to load",
    )?;
    Ok(guard)
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
