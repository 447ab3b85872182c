//! The benchmark's own Mosquitto (Debian's `/usr/sbin/mosquitto`) on an
//! ephemeral port, configured to hold a backlog: no queue limit, 20,000 QoS 1
//! messages in flight per client (as `deploy/mosquitto/kordon.conf`), Nagle
//! off. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARIES: [&str; 2] = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];

pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// A free TCP port on 127.0.0.1 (free when asked; nobody else races us here).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Result<Mosquitto, String> {
        let binary = BINARIES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or("no mosquitto binary (/usr/sbin/mosquitto): `apt-get install mosquitto`")?;
        let port = free_port()?;
        let log = dir.join("mosquitto.log");
        let config = dir.join("mosquitto.conf");
        std::fs::write(&config, config_text(port, &log))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut mosquitto = Mosquitto { child, port, log };
        wait_listening(&mut mosquitto.child, port, "mosquitto", &mosquitto.log)?;
        Ok(mosquitto)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Mosquitto's log lines about `client` connecting or losing its
    /// connection (its `New client connected … as {client}` lines count
    /// the connections).
    pub fn log_about(&self, client: &str) -> Vec<String> {
        let words = ["connected", "disconnect", "closed", "timeout", "error"];
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!(" {client}")) || l.contains(&format!("as {client} ")))
            .filter(|l| words.iter().any(|w| l.to_lowercase().contains(w)))
            .map(str::to_string)
            .collect()
    }

    /// How often `client` connected.
    pub fn connections_of(&self, client: &str) -> usize {
        self.log_about(client)
            .iter()
            .filter(|l| l.contains("New client connected") && l.contains(&format!("as {client} ")))
            .count()
    }
}

fn config_text(port: u16, log: &Path) -> String {
    format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         user root\n\
         persistence false\n\
         set_tcp_nodelay true\n\
         max_inflight_messages 20000\n\
         max_queued_messages 0\n\
         max_queued_bytes 0\n\
         max_packet_size 262144\n\
         log_dest file {}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n",
        log.display()
    )
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to 10 s until a server just started (`name`, for the error)
/// listens on `port`; an error naming its log if it exits first.
pub fn wait_listening(child: &mut Child, port: u16, name: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{name} exited at start ({status}); see {}",
                log.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{name} is not listening after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
