//! kordon behind TLS and the shipped ACL (`deploy/mosquitto/kordon.acl`), on
//! a Mosquitto of each test's own: ephemeral port, temporary directory, a CA
//! and server certificate made at test time, `allow_anonymous false` and a
//! password file with `kordon`, `OFF-0001`, `VIC-0001` and `monitoring`.
//!
//! Without a `mosquitto` binary the tests say loudly that they were skipped
//! and pass, unless `KORDON_REQUIRE_MOSQUITTO=1` (CI) makes that a failure.
//!
//! Proving that something never arrives: every negative check is followed by
//! a marker that the same subscriber may read, published after the forbidden
//! message was acknowledged by the broker. Mosquitto routes each message when
//! it receives it and delivers to a client in order, so a forbidden message
//! that got through would arrive before the marker; a short drain after the
//! marker is only a second look.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{config_text, fix_json, north, TestCase, HOME};
use jiff::{SignedDuration, Timestamp};
use kordon_ingest::topic::ENGINE_STATUS;
use kordon_ingest::BrokerSettings;
use kordon_server::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, Incoming, MqttOptions, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsError, Transport,
};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

/// Generous: two cores shared with other builds and tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A second look after a marker, for anything that arrives late.
const SETTLE: Duration = Duration::from_millis(1500);

const ACCOUNTS: &[&str] = &["kordon", "OFF-0001", "VIC-0001", "monitoring"];

fn password(user: &str) -> String {
    format!("{user}-tls-acl-test-secret")
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// The Mosquitto binaries, or a loud skip.

struct Tools {
    mosquitto: PathBuf,
    passwd: PathBuf,
}

fn find_binary(name: &str, also: &[&str]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(also.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// The binaries, or `None` after a skip notice that bypasses the test
/// harness's output capture (so it shows even when the test passes).
fn tools() -> Option<Tools> {
    let mosquitto = find_binary(
        "mosquitto",
        &["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"],
    );
    let passwd = find_binary(
        "mosquitto_passwd",
        &[
            "/usr/bin/mosquitto_passwd",
            "/usr/local/bin/mosquitto_passwd",
        ],
    );
    if let (Some(mosquitto), Some(passwd)) = (&mosquitto, &passwd) {
        return Some(Tools {
            mosquitto: mosquitto.clone(),
            passwd: passwd.clone(),
        });
    }
    let missing = [
        ("mosquitto", mosquitto.is_none()),
        ("mosquitto_passwd", passwd.is_none()),
    ]
    .iter()
    .filter(|(_, missing)| *missing)
    .map(|(name, _)| *name)
    .collect::<Vec<_>>()
    .join(" and ");
    if std::env::var("KORDON_REQUIRE_MOSQUITTO").as_deref() == Ok("1") {
        panic!(
            "KORDON_REQUIRE_MOSQUITTO=1 but no mosquitto binary: {missing} not found on PATH \
             nor in /usr/sbin, /usr/local/sbin, /usr/bin (install the mosquitto package)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n\
         ************************************************************************\n\
         *** tls_acl: skipped: no mosquitto binary ({missing} not found).\n\
         *** TLS and the shipped ACL were NOT tested. Install mosquitto, or set\n\
         *** KORDON_REQUIRE_MOSQUITTO=1 to make this a failure.\n\
         ************************************************************************\n"
    );
    None
}

// ---------------------------------------------------------------------------
// Certificates.

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// PEM certificate and key for 127.0.0.1 and localhost, signed by `ca`.
fn server_certificate(ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kordon test broker");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &**ca).unwrap();
    (certificate.pem(), key.serialize_pem())
}

// ---------------------------------------------------------------------------
// A Mosquitto of the test's own, killed on drop.

struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn shipped_acl() -> PathBuf {
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/mosquitto/kordon.acl");
    acl.canonicalize()
        .unwrap_or_else(|e| panic!("the shipped ACL {}: {e}", acl.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mosquitto {
    fn start(tools: &Tools) -> Mosquitto {
        let mut dir = tempfile::Builder::new()
            .prefix("kordon-tls-acl-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let path = |name: &str| root.join(name);
        let ca = new_ca("kordon test CA");
        let (certificate, key) = server_certificate(&ca);
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(path("server.pem"), certificate).unwrap();
        std::fs::write(path("server.key"), key).unwrap();

        for (i, user) in ACCOUNTS.iter().enumerate() {
            let mut command = Command::new(&tools.passwd);
            if i == 0 {
                command.arg("-c");
            }
            let out = command
                .arg("-b")
                .arg(path("passwd"))
                .arg(user)
                .arg(password(user))
                .stdin(Stdio::null())
                .output()
                .expect("mosquitto_passwd runs");
            assert!(
                out.status.success(),
                "mosquitto_passwd for {user}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let acl = shipped_acl();
        for file in [root.as_path(), acl.as_path()] {
            assert!(
                !file.to_string_lossy().contains(char::is_whitespace),
                "mosquitto.conf cannot name {}: it contains whitespace",
                file.display()
            );
        }

        // A port that was free a moment ago may be taken by the time
        // Mosquitto binds it: then it exits, and we try another.
        for attempt in 1..=5 {
            let port = free_port();
            let config = format!(
                "# Written by crates/server/tests/tls_acl.rs\n\
                 # Run as root (CI containers), Mosquitto would drop to the `mosquitto`\n\
                 # user, which cannot read this private directory; as anyone else this\n\
                 # line has no effect.\n\
                 user root\n\
                 per_listener_settings false\n\
                 allow_anonymous false\n\
                 password_file {passwd}\n\
                 acl_file {acl}\n\
                 persistence false\n\
                 set_tcp_nodelay true\n\
                 log_dest stderr\n\
                 log_type all\n\
                 connection_messages true\n\
                 listener {port} 127.0.0.1\n\
                 cafile {ca}\n\
                 certfile {cert}\n\
                 keyfile {key}\n\
                 require_certificate false\n",
                passwd = path("passwd").display(),
                acl = acl.display(),
                ca = path("ca.pem").display(),
                cert = path("server.pem").display(),
                key = path("server.key").display(),
            );
            let conf = path(&format!("mosquitto-{attempt}.conf"));
            std::fs::write(&conf, config).unwrap();
            let log = path(&format!("mosquitto-{attempt}.log"));
            let log_file = std::fs::File::create(&log).unwrap();
            let child = Command::new(&tools.mosquitto)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", tools.mosquitto.display()));
            let mut broker = Mosquitto {
                child,
                port,
                log,
                dir,
            };
            match broker.wait_accepting() {
                Ok(()) => return broker,
                Err(text) if text.contains("Address already in use") && attempt < 5 => {
                    dir = broker.into_dir();
                    continue;
                }
                Err(text) => panic!("mosquitto did not come up on port {port}:\n{text}"),
            }
        }
        unreachable!()
    }

    /// Until the listener accepts TCP connections; the log if Mosquitto
    /// exits or never listens.
    fn wait_accepting(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", self.log_text()));
            }
            // Nothing to await here but the port itself.
            if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "not listening after {CONNECT_TIMEOUT:?}:\n{}",
            self.log_text()
        ))
    }

    /// Stops this attempt and keeps the directory for the next.
    fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kordon's settings for this broker as `user`.
    fn settings(&self, user: &str, ca_file: PathBuf) -> BrokerSettings {
        BrokerSettings {
            url: self.url(),
            client_id: format!("kordon-tls-{}", unique()),
            username: Some(user.to_string()),
            password: Some(password(user)),
            ca_file: Some(ca_file),
            keep_alive_s: 5,
        }
    }

    /// The broker's own word on what it refused, for the test's output.
    fn show_denials(&self) {
        let denied: Vec<String> = self
            .log_text()
            .lines()
            .filter(|l| l.contains("Denied"))
            .map(str::to_string)
            .collect();
        eprintln!(
            "mosquitto denied {} message(s):\n{}",
            denied.len(),
            denied.join("\n")
        );
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- mosquitto log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

fn install_crypto_provider() {
    // rustls needs a process-wide provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------
// A plain rumqttc client over TLS, logged in as one account.

#[derive(Debug)]
enum Ev {
    ConnAck,
    SubAck(Vec<SubscribeReasonCode>),
    PubAck,
    Publish(String, String),
    Error(String),
}

struct Mqtt {
    user: String,
    client: AsyncClient,
    events: mpsc::Receiver<Ev>,
    /// Publishes received and not yet consumed, in arrival order.
    inbox: Vec<(String, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mqtt {
    /// Connected (ConnAck received) as `user` with its password.
    async fn connect(broker: &Mosquitto, user: &str) -> Mqtt {
        Self::connect_with(broker, Some((user, password(user))))
            .await
            .unwrap_or_else(|errors| panic!("{user} could not connect: {errors:?}"))
    }

    /// `Err` with the connection errors if the broker refuses (or the
    /// connection never completes within the timeout).
    async fn connect_with(
        broker: &Mosquitto,
        credentials: Option<(&str, String)>,
    ) -> Result<Mqtt, Vec<String>> {
        install_crypto_provider();
        let user = credentials.as_ref().map_or("anonymous", |(u, _)| *u);
        let mut options = MqttOptions::new(
            format!("tls-acl-{}-{}", user, unique()),
            "127.0.0.1",
            broker.port,
        );
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_transport(Transport::tls(
                std::fs::read(broker.ca_file()).unwrap(),
                None,
                None,
            ));
        if let Some((user, password)) = &credentials {
            options.set_credentials(*user, password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        // Bounded like every queue in kordon; a test client never holds more.
        let (tx, events) = mpsc::channel(10_000);
        let task = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Ev::ConnAck,
                    Ok(Event::Incoming(Incoming::SubAck(ack))) => Ev::SubAck(ack.return_codes),
                    Ok(Event::Incoming(Incoming::PubAck(_))) => Ev::PubAck,
                    Ok(Event::Incoming(Incoming::Publish(p))) => Ev::Publish(
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    ),
                    Ok(_) => continue,
                    Err(e) => {
                        let refused = matches!(e, ConnectionError::ConnectionRefused(_));
                        if tx.send(Ev::Error(format!("{e:?}"))).await.is_err() || refused {
                            return;
                        }
                        // The next poll dials again.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        let mut mqtt = Mqtt {
            user: user.to_string(),
            client,
            events,
            inbox: Vec::new(),
            task,
        };
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut errors = Vec::new();
        loop {
            match timeout_at(deadline, mqtt.events.recv()).await {
                Ok(Some(Ev::ConnAck)) => return Ok(mqtt),
                Ok(Some(Ev::Error(e))) => {
                    let refused = e.contains("ConnectionRefused");
                    errors.push(e);
                    if refused || errors.len() >= 3 {
                        return Err(errors);
                    }
                }
                Ok(Some(other)) => errors.push(format!("before ConnAck: {other:?}")),
                Ok(None) => return Err(errors),
                Err(_) => {
                    errors.push(format!("no ConnAck within {CONNECT_TIMEOUT:?}"));
                    return Err(errors);
                }
            }
        }
    }

    /// The next event other than a publish (publishes go to the inbox).
    async fn next_control(&mut self, what: &str) -> Ev {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ev::Publish(topic, payload))) => self.inbox.push((topic, payload)),
                Ok(Some(Ev::Error(e))) => {
                    panic!("{}: connection error waiting for {what}: {e}", self.user)
                }
                Ok(Some(ev)) => return ev,
                Ok(None) => panic!("{}: event loop ended waiting for {what}", self.user),
                Err(_) => panic!("{}: no {what} within {EVENT_TIMEOUT:?}", self.user),
            }
        }
    }

    /// Subscribes at QoS 1 and returns the broker's answer per filter.
    async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce)),
            )
            .await
            .unwrap();
        match self.next_control("SubAck").await {
            Ev::SubAck(codes) => {
                assert_eq!(codes.len(), filters.len(), "{}: SubAck codes", self.user);
                codes
            }
            other => panic!("{}: expected SubAck, got {other:?}", self.user),
        }
    }

    /// Publishes at QoS 1 and waits for the broker's PubAck: the broker has
    /// routed (or dropped) it by then. Mosquitto acknowledges a publish the
    /// ACL denies as well, so this says nothing about who receives it.
    async fn publish(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        match self.next_control("PubAck").await {
            Ev::PubAck => {}
            other => panic!("{}: expected PubAck for {topic}, got {other:?}", self.user),
        }
    }

    /// The first publish (already received or arriving within the timeout)
    /// that matches; it is consumed, the others stay in the inbox.
    async fn expect(
        &mut self,
        what: &str,
        matches: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        if let Some(i) = self.inbox.iter().position(|(t, p)| matches(t, p)) {
            return self.inbox.remove(i);
        }
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ev::Publish(topic, payload))) => {
                    if matches(&topic, &payload) {
                        return (topic, payload);
                    }
                    self.inbox.push((topic, payload));
                }
                Ok(Some(Ev::Error(e))) => {
                    panic!("{}: connection error waiting for {what}: {e}", self.user)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!(
                    "{}: expected {what} within {EVENT_TIMEOUT:?}; received meanwhile:\n{}",
                    self.user,
                    describe(&self.inbox)
                ),
            }
        }
    }

    /// Everything received and not consumed, including what arrives within
    /// `settle`.
    async fn drain(&mut self, settle: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + settle;
        while let Ok(Some(ev)) = timeout_at(deadline, self.events.recv()).await {
            match ev {
                Ev::Publish(topic, payload) => self.inbox.push((topic, payload)),
                Ev::Error(e) => panic!("{}: connection error while draining: {e}", self.user),
                _ => {}
            }
        }
        std::mem::take(&mut self.inbox)
    }
}

fn describe(messages: &[(String, String)]) -> String {
    if messages.is_empty() {
        return "(nothing)".to_string();
    }
    messages
        .iter()
        .map(|(t, p)| format!("  {t}  {}", p.chars().take(160).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// TLS

/// The rustls error inside a connection error, if it is one.
fn rustls_error(error: &ConnectionError) -> Option<&rustls::Error> {
    let io = match error {
        ConnectionError::Tls(TlsError::TLS(e)) => return Some(e),
        ConnectionError::Tls(TlsError::Io(io)) | ConnectionError::Io(io) => io,
        _ => return None,
    };
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// kordon's own connection code (`kordon_ingest::connect`) reaches ConnAck
/// over `mqtts://` with the generated CA as `ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kordon_connects_over_tls_trusting_the_configured_ca() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let settings = broker.settings("kordon", broker.ca_file());
    let (client, mut eventloop) = kordon_ingest::connect(&settings, 10).unwrap();
    let connack = timeout(CONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => return ack,
                Ok(_) => {}
                Err(e) => panic!("kordon's TLS connection failed: {e:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no ConnAck within {CONNECT_TIMEOUT:?}"));
    assert_eq!(connack.code, ConnectReturnCode::Success);
    client.try_disconnect().unwrap();
    let log = broker.log_text();
    assert!(
        log.contains("u'kordon'") && log.contains(&settings.client_id),
        "the broker logged kordon's authenticated connection:\n{log}"
    );
}

/// With `ca_file` naming another CA, kordon refuses the broker's
/// certificate: TLS errors, never a ConnAck, also on the attempts after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kordon_refuses_a_broker_certificate_from_another_ca() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let other_ca = broker.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, new_ca("some other CA").pem()).unwrap();
    let settings = broker.settings("kordon", other_ca);
    let (_client, mut eventloop) = kordon_ingest::connect(&settings, 10).unwrap();
    for attempt in 1..=3 {
        let error = timeout(CONNECT_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => panic!(
                        "ConnAck from a broker whose certificate kordon must not trust: {ack:?}"
                    ),
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!("attempt {attempt}: neither an error nor ConnAck within {CONNECT_TIMEOUT:?}")
        });
        let tls = rustls_error(&error)
            .unwrap_or_else(|| panic!("attempt {attempt}: not a TLS error: {error:?}"));
        assert!(
            matches!(
                tls,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "attempt {attempt}: expected an unknown-issuer certificate error, got {tls:?}"
        );
    }
}

/// The whole kordon over TLS, as the `kordon` account under the shipped
/// ACL: devices publish as themselves, a breach alert reaches a subscriber
/// logged in as `monitoring` on `kordon/v1/alerts/police`, the victim
/// device gets its warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_alert_reaches_monitoring_over_tls_through_the_shipped_acl() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let case = TestCase {
        id: "TLS-ACL-0001".to_string(),
        offender: "OFF-0001".to_string(),
        victim: "VIC-0001".to_string(),
        risk: "high",
    };
    let kordon_dir = broker.dir.path().join("kordon");
    let case_dir = kordon_dir.join("cases");
    std::fs::create_dir_all(&case_dir).unwrap();
    std::fs::write(
        case_dir.join(format!("{}.json", case.id.to_lowercase())),
        case.json().to_string(),
    )
    .unwrap();
    let config_path = kordon_dir.join("kordon.toml");
    std::fs::write(
        &config_path,
        config_text(&broker.url(), &case_dir, "kordon-tls-acl", 120),
    )
    .unwrap();
    let mut config = Config::load(&config_path).unwrap();
    config.broker.username = Some("kordon".to_string());
    config.broker.password = Some(password("kordon"));
    config.broker.ca_file = Some(broker.ca_file());

    let mut monitoring = Mqtt::connect(&broker, "monitoring").await;
    let codes = monitoring
        .subscribe(&[
            "kordon/v1/alerts/police",
            "kordon/v1/alerts/monitoring",
            "kordon/v1/rejects",
            ENGINE_STATUS,
        ])
        .await;
    assert!(codes
        .iter()
        .all(|c| matches!(c, SubscribeReasonCode::Success(_))));
    let mut offender = Mqtt::connect(&broker, "OFF-0001").await;
    let mut victim = Mqtt::connect(&broker, "VIC-0001").await;
    victim
        .subscribe(&["kordon/v1/devices/VIC-0001/warning"])
        .await;

    let running = timeout(Duration::from_secs(60), kordon_server::start(config))
        .await
        .expect("kordon starts within a minute")
        .expect("kordon starts");
    monitoring
        .expect("kordon's online status", |t, p| {
            t == ENGINE_STATUS && p == "online"
        })
        .await;

    wait_for_kordons_subscriptions(&mut offender, &mut monitoring).await;
    drive_a_proximity_breach(&mut offender, &mut victim).await;
    expect_the_breach(&mut monitoring, &mut victim, &case).await;

    timeout(Duration::from_secs(60), running.shutdown())
        .await
        .expect("kordon stops within a minute");
    monitoring
        .expect("kordon's offline status", |t, p| {
            t == ENGINE_STATUS && p == "offline"
        })
        .await;
    broker.show_denials();
}

/// kordon's subscriptions are in place once a malformed fix comes back as
/// a reject (it was the device's own topic: the ACL lets it through).
async fn wait_for_kordons_subscriptions(offender: &mut Mqtt, monitoring: &mut Mqtt) {
    for probe in 0..60 {
        offender
            .publish(OWN_FIX, &format!("probe {probe}: not JSON"))
            .await;
        if timeout(
            Duration::from_secs(1),
            monitoring.expect("a reject", |t, p| {
                t == "kordon/v1/rejects" && p.contains("OFF-0001")
            }),
        )
        .await
        .is_ok()
        {
            return;
        }
    }
    panic!("kordon refused none of the probes within a minute");
}

const OWN_FIX: &str = "kordon/v1/devices/OFF-0001/fix";

/// OFF-0001 walks up to VIC-0001 at home.
async fn drive_a_proximity_breach(offender: &mut Mqtt, victim: &mut Mqtt) {
    let mut t = Timestamp::now() - SignedDuration::from_mins(30);
    victim
        .publish(
            "kordon/v1/devices/VIC-0001/fix",
            &fix_json(HOME.0, HOME.1, 5.0, t),
        )
        .await;
    for metres in [2000.0, 400.0, 100.0, 60.0] {
        t += SignedDuration::from_secs(30);
        let (lat, lon) = north(HOME, metres);
        offender.publish(OWN_FIX, &fix_json(lat, lon, 5.0, t)).await;
    }
    // A fresh fix of hers makes the breach certain, which is what her
    // device hears of (a possible one on her old position does not buzz it).
    t += SignedDuration::from_secs(5);
    victim
        .publish(
            "kordon/v1/devices/VIC-0001/fix",
            &fix_json(HOME.0, HOME.1, 5.0, t),
        )
        .await;
    t += SignedDuration::from_secs(5);
    let (lat, lon) = north(HOME, 50.0);
    offender.publish(OWN_FIX, &fix_json(lat, lon, 5.0, t)).await;
}

/// The breach reaches the police, the monitoring room and her device, and
/// the warning carries no position.
async fn expect_the_breach(monitoring: &mut Mqtt, victim: &mut Mqtt, case: &TestCase) {
    let is_breach = |p: &str| {
        let alert: serde_json::Value = serde_json::from_str(p).unwrap_or_default();
        alert["case"] == case.id.as_str() && alert["kind"] == "proximity_breach"
    };
    let (_, alert) = monitoring
        .expect("a proximity breach on kordon/v1/alerts/police", |t, p| {
            t == "kordon/v1/alerts/police" && is_breach(p)
        })
        .await;
    let alert: serde_json::Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(alert["offender"]["device"], "OFF-0001");
    assert_eq!(alert["protected"]["device"], "VIC-0001");
    assert!(alert["distance_m"].as_f64().unwrap() < 200.0, "{alert}");
    monitoring
        .expect("the breach on kordon/v1/alerts/monitoring", |t, p| {
            t == "kordon/v1/alerts/monitoring" && is_breach(p)
        })
        .await;
    let (_, warning) = victim
        .expect("the victim device's warning", |t, _| {
            t == "kordon/v1/devices/VIC-0001/warning"
        })
        .await;
    assert!(
        !warning.contains("\"lat\"") && !warning.contains("\"lon\""),
        "a warning carries no position: {warning}"
    );
}

/// Cluster mode behind the same TLS and ACL: the bridge and the deliverer
/// (run by the member holding shard 0) reach Mosquitto with `[broker]`'s
/// credentials and CA, as the `kordon` user; a breach goes from the
/// devices through the shard's stream to the police, the room and her
/// device. Needs nats-server too (skipped loudly without it, unless
/// `KORDON_REQUIRE_NATS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_member_bridges_and_delivers_over_tls_through_the_shipped_acl() {
    use kordon_cluster::brokers::DeviceBroker;
    use kordon_cluster::{ClusterSettings, InstanceId, LeaseTimes, Retention, ShardCount};
    use kordon_server::cluster_node::{duties::DutiesSettings, Instance};

    let Some(tools) = tools() else { return };
    let Some(nats) = kordon_cluster::testkit::Nats::start() else {
        return;
    };
    let broker = Mosquitto::start(&tools);
    let case = TestCase {
        id: "TLS-ACL-0002".to_string(),
        offender: "OFF-0001".to_string(),
        victim: "VIC-0001".to_string(),
        risk: "high",
    };
    let dir = broker.dir.path().join("kordon-cluster");
    let config_path = dir.join("kordon.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        &config_path,
        format!(
            "{}\n[journal]\ndir = \"{}\"\n",
            config_text(&broker.url(), &dir.join("cases"), "kordon-tls-cluster", 120),
            dir.join("journal").display()
        ),
    )
    .unwrap();
    let mut config = Config::load(&config_path).unwrap();
    config.broker.username = Some("kordon".to_string());
    config.broker.password = Some(password("kordon"));
    config.broker.ca_file = Some(broker.ca_file());
    install_crypto_provider();
    let mqtt = kordon_ingest::broker::client_options(
        &config.broker_settings(broker.url()),
        &config.broker.client_id,
    )
    .unwrap();

    let js =
        async_nats::jetstream::new(kordon_cluster::keeper::connect(&nats.url()).await.unwrap());
    let bucket = kordon_cluster::cases::open(&js, 1).await.unwrap();
    let kordon_case: kordon_core::Case = serde_json::from_value(case.json()).unwrap();
    kordon_cluster::cases::put(&bucket, &kordon_case)
        .await
        .unwrap();

    let mut monitoring = Mqtt::connect(&broker, "monitoring").await;
    monitoring
        .subscribe(&[
            "kordon/v1/alerts/police",
            "kordon/v1/alerts/monitoring",
            "kordon/v1/rejects",
        ])
        .await;
    let mut offender = Mqtt::connect(&broker, "OFF-0001").await;
    let mut victim = Mqtt::connect(&broker, "VIC-0001").await;
    victim
        .subscribe(&["kordon/v1/devices/VIC-0001/warning"])
        .await;

    let settings = ClusterSettings {
        nats_url: nats.url(),
        bucket: ClusterSettings::DEFAULT_BUCKET.to_string(),
        instance: InstanceId::new("tls").unwrap(),
        shards: ShardCount::new(1).unwrap(),
        times: LeaseTimes::default(),
        replicas: 1,
        retention: Retention::default(),
    };
    let brokers = DeviceBroker::list(vec![mqtt], settings.shards).unwrap();
    let member = Instance::start(&config, settings, Some(DutiesSettings { brokers }))
        .await
        .expect("the member starts");

    wait_for_kordons_subscriptions(&mut offender, &mut monitoring).await;
    drive_a_proximity_breach(&mut offender, &mut victim).await;
    expect_the_breach(&mut monitoring, &mut victim, &case).await;
    member.leave().await;
    broker.show_denials();
}

// ---------------------------------------------------------------------------
// Authentication and the ACL, with plain rumqttc clients over TLS.

/// Without credentials, or with a wrong password, no connection: the ACL
/// tests below rest on every client being who it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_anonymous_clients_and_wrong_passwords() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    for credentials in [
        None,
        Some(("OFF-0001", "wrong".to_string())),
        Some(("OFF-0001", password("VIC-0001"))),
    ] {
        let shown = format!("{credentials:?}");
        match Mqtt::connect_with(&broker, credentials).await {
            Ok(_) => panic!("connected with {shown}"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains("ConnectionRefused")),
                "{shown}: expected a refusal, got {errors:?}"
            ),
        }
    }
    // The right password works, so the refusals above were about credentials.
    Mqtt::connect(&broker, "OFF-0001").await;
}

/// A device account publishes only on its own topics: what OFF-0001 sends
/// on OFF-0002's or VIC-0001's topics, or on its own warning topic (which
/// kordon reads back as proof of delivery), never reaches `kordon`; its own
/// fix does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_on_another_devices_topics() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let mut kordon = Mqtt::connect(&broker, "kordon").await;
    kordon
        .subscribe(&[
            "kordon/v1/devices/+/fix",
            "kordon/v1/devices/+/fix.bin",
            "kordon/v1/devices/+/status",
            "kordon/v1/devices/+/warning",
        ])
        .await;
    let mut offender = Mqtt::connect(&broker, "OFF-0001").await;
    let ts = Timestamp::now();
    let forged = [
        "kordon/v1/devices/OFF-0002/fix",
        "kordon/v1/devices/OFF-0002/fix.bin",
        "kordon/v1/devices/OFF-0002/status",
        "kordon/v1/devices/VIC-0001/fix",
        "kordon/v1/devices/OFF-0001/warning",
    ];
    for topic in forged {
        offender
            .publish(
                topic,
                &format!(r#"{{"forged":"{topic}","ts":"{ts}","lat":51.92,"lon":4.547,"acc":5}}"#),
            )
            .await;
    }
    let own = fix_json(51.9, 4.5, 5.0, ts);
    offender
        .publish("kordon/v1/devices/OFF-0001/fix", &own)
        .await;

    kordon
        .expect("OFF-0001's own fix", |t, p| {
            t == "kordon/v1/devices/OFF-0001/fix" && p == own
        })
        .await;
    let before = std::mem::take(&mut kordon.inbox);
    let after = kordon.drain(SETTLE).await;
    assert!(
        before.is_empty() && after.is_empty(),
        "forged messages reached kordon:\nbefore OFF-0001's own fix:\n{}\nafter it:\n{}",
        describe(&before),
        describe(&after)
    );
    broker.show_denials();
}

/// A device account reads nothing but its own warning and the engine
/// status: not the alert topics (subscribed by wildcard or by name), not the
/// victim's warning, not the victim's position, not the rejects; while
/// `monitoring` receives the alerts and the victim device its warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_read_alerts_nor_the_victims_topics() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let mut kordon = Mqtt::connect(&broker, "kordon").await;
    let mut monitoring = Mqtt::connect(&broker, "monitoring").await;
    monitoring
        .subscribe(&["kordon/v1/alerts/police", "kordon/v1/alerts/monitoring"])
        .await;
    let mut victim = Mqtt::connect(&broker, "VIC-0001").await;
    victim
        .subscribe(&["kordon/v1/devices/VIC-0001/warning"])
        .await;
    let mut offender = Mqtt::connect(&broker, "OFF-0001").await;
    let codes = offender
        .subscribe(&[
            "kordon/v1/alerts/#",
            "kordon/v1/alerts/police",
            "kordon/v1/alerts/monitoring",
            "kordon/v1/alerts/police/cap",
            "kordon/v1/devices/+/fix",
            "kordon/v1/devices/+/warning",
            "kordon/v1/devices/VIC-0001/warning",
            "kordon/v1/cases/+/coordinators",
            "kordon/v1/rejects",
            "#",
            "kordon/v1/devices/OFF-0001/warning",
        ])
        .await;
    // Mosquitto 2.0 grants subscriptions and applies the ACL per message.
    eprintln!("SubAck codes for OFF-0001: {codes:?}");

    let ts = Timestamp::now();
    // The victim's own position, from her device.
    let victim_fix = fix_json(HOME.0, HOME.1, 5.0, ts);
    victim
        .publish("kordon/v1/devices/VIC-0001/fix", &victim_fix)
        .await;
    let alert = serde_json::json!({
        "id": "tls-acl-1", "event": "opened", "kind": "proximity_breach",
        "case": "TLS-ACL-0001", "device": "OFF-0001",
        "protected": {"device": "VIC-0001", "lat": HOME.0, "lon": HOME.1},
    })
    .to_string();
    for topic in [
        "kordon/v1/alerts/police",
        "kordon/v1/alerts/monitoring",
        "kordon/v1/alerts/police/cap",
        "kordon/v1/devices/VIC-0001/warning",
        "kordon/v1/cases/TLS-ACL-0001/coordinators",
        "kordon/v1/rejects",
    ] {
        kordon.publish(topic, &alert).await;
    }
    let marker = r#"{"marker":"for OFF-0001"}"#;
    kordon
        .publish("kordon/v1/devices/OFF-0001/warning", marker)
        .await;

    // The others do receive what is theirs.
    for topic in ["kordon/v1/alerts/police", "kordon/v1/alerts/monitoring"] {
        monitoring
            .expect(&format!("the alert on {topic}"), |t, p| {
                t == topic && p == alert
            })
            .await;
    }
    victim
        .expect("the victim's warning", |t, p| {
            t == "kordon/v1/devices/VIC-0001/warning" && p == alert
        })
        .await;

    offender
        .expect("its own warning", |t, p| {
            t == "kordon/v1/devices/OFF-0001/warning" && p == marker
        })
        .await;
    let mut received = std::mem::take(&mut offender.inbox);
    received.extend(offender.drain(SETTLE).await);
    let leaked: Vec<(String, String)> = received
        .into_iter()
        // The same warning again through `#` and `+/warning`.
        .filter(|(t, p)| !(t == "kordon/v1/devices/OFF-0001/warning" && p == marker))
        .collect();
    assert!(
        leaked.is_empty(),
        "OFF-0001 read what is not its own:\n{}",
        describe(&leaked)
    );
    broker.show_denials();
}

/// A device account cannot forge what kordon or the operators publish:
/// alerts, acknowledgements, CAP, the engine status, rejects, escalations.
/// Neither `kordon` (which reads its alert topics back as proof of
/// delivery) nor `monitoring` receives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_forge_alerts_acknowledgements_or_status() {
    let Some(tools) = tools() else { return };
    let broker = Mosquitto::start(&tools);
    let mut kordon = Mqtt::connect(&broker, "kordon").await;
    kordon
        .subscribe(&[
            "kordon/v1/alerts/+",
            "kordon/v1/alerts/police/+",
            "kordon/v1/devices/+/warning",
            "kordon/v1/cases/+/coordinators",
            ENGINE_STATUS,
            "kordon/v1/devices/+/fix",
        ])
        .await;
    let mut monitoring = Mqtt::connect(&broker, "monitoring").await;
    monitoring
        .subscribe(&[
            "kordon/v1/alerts/police",
            "kordon/v1/alerts/monitoring",
            "kordon/v1/alerts/police/cap",
            "kordon/v1/rejects",
            ENGINE_STATUS,
        ])
        .await;
    let mut offender = Mqtt::connect(&broker, "OFF-0001").await;
    let forged = serde_json::json!({
        "id": "forged", "event": "cleared", "kind": "proximity_breach",
        "reason": "resolved", "operator": "OFF-0001",
    })
    .to_string();
    for topic in [
        "kordon/v1/alerts/police",
        "kordon/v1/alerts/monitoring",
        "kordon/v1/alerts/ack",
        "kordon/v1/alerts/~fence",
        "kordon/v1/alerts/police/cap",
        "kordon/v1/devices/VIC-0001/warning",
        "kordon/v1/cases/TLS-ACL-0001/coordinators",
        "kordon/v1/rejects",
        ENGINE_STATUS,
    ] {
        offender.publish(topic, &forged).await;
    }
    let own = fix_json(51.9, 4.5, 5.0, Timestamp::now());
    offender
        .publish("kordon/v1/devices/OFF-0001/fix", &own)
        .await;
    // A real alert from kordon: the marker for monitoring.
    let real = r#"{"id":"real","event":"opened","kind":"proximity_breach"}"#;
    kordon.publish("kordon/v1/alerts/police", real).await;

    kordon
        .expect("OFF-0001's own fix", |t, p| {
            t == "kordon/v1/devices/OFF-0001/fix" && p == own
        })
        .await;
    kordon
        .expect("its own alert back", |t, p| {
            t == "kordon/v1/alerts/police" && p == real
        })
        .await;
    monitoring
        .expect("kordon's alert", |t, p| {
            t == "kordon/v1/alerts/police" && p == real
        })
        .await;
    for client in [&mut kordon, &mut monitoring] {
        let mut received = std::mem::take(&mut client.inbox);
        received.extend(client.drain(SETTLE).await);
        assert!(
            received.is_empty(),
            "{} received forged messages:\n{}",
            client.user,
            describe(&received)
        );
    }
    // A retained forgery would reach a subscriber that comes later.
    let mut late = Mqtt::connect(&broker, "monitoring").await;
    late.subscribe(&[ENGINE_STATUS, "kordon/v1/alerts/police"])
        .await;
    let retained = late.drain(SETTLE).await;
    assert!(
        retained.is_empty(),
        "retained forgeries:\n{}",
        describe(&retained)
    );
    broker.show_denials();
}
