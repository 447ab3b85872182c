//! What the cluster's tests (and kordon-server's) start of their own: a
//! `nats-server` with JetStream and a Mosquitto, each on an ephemeral port,
//! stopped on drop. Built only with the `testkit` feature.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` with JetStream in a directory of its own, stopped on drop.
pub struct Nats {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// `None` where no nats-server is installed, unless
    /// `KORDON_REQUIRE_NATS=1` (as `.ci/run` sets), where that fails the test.
    pub fn start() -> Option<Nats> {
        let Some(binary) = nats_server() else {
            assert!(
                std::env::var("KORDON_REQUIRE_NATS").as_deref() != Ok("1"),
                "KORDON_REQUIRE_NATS=1 but no nats-server (Debian's package nats-server)"
            );
            eprintln!("*** no nats-server: the cluster's NATS tests did not run");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let ports = dir.path().join("ports");
        std::fs::create_dir(&ports).unwrap();
        // nats-server picks a free port and names it in a file once it
        // listens: a port picked here could be taken by a parallel test's
        // server in between, and the check below would then find that one.
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = listening_port(&ports) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited before it listened: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nats-server did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let nats = Nats {
            child,
            port,
            _dir: dir,
        };
        Some(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A JetStream context on this server, with the shards' stream made.
    pub async fn jetstream_with_shard_stream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url()).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        crate::bridge::ensure_shard_stream(&js, 1, None)
            .await
            .expect("the shards' stream");
        js
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client port in the file nats-server writes to `--ports_file_dir`
/// once it listens: `{"nats":["nats://127.0.0.1:PORT"],...}`.
fn listening_port(dir: &std::path::Path) -> Option<u16> {
    let file = std::fs::read_dir(dir).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(file.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports["nats"][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// `nats-server` from `$NATS_SERVER`, the `PATH`, or where Debian puts it
/// (`/usr/sbin`, not on every user's `PATH`).
fn nats_server() -> Option<String> {
    if let Ok(path) = std::env::var("NATS_SERVER") {
        return Some(path);
    }
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Some("nats-server".into());
    }
    let debian = "/usr/sbin/nats-server";
    std::path::Path::new(debian)
        .is_file()
        .then(|| debian.into())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto as `deploy/mosquitto/kordon.conf` sets its queues (without
/// persistence, users and TLS). `None` where none is installed, unless
/// `KORDON_REQUIRE_MOSQUITTO=1` (CI), where that fails the test.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Option<Mosquitto> {
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file());
        let Some(binary) = binary else {
            assert!(
                std::env::var("KORDON_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
                "KORDON_REQUIRE_MOSQUITTO=1 but no mosquitto binary"
            );
            eprintln!("*** no mosquitto binary: the bridge is not tested");
            return None;
        };
        // A port picked here can be taken by a parallel test's broker in
        // between: then this one exits, and another port is tried.
        for _ in 0..5 {
            if let Some(mosquitto) = Mosquitto::start_on(binary, free_port()) {
                return Some(mosquitto);
            }
        }
        panic!("own mosquitto did not stay up on any of 5 ports");
    }

    /// Mosquitto on `port`, or `None` if it exited (the port was taken).
    fn start_on(binary: &str, port: u16) -> Option<Mosquitto> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 set_tcp_nodelay true\nmax_queued_messages 200000\n\
                 max_inflight_messages 20000\nmax_packet_size 262144\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("own mosquitto not listening on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // What answered may be another test's broker on the same port, with
        // this one about to exit for want of it.
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        Some(Mosquitto {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
