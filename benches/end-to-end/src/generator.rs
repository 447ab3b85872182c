//! The load generator: a few raw MQTT connections publishing QoS 1 fixes at
//! a paced rate, and planting breaches at their own rate.
//!
//! Each connection has a writer thread (every 2 to 5 ms it sends what its
//! share of the rate says is due, as one write) and an ack thread (reads
//! PUBACKs in batches). A connection keeps at most [`WINDOW`] publishes
//! unacknowledged, as a device gateway would; what it cannot send in time
//! is owed for at most 50 ms and then skipped, so the offered rate is what
//! was measured, never what was asked. Devices are split over the
//! connections, so each device's fixes stay in order.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mqtt::{self, Reader};
use crate::workload::{fix_payload, fix_topic, offender, Device, TsCache, World};

/// Unacknowledged publishes per connection at most (packet ids are 16 bits).
pub const WINDOW: u64 = 20_000;
const KEEP_ALIVE_S: u16 = 60;

/// What the generator is asked to do now (set by the benchmark's phases).
#[derive(Default)]
pub struct Plan {
    /// Fixes per second over all connections.
    pub rate: AtomicU64,
    /// Planted breaches per second over all connections.
    pub breach_rate: AtomicU64,
    /// Tags the breaches planted now, so latencies land in their phase.
    pub phase: AtomicU32,
    /// Bumped on every change, so the pacing starts afresh.
    epoch: AtomicU64,
    stop: AtomicBool,
}

/// What the generator did, over all connections.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// Fixes owed for more than 50 ms (window full or a slow writer) and
    /// skipped.
    pub skipped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Planted breaches waiting for their alert: case index → (when it was
/// published, phase).
#[derive(Default)]
pub struct Planted {
    pub waiting: Mutex<HashMap<usize, (Instant, u32)>>,
    /// Planted per phase.
    pub per_phase: Mutex<HashMap<u32, u64>>,
    next: AtomicUsize,
    pub exhausted: AtomicU64,
}

pub struct Generator {
    pub plan: Arc<Plan>,
    pub counters: Arc<Counters>,
    pub planted: Arc<Planted>,
    threads: Vec<JoinHandle<()>>,
}

/// One connection's writer state.
struct Writer {
    conns: usize,
    stream: std::net::TcpStream,
    devices: Vec<Device>,
    cursor: usize,
    next_id: u16,
    acked: Arc<AtomicU64>,
    /// Publishes written into the batch, and those counted as published.
    sent: u64,
    counted: u64,
    world: World,
    plan: Arc<Plan>,
    counters: Arc<Counters>,
    planted: Arc<Planted>,
    ts: TsCache,
    buf: Vec<u8>,
    payload: Vec<u8>,
}

impl Generator {
    /// Connects `conns` publishers to the broker on `port` (not yet sending).
    pub fn start(port: u16, conns: usize, world: &World, name: &str) -> Result<Generator, String> {
        let (plan, counters, planted) = Default::default();
        let mut generator = Generator {
            plan,
            counters,
            planted,
            threads: Vec::new(),
        };
        let mut shares: Vec<Vec<Device>> = (0..conns).map(|_| Vec::new()).collect();
        for (n, device) in world.active_devices().into_iter().enumerate() {
            shares[n % conns].push(device);
        }
        for (conn, devices) in shares.into_iter().enumerate() {
            generator.connect(port, conn, conns, devices, world, name)?;
        }
        Ok(generator)
    }

    fn connect(
        &mut self,
        port: u16,
        conn: usize,
        conns: usize,
        devices: Vec<Device>,
        world: &World,
        name: &str,
    ) -> Result<(), String> {
        let session = mqtt::open(port, &format!("{name}-{conn}"), true, KEEP_ALIVE_S)?;
        let acked = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            conns,
            stream: session.writer,
            devices,
            cursor: 0,
            next_id: 0,
            acked: acked.clone(),
            sent: 0,
            counted: 0,
            world: world.clone(),
            plan: self.plan.clone(),
            counters: self.counters.clone(),
            planted: self.planted.clone(),
            ts: TsCache::default(),
            buf: Vec::with_capacity(256 * 1024),
            payload: Vec::with_capacity(160),
        };
        let counters = self.counters.clone();
        let mut reader = session.reader;
        self.threads.push(spawn(format!("gen-ack-{conn}"), move || {
            read_acks(&mut reader, &acked, &counters)
        })?);
        self.threads
            .push(spawn(format!("gen-pub-{conn}"), move || writer.run())?);
        Ok(())
    }

    /// Offers `rate` fixes/s and `breach_rate` planted breaches/s from now,
    /// breaches tagged with `phase`.
    pub fn offer(&self, rate: u64, breach_rate: u64, phase: u32) {
        self.plan.rate.store(rate, Relaxed);
        self.plan.breach_rate.store(breach_rate, Relaxed);
        self.plan.phase.store(phase, Relaxed);
        self.plan.epoch.fetch_add(1, Relaxed);
    }

    /// Waits until the broker has acknowledged everything published.
    pub fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.counters.acked.load(Relaxed) >= self.counters.published.load(Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops sending, says goodbye and joins the threads.
    pub fn stop(self) {
        self.offer(0, 0, 0);
        self.settle(Duration::from_secs(30));
        self.plan.stop.store(true, Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| format!("spawning a generator thread: {e}"))
}

/// How long an ack thread naps once it has read every PUBACK there was.
/// The window ([`WINDOW`]) holds 0.4 s of a connection's share of the
/// broker's ceiling, so a 10 ms nap never holds publishing back; a nap of 1
/// ms woke the four ack threads 4,000 times a second, which cost the box
/// more CPU than their reading (perf at the ceiling: 42 % of the
/// generator's samples, most in context switches).
const ACK_NAP: Duration = Duration::from_millis(10);

/// Counts PUBACKs. Once the buffer is empty it naps ([`ACK_NAP`]), so that
/// one read takes many acks rather than one system call each.
fn read_acks(reader: &mut Reader, acked: &AtomicU64, counters: &Counters) {
    loop {
        match reader.next() {
            Ok(packet) if packet.kind == mqtt::PUBACK => {
                acked.fetch_add(1, Relaxed);
                counters.acked.fetch_add(1, Relaxed);
            }
            Ok(_) => {}
            Err(e) if mqtt::is_timeout(&e) => {}
            Err(_) => return,
        }
        if !reader.has_buffered() {
            std::thread::sleep(ACK_NAP);
        }
    }
}

/// How often a connection sends: every 2 ms from 4,000 fixes/s (its
/// share) on, less often below (up to 5 ms), so that a slow rate costs few
/// wake-ups. The generator shares the box with kordon: every 1 ms, its
/// four writers woke 4,000 times a second. A planted breach's latency is
/// timed from the write that carries it, so the tick adds nothing to it.
fn tick_length(rate: f64) -> Duration {
    let ms = if rate > 0.0 { 8_000.0 / rate } else { 5.0 };
    Duration::from_secs_f64(ms.clamp(2.0, 5.0) / 1000.0)
}

impl Writer {
    fn run(mut self) {
        let mut epoch = u64::MAX;
        let mut start = Instant::now();
        let (mut fixes, mut breaches) = (0u64, 0u64);
        let mut last_write = Instant::now();
        let mut tick = Instant::now();
        while !self.plan.stop.load(Relaxed) {
            let now = Instant::now();
            if self.plan.epoch.load(Relaxed) != epoch {
                epoch = self.plan.epoch.load(Relaxed);
                (start, fixes, breaches) = (now, 0, 0);
            }
            let elapsed = now.duration_since(start).as_secs_f64();
            let rate = self.plan.rate.load(Relaxed) as f64 / self.conns as f64;
            let breach_rate = self.plan.breach_rate.load(Relaxed) as f64 / self.conns as f64;
            let due = self.due(rate, elapsed, &mut fixes);
            let due_breaches = ((breach_rate * elapsed) as u64).saturating_sub(breaches);
            breaches += due_breaches;
            self.send(due, due_breaches);
            if !self.buf.is_empty() {
                last_write = now;
            } else if now.duration_since(last_write) > Duration::from_secs(20) {
                self.buf.extend_from_slice(&mqtt::PINGREQ);
                last_write = now;
            }
            self.flush();
            tick += tick_length(rate);
            let now = Instant::now();
            if tick > now {
                std::thread::sleep(tick - now);
            } else if now - tick > Duration::from_millis(10) {
                tick = now;
            }
        }
        let _ = self.stream.write_all(&mqtt::DISCONNECT);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// How many fixes to send now: what the rate says is due, within the
    /// window; a debt older than 50 ms is skipped.
    fn due(&mut self, rate: f64, elapsed: f64, fixes: &mut u64) -> u64 {
        let target = (rate * elapsed) as u64;
        let mut due = target.saturating_sub(*fixes);
        let most_owed = (rate * 0.05) as u64 + 1;
        if due > most_owed {
            self.counters.skipped.fetch_add(due - most_owed, Relaxed);
            *fixes += due - most_owed;
            due = most_owed;
        }
        let inflight = self.sent.saturating_sub(self.acked.load(Relaxed));
        let room = WINDOW.saturating_sub(inflight);
        let n = due.min(room);
        *fixes += n;
        n
    }

    fn send(&mut self, fixes: u64, breaches: u64) {
        for _ in 0..breaches {
            self.plant();
        }
        for _ in 0..fixes {
            self.wander();
        }
    }

    fn packet_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.sent += 1;
        self.next_id
    }

    /// The next device's next fix on its walk.
    fn wander(&mut self) {
        if self.devices.is_empty() {
            return;
        }
        let i = self.cursor;
        self.cursor = (self.cursor + 1) % self.devices.len();
        self.devices[i].seq += 1;
        let position = self.devices[i].position();
        let seq = self.devices[i].seq;
        self.payload.clear();
        fix_payload(&mut self.payload, self.ts.now(), position, seq);
        let id = self.packet_id();
        mqtt::publish(&mut self.buf, &self.devices[i].topic, id, &self.payload);
    }

    /// A fresh case's offender at his victim's door, if any case is left.
    fn plant(&mut self) {
        let n = self.planted.next.fetch_add(1, Relaxed);
        if n >= self.world.breach_pool {
            self.planted.exhausted.fetch_add(1, Relaxed);
            return;
        }
        let case = self.world.first_breach_case() + n;
        let topic = fix_topic(&offender(case));
        self.payload.clear();
        fix_payload(
            &mut self.payload,
            self.ts.now(),
            self.world.breach_position(case),
            1,
        );
        let id = self.packet_id();
        mqtt::publish(&mut self.buf, &topic, id, &self.payload);
        let phase = self.plan.phase.load(Relaxed);
        let now = Instant::now();
        if let Ok(mut waiting) = self.planted.waiting.lock() {
            waiting.insert(case, (now, phase));
        }
        if let Ok(mut per_phase) = self.planted.per_phase.lock() {
            *per_phase.entry(phase).or_default() += 1;
        }
    }

    /// Writes the batch in one call and counts its publishes.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.stream.write_all(&self.buf).is_err() {
            self.counters.write_errors.fetch_add(1, Relaxed);
        }
        self.counters
            .published
            .fetch_add(self.sent - self.counted, Relaxed);
        self.counted = self.sent;
        self.buf.clear();
    }
}
