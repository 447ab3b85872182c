//! The cluster mode's own `nats-server` with JetStream (`-js`), on an
//! ephemeral port with its store in the run's directory, as
//! `crates/cluster/src/testkit.rs` starts one. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::mosquitto::{free_port, wait_listening};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// `nats-server` from `$NATS_SERVER`, the `PATH`, or where Debian puts it.
fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no nats-server (Debian's package nats-server, or $NATS_SERVER)".into())
}

impl NatsServer {
    /// Starts one with its store in `dir/nats` and its log in `dir/nats.log`.
    pub fn start(dir: &Path) -> Result<NatsServer, String> {
        let binary = binary()?;
        let port = free_port()?;
        let store = dir.join("nats");
        std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
        let log = dir.join("nats.log");
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut nats = NatsServer { child, port, log };
        wait_listening(&mut nats.child, port, "nats-server", &nats.log)?;
        Ok(nats)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
