//! kordon's two connections to the MQTT broker, and what they share:
//! options from a URL, persistent sessions (the broker keeps QoS 1 messages
//! for kordon while it reconnects), TCP_NODELAY (Nagle's algorithm costs
//! ~10 ms per alert), TLS for `mqtts://`, credentials, and the back-off
//! between reconnection attempts.
//!
//! - The **ingest link** ([`Dialer`], client id `client_id`) subscribes to
//!   everything kordon reads. The server drives it by hand (its
//!   `ingest_link` module) so that it reads only as fast as kordon handles
//!   messages while always answering the broker, and at most once every
//!   half millisecond, holding its socket's wake-ups meanwhile, and judges
//!   the broker by what its socket sees below TLS ([`LinkSocket`]).
//! - The **publishing link** ([`connect`], client id
//!   [`publisher_client_id`]) is a rumqttc client that publishes alerts and
//!   carries the `offline` last will. It subscribes to nothing.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::tokio_rustls::TlsConnector;
use rumqttc::{
    AsyncClient, EventLoop, LastWill, MqttOptions, NetworkOptions, QoS, TlsConfiguration, Transport,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::topic::ENGINE_STATUS;

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Fixed, so the broker keeps kordon's session across restarts: the
    /// ingest link's; the publishing link's is [`publisher_client_id`].
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM file of the certificate authority for `mqtts://`; the system's
    /// roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
}

fn default_client_id() -> String {
    "kordon".to_string()
}

/// Seconds between kordon's keep-alive pings; the broker publishes
/// kordon's `offline` will after one and a half of them without a word.
///
/// Chosen when one rumqttc connection also read the backlog: the broker's
/// answer to a ping came behind up to 700,000 messages, more than 5 s of
/// reading, and with 5 s kordon dropped the connection every 10 s. The
/// ingest link now takes any byte as an answer, and waits for one only
/// while it reads, so a backlog no longer needs this margin; a shorter
/// period (an earlier `offline`) has not been measured yet.
pub const KEEP_ALIVE_S: u16 = 15;

fn default_keep_alive_s() -> u16 {
    KEEP_ALIVE_S
}

impl BrokerSettings {
    pub fn new(url: impl Into<String>) -> Self {
        BrokerSettings {
            url: url.into(),
            client_id: default_client_id(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive_s: default_keep_alive_s(),
        }
    }
}

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("broker url `{url}`: {problem}")]
    Url { url: String, problem: String },
    #[error("reading the CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate")]
    NoCaCertificate { path: std::path::PathBuf },
}

/// The client id of the publishing link: the configured one (the ingest
/// link's, which keeps the subscriptions and whatever the broker queued
/// for kordon) with `-publisher` after it.
pub fn publisher_client_id(client_id: &str) -> String {
    format!("{client_id}-publisher")
}

/// The TLS settings both links use for `mqtts://`: the configured CA, or
/// the system's roots.
fn tls_config(settings: &BrokerSettings) -> Result<Arc<ClientConfig>, BrokerError> {
    // rustls needs a process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = &settings.ca_file else {
        return match TlsConfiguration::default() {
            TlsConfiguration::Rustls(config) => Ok(config),
            _ => unreachable!("rumqttc is built with rustls only"),
        };
    };
    let pem = std::fs::read(path).map_err(|source| BrokerError::CaFile {
        path: path.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten());
    if roots.is_empty() {
        return Err(BrokerError::NoCaCertificate { path: path.clone() });
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A byte stream to the broker: TCP, or TLS over TCP.
pub trait BrokerStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> BrokerStream for T {}

/// Opens byte streams to the broker for the ingest link, which speaks MQTT
/// itself.
#[derive(Clone)]
pub struct Dialer {
    address: BrokerAddress,
    tls: Option<TlsConnector>,
}

impl Dialer {
    pub fn new(settings: &BrokerSettings) -> Result<Dialer, BrokerError> {
        let address = BrokerAddress::parse(&settings.url)?;
        let tls = match address.tls {
            true => Some(TlsConnector::from(tls_config(settings)?)),
            false => None,
        };
        Ok(Dialer { address, tls })
    }

    /// A connected stream, TLS handshake done, Nagle off, and its socket
    /// seen below TLS.
    pub async fn dial(&self) -> std::io::Result<Dialed> {
        let tcp =
            tokio::net::TcpStream::connect((self.address.host.as_str(), self.address.port)).await?;
        tcp.set_nodelay(true)?;
        let socket = LinkSocket::of(&tcp);
        let stream: Box<dyn BrokerStream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(self.address.host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                Box::new(tls.connect(name, tcp).await?)
            }
        };
        Ok(Dialed { stream, socket })
    }
}

/// A connection [`Dialer::dial`] opened.
pub struct Dialed {
    pub stream: Box<dyn BrokerStream>,
    pub socket: LinkSocket,
}

/// The ingest link's TCP socket, seen below TLS (a second descriptor of
/// it), for what the stream above cannot tell. On other systems than Linux
/// it does nothing and knows nothing.
///
/// - **Wake-ups held back** ([`LinkSocket::hold`]): the kernel wakes a
///   reader for every segment that arrives, and a broker writes each
///   message as it comes, so at thousands of messages a second the
///   reader's thread spent more CPU being woken than reading. While held
///   (`SO_RCVLOWAT`), the socket counts as readable only once `bytes` wait;
///   released, it is readable again for one byte, and at once if any wait
///   (the kernel checks as the mark is lowered).
/// - **What the broker has yet to take** ([`LinkSocket::untaken`]): the
///   kernel wakes a writer only once a third of its buffer is free, so a
///   broker taking a little at a time looks, from above, like one taking
///   nothing.
pub struct LinkSocket {
    #[cfg(target_os = "linux")]
    socket: Option<std::os::fd::OwnedFd>,
}

impl LinkSocket {
    fn of(tcp: &tokio::net::TcpStream) -> LinkSocket {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            // A second descriptor of the same socket: TLS owns the stream.
            // Without one (out of descriptors) the link is woken for every
            // segment, as before there was a hold.
            let socket = tcp.as_fd().try_clone_to_owned().ok();
            LinkSocket { socket }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = tcp;
            LinkSocket {}
        }
    }

    /// Wakes the reader only once `bytes` wait. After an error the socket
    /// is as it was.
    pub fn hold(&self, bytes: usize) -> std::io::Result<()> {
        self.set_low_water(bytes)
    }

    /// Wakes the reader for any byte again, at once if some wait. An error
    /// here leaves the socket held: its connection must be given up.
    pub fn release(&self) -> std::io::Result<()> {
        self.set_low_water(1)
    }

    #[cfg(target_os = "linux")]
    fn set_low_water(&self, bytes: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is open for as long as `self`, and the
        // option's value is a c_int of the size given.
        let status = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        match status {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn set_low_water(&self, _bytes: usize) -> std::io::Result<()> {
        Ok(())
    }

    /// The bytes written to the socket that the broker's end has not yet
    /// acknowledged (`SIOCOUTQ`): they shrink only as the broker reads
    /// (once its receive buffer is full) or its host takes them. `None`
    /// when it cannot be known.
    #[cfg(target_os = "linux")]
    pub fn untaken(&self) -> Option<usize> {
        use std::os::fd::AsRawFd;
        let socket = self.socket.as_ref()?;
        let mut bytes: libc::c_int = 0;
        // SAFETY: the descriptor is open for as long as `self`, and
        // SIOCOUTQ (TIOCOUTQ on a socket) writes one c_int.
        let status = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut bytes) };
        match status {
            0 => usize::try_from(bytes).ok(),
            _ => None,
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn untaken(&self) -> Option<usize> {
        None
    }
}

/// Host, port and transport from a broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress, BrokerError> {
        let problem = |problem: &str| BrokerError::Url {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| problem("expected mqtt://host:port or mqtts://host:port"))?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            _ => return Err(problem("the scheme must be mqtt:// or mqtts://")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('@') || authority.contains('?') {
            return Err(problem(
                "only host and port belong in the url; credentials go in username and password",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| problem("the port is not a number from 1 to 65535"))?,
            ),
            None => (authority, default_port),
        };
        if host.is_empty() {
            return Err(problem("the host is empty"));
        }
        Ok(BrokerAddress {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }
}

/// The largest packet MQTT 3.1.1 can frame: a 268,435,455-byte remaining
/// length plus its fixed header.
pub const MAX_MQTT_PACKET: usize = 268_435_455 + 5;

/// The retained payloads of [`ENGINE_STATUS`].
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// The publishing link. Connects lazily (the first `poll` of the event
/// loop dials), with a persistent session, so that rumqttc sends again
/// after a reconnect what the broker had not acknowledged, and `offline` as
/// the retained last will.
pub fn connect(
    settings: &BrokerSettings,
    request_capacity: usize,
) -> Result<(AsyncClient, EventLoop), BrokerError> {
    let mut options = client_options(settings, &publisher_client_id(&settings.client_id))?;
    options
        .set_keep_alive(Duration::from_secs(u64::from(settings.keep_alive_s.max(1))))
        .set_clean_session(false)
        // The publishing link subscribes to nothing; the broker's own
        // messages (acknowledgements) are all it reads.
        .set_max_packet_size(MAX_MQTT_PACKET, 256 * 1024)
        // kordon's own publishes in flight. rumqttc numbers them 1..=this
        // and, when the next number is still unacknowledged (a collision),
        // or this many are, stops sending every request, the broker
        // acknowledgements of handled messages included, until it is
        // acknowledged. With 1,000, one publish left unacknowledged across
        // a reconnect stalled all of kordon's acknowledgements (measured
        // under overload, "Timeout while waiting to resolve collision"
        // every 10 s). kordon publishes tens of messages a second: with the
        // whole range a collision needs over an hour of them.
        .set_inflight(u16::MAX)
        .set_last_will(LastWill::new(
            ENGINE_STATUS,
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    let (client, mut eventloop) = AsyncClient::new(options, request_capacity);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    Ok((client, eventloop))
}

/// Options for an MQTT client named `client_id` that reach the broker of
/// `settings`: its address, kordon's credentials and, for `mqtts://`, TLS.
/// Sessions, keep-alive and windows are the caller's.
pub fn client_options(
    settings: &BrokerSettings,
    client_id: &str,
) -> Result<MqttOptions, BrokerError> {
    let address = BrokerAddress::parse(&settings.url)?;
    let mut options = MqttOptions::new(client_id, &address.host, address.port);
    if let (Some(user), password) = (&settings.username, &settings.password) {
        options.set_credentials(user, password.clone().unwrap_or_default());
    }
    if address.tls {
        let config = TlsConfiguration::Rustls(tls_config(settings)?);
        options.set_transport(Transport::tls_with_config(config));
    }
    Ok(options)
}

/// Ends the persistent sessions of both links of the kordon configured
/// with `client_id` on the broker at `url` (clean-session connects), so
/// that the broker stops queueing messages for a client that will not come
/// back: test runs, measurement runs, a retired kordon instance.
pub async fn forget_session(url: &str, client_id: &str) -> Result<(), BrokerError> {
    forget_one_session(url, client_id).await?;
    forget_one_session(url, &publisher_client_id(client_id)).await
}

async fn forget_one_session(url: &str, client_id: &str) -> Result<(), BrokerError> {
    let address = BrokerAddress::parse(url)?;
    let mut options = MqttOptions::new(client_id, address.host, address.port);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                _ => {}
            }
        }
    })
    .await;
    Ok(())
}

/// Exponential back-off between reconnection attempts: 100 ms doubling to
/// 10 s, reset by a successful connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The pause before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_transport() {
        let plain = BrokerAddress::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (plain.tls, plain.host.as_str(), plain.port),
            (false, "127.0.0.1", 1884)
        );
        let tls = BrokerAddress::parse("mqtts://broker.example").unwrap();
        assert_eq!((tls.tls, tls.port), (true, 8883));
        for bad in [
            "127.0.0.1:1883",
            "http://x:1",
            "mqtt://:1883",
            "mqtt://h:99999",
            "mqtt://u:p@h:1",
        ] {
            assert!(BrokerAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    /// The cluster's bridge and deliverer reach Mosquitto as a single
    /// kordon does: with its credentials, over TLS for `mqtts://`.
    #[test]
    fn client_options_carry_the_address_credentials_and_tls() {
        let settings = BrokerSettings {
            username: Some("kordon".into()),
            password: Some("secret".into()),
            ..BrokerSettings::new("mqtts://broker.example:8884")
        };
        let options = client_options(&settings, "kordon-bridge").unwrap();
        assert_eq!(options.client_id(), "kordon-bridge");
        assert_eq!(options.broker_address(), ("broker.example".into(), 8884));
        let login = options.credentials().expect("credentials");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("kordon", "secret")
        );
        assert!(matches!(options.transport(), Transport::Tls(_)));

        let plain = client_options(&BrokerSettings::new("mqtt://127.0.0.1:1883"), "x").unwrap();
        assert!(plain.credentials().is_none());
        assert!(matches!(plain.transport(), Transport::Tcp));
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }

    /// What the ingest link's read pacing rests on: a held socket does not
    /// wake its reader for what waits below the mark, and is readable at
    /// once when released.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_held_socket_is_readable_only_once_released() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reader = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut broker, _) = listener.accept().await.unwrap();
        let socket = LinkSocket::of(&reader);
        socket.hold(64 * 1024).unwrap();
        broker.write_all(b"one message").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(200), reader.readable()).await;
        assert!(held.is_err(), "held: 11 bytes woke the reader");
        socket.release().unwrap();
        tokio::time::timeout(Duration::from_secs(10), reader.readable())
            .await
            .expect("released: readable at once")
            .unwrap();
        let mut read = [0u8; 64];
        assert_eq!(reader.try_read(&mut read).unwrap(), 11);
    }
}
