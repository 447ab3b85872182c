//! Just enough MQTT 3.1.1, written by hand, for a load generator that must
//! not eat the machine it measures: CONNECT, PUBLISH (QoS 0 and 1), PUBACK,
//! SUBSCRIBE, PINGREQ and DISCONNECT, encoded into caller-owned buffers, and
//! a packet reader that reuses its buffer.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;

/// Appends an MQTT "remaining length".
fn put_length(buf: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if len == 0 {
            return;
        }
    }
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

/// CONNECT with a client id, the clean-session flag and a keep-alive.
pub fn connect(client_id: &str, clean: bool, keep_alive_s: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + client_id.len());
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    let mut packet = vec![0x10];
    put_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

/// Appends a PUBLISH; `packet_id` 0 means QoS 0, otherwise QoS 1.
pub fn publish(buf: &mut Vec<u8>, topic: &[u8], packet_id: u16, payload: &[u8]) {
    let qos1 = packet_id != 0;
    buf.push(if qos1 { 0x32 } else { 0x30 });
    let len = 2 + topic.len() + if qos1 { 2 } else { 0 } + payload.len();
    put_length(buf, len);
    put_str(buf, topic);
    if qos1 {
        buf.extend_from_slice(&packet_id.to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

pub fn puback(buf: &mut Vec<u8>, packet_id: u16) {
    buf.extend_from_slice(&[0x40, 2]);
    buf.extend_from_slice(&packet_id.to_be_bytes());
}

/// SUBSCRIBE to each filter at QoS 1.
pub fn subscribe(packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for filter in filters {
        put_str(&mut body, filter.as_bytes());
        body.push(1);
    }
    let mut packet = vec![0x82];
    put_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

pub const PINGREQ: [u8; 2] = [0xC0, 0];
pub const DISCONNECT: [u8; 2] = [0xE0, 0];

/// One packet read: its type (high nibble of the first byte), its flags and
/// its body, valid until the next read.
pub struct Packet<'a> {
    pub kind: u8,
    pub flags: u8,
    pub body: &'a [u8],
}

impl Packet<'_> {
    /// A PUBLISH's topic, packet id (0 for QoS 0) and payload.
    pub fn publish(&self) -> Option<(&[u8], u16, &[u8])> {
        let body = self.body;
        let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let topic = body.get(2..2 + len)?;
        let rest = &body[2 + len..];
        if self.flags & 0x06 == 0 {
            return Some((topic, 0, rest));
        }
        let id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        Some((topic, id, rest.get(2..)?))
    }
}

/// Reads packets from a connection into one reused buffer.
pub struct Reader {
    inner: BufReader<TcpStream>,
    body: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            body: Vec::with_capacity(4096),
        }
    }

    /// Whether a packet is already buffered (no system call needed).
    pub fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }

    /// The next packet; a read timeout surfaces as `WouldBlock`/`TimedOut`.
    pub fn next(&mut self) -> io::Result<Packet<'_>> {
        let mut first = [0u8; 1];
        self.inner.read_exact(&mut first)?;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = self.byte_within_packet()?;
            len |= usize::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad length"));
            }
        }
        self.body.resize(len, 0);
        self.read_body()?;
        Ok(Packet {
            kind: first[0] >> 4,
            flags: first[0] & 0x0F,
            body: &self.body,
        })
    }

    /// One byte of a packet already begun: read timeouts are waited out.
    fn byte_within_packet(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => return Ok(b[0]),
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills the body, continuing across read timeouts: a packet once begun
    /// is always finished.
    fn read_body(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.body.len() {
            match self.inner.read(&mut self.body[done..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A connected, accepted MQTT session: a stream to write to and a reader.
pub struct Session {
    pub writer: TcpStream,
    pub reader: Reader,
}

/// Connects and waits for a CONNACK that accepts the session.
pub fn open(port: u16, client_id: &str, clean: bool, keep_alive_s: u16) -> Result<Session, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("MQTT connect to 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    writer
        .write_all(&connect(client_id, clean, keep_alive_s))
        .map_err(|e| format!("MQTT CONNECT: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = Reader::new(stream);
    let packet = reader
        .next()
        .map_err(|e| format!("MQTT CONNACK for {client_id}: {e}"))?;
    if packet.kind != CONNACK || packet.body.get(1) != Some(&0) {
        return Err(format!(
            "MQTT: {client_id} refused (packet {} body {:?})",
            packet.kind, packet.body
        ));
    }
    Ok(Session { writer, reader })
}

impl Session {
    /// Subscribes at QoS 1 and waits for the SUBACK, acknowledging any
    /// message that arrives first.
    pub fn subscribe(&mut self, filters: &[&str]) -> Result<(), String> {
        self.writer
            .write_all(&subscribe(1, filters))
            .map_err(|e| format!("MQTT SUBSCRIBE: {e}"))?;
        loop {
            let packet = self
                .reader
                .next()
                .map_err(|e| format!("MQTT SUBACK: {e}"))?;
            if packet.kind == SUBACK {
                return match packet.body.get(2..) {
                    Some(codes) if codes.iter().all(|c| *c < 0x80) => Ok(()),
                    _ => Err(format!("MQTT: subscription refused: {:?}", packet.body)),
                };
            }
            if packet.kind == PUBLISH {
                if let Some((_, id, _)) = packet.publish().filter(|p| p.1 != 0) {
                    let mut ack = Vec::with_capacity(4);
                    puback(&mut ack, id);
                    self.writer.write_all(&ack).map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Says goodbye politely (the broker then drops no will, keeps no error).
    pub fn close(mut self) {
        let _ = self.writer.write_all(&DISCONNECT);
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_use_seven_bits_per_byte() {
        let mut buf = Vec::new();
        put_length(&mut buf, 127);
        put_length(&mut buf, 128);
        put_length(&mut buf, 16_383);
        assert_eq!(buf, [0x7F, 0x80, 0x01, 0xFF, 0x7F]);
    }

    #[test]
    fn a_qos1_publish_carries_its_packet_id() {
        let mut buf = Vec::new();
        publish(&mut buf, b"a/b", 7, b"xy");
        assert_eq!(buf, [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'x', b'y']);
        let packet = Packet {
            kind: 3,
            flags: 2,
            body: &buf[2..],
        };
        assert_eq!(packet.publish(), Some((&b"a/b"[..], 7, &b"xy"[..])));
    }
}
