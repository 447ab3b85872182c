//! Dashboard consoles (`--consoles N`): each follows kordon's live stream
//! (`/api/v1/stream`, as the monitoring room) on a thread of its own and
//! counts what it receives, as a browser would get it: events, the
//! positions in them, alerts and bytes. A monitoring room keeps its
//! console open, so this is part of what kordon costs per fix there.
//!
//! It never parses more than the SSE lines it counts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What every console received so far, summed over the consoles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub bytes: u64,
    pub events: u64,
    pub positions: u64,
    pub alerts: u64,
}

impl Received {
    pub fn since(&self, before: &Received) -> Received {
        Received {
            bytes: self.bytes - before.bytes,
            events: self.events - before.events,
            positions: self.positions - before.positions,
            alerts: self.alerts - before.alerts,
        }
    }
}

#[derive(Default)]
struct Counts {
    bytes: AtomicU64,
    events: AtomicU64,
    positions: AtomicU64,
    alerts: AtomicU64,
}

pub struct Consoles {
    counts: Vec<Arc<Counts>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Consoles {
    /// Opens `n` consoles on kordon's API at 127.0.0.1:`port`; each has
    /// its stream's response head before this returns.
    pub fn open(port: u16, token: &str, n: usize) -> Result<Consoles, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut consoles = Consoles {
            counts: Vec::new(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let stream = connect(port, token)?;
            let counts = Arc::new(Counts::default());
            consoles.counts.push(counts.clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("console-{i}"))
                .spawn(move || follow(stream, &counts, &stop))
                .map_err(|e| format!("a console's thread: {e}"))?;
            consoles.threads.push(thread);
        }
        Ok(consoles)
    }

    pub fn count(&self) -> usize {
        self.counts.len()
    }

    pub fn received(&self) -> Received {
        let mut all = Received::default();
        for c in &self.counts {
            all.bytes += c.bytes.load(Relaxed);
            all.events += c.events.load(Relaxed);
            all.positions += c.positions.load(Relaxed);
            all.alerts += c.alerts.load(Relaxed);
        }
        all
    }
}

impl Drop for Consoles {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn connect(port: u16, token: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("a console connecting to 127.0.0.1:{port}: {e}"))?;
    let request = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("a console's request: {e}"))?;
    // Short reads, so that a console notices the end of the run.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Err("a console's stream: no response head".into()),
        }
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("a console's stream: {status}"));
    }
    Ok(stream)
}

fn follow(mut stream: TcpStream, counts: &Counts, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut lines = Lines::default();
    while !stop.load(Relaxed) {
        let n = match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        };
        counts.bytes.fetch_add(n as u64, Relaxed);
        lines.take(&buffer[..n], counts);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The stream's lines, split across reads. Chunked framing lines (sizes)
/// never start like the lines counted, so they are passed over.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    /// The event whose data lines follow.
    positions: bool,
}

impl Lines {
    fn take(&mut self, bytes: &[u8], counts: &Counts) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                let line = std::mem::take(&mut self.partial);
                self.line(&line, counts);
            }
        }
    }

    fn line(&mut self, line: &[u8], counts: &Counts) {
        if let Some(name) = line.strip_prefix(b"event:") {
            let name = name.trim_ascii();
            counts.events.fetch_add(1, Relaxed);
            self.positions = name == b"positions";
            match name {
                b"alert" => counts.alerts.fetch_add(1, Relaxed),
                // One position an event: kordon before its batches, so
                // that builds from before compare.
                b"position" => counts.positions.fetch_add(1, Relaxed),
                _ => 0,
            };
        } else if self.positions && line.starts_with(b"data:") {
            let devices = line.windows(DEVICE.len()).filter(|w| *w == DEVICE).count();
            counts.positions.fetch_add(devices as u64, Relaxed);
        }
    }
}

/// Each position in a `positions` event starts with its device.
const DEVICE: &[u8] = b"{\"device\":";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_positions_and_alerts_are_counted_across_reads() {
        let text = "3a\r\nevent: positions\nid: b-1\ndata: [{\"device\":\"A\",\"lat\":1},\
                    {\"device\":\"B\",\"lat\":2}]\n\n\r\n\
                    event: alert\nid: b-2\ndata: {\"device\":\"A\"}\n\n\
                    event: position\nid: b-3\ndata: {\"device\":\"A\"}\n\n";
        let counts = Counts::default();
        let mut lines = Lines::default();
        for piece in text.as_bytes().chunks(7) {
            lines.take(piece, &counts);
        }
        assert_eq!(counts.events.load(Relaxed), 3);
        assert_eq!(
            counts.positions.load(Relaxed),
            3,
            "two in the batch, one in an older build's event; an alert's device is no position"
        );
        assert_eq!(counts.alerts.load(Relaxed), 1);
    }
}
