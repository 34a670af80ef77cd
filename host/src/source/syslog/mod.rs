//! The `syslog` source: messages from routers, PLCs and daemons over UDP (one datagram,
//! one message) or TCP (RFC 6587: octet counting, `LEN SP MSG`, or newline framing,
//! told apart frame by frame), parsed ([`parse`]) into events:
//!
//! | from the message | into the event |
//! |---|---|
//! | APP-NAME / 3164 tag | name (the source's `name` when there is none) |
//! | severity | level: emerg, alert, crit → fatal; err → error; warning → warn; notice, info → info; debug → debug |
//! | TIMESTAMP | timestamp (the time of reception when there is none) |
//! | HOSTNAME (the peer's address when there is none), facility, PROCID, MSGID | tags `host`, `facility`, `procid`, `msgid` |
//! | STRUCTURED-DATA | a field per SD-ID, an object of its parameters |
//! | MSG | body |
//!
//! A message that does not parse is kept whole as the body, tagged `parse_error` with
//! the reason, and counted (`source.NAME malformed`); a message longer than the source's
//! `max_line_bytes` is cut there and counted (`lines_truncated`). TCP connections are
//! limited in all (`max_connections`) and per peer address (`max_connections_per_peer`):
//! one over the limit is closed at once, logged.

mod parse;
mod udp;

use super::intern::Interner;
use super::{Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::{Event, Level, Map, Value};
use crate::metrics::{Counter, Registry};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

#[derive(PartialEq, Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp` or `tcp`.
    pub mode: Transport,
    /// Where to listen: `0.0.0.0:514`.
    pub listen: SocketAddr,
    /// TCP connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TCP connections from one address at once.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// TCP: serve TLS (RFC 5425), `{ cert_file = "…", key_file = "…" }`.
    pub tls: Option<super::tls::TlsConfig>,
    /// UDP: the socket's receive buffer (the kernel caps it at `net.core.rmem_max`);
    /// what arrives while it is full is lost. Default: the system's.
    pub receive_buffer_bytes: Option<usize>,
    /// TCP: a connection whose peer sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_idle_timeout_secs() -> u64 {
    super::listener::DEFAULT_IDLE_TIMEOUT_SECS
}

fn default_max_connections() -> usize {
    256
}

fn default_max_connections_per_peer() -> usize {
    16
}

impl SyslogConfig {
    /// The connection limits, as the listener takes them.
    fn limits(&self) -> super::listener::Limits {
        super::listener::Limits {
            connections: self.max_connections,
            per_peer: self.max_connections_per_peer,
            idle: std::time::Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

impl SourceConfig for SyslogConfig {
    fn validate(&self, problems: &mut Problems) {
        self.limits().validate(self.tls.as_ref(), problems);
        if self.mode == Transport::Udp
            && (self.max_connections != default_max_connections()
                || self.max_connections_per_peer != default_max_connections_per_peer()
                || self.idle_timeout_secs != default_idle_timeout_secs())
        {
            problems.at(
                "mode",
                "connection limits are for `tcp`; UDP has no connections",
            );
        }
        if self.mode == Transport::Udp && self.tls.is_some() {
            problems.at("tls", "is for `tcp`");
        }
        if self.mode == Transport::Tcp && self.receive_buffer_bytes.is_some() {
            problems.at("receive_buffer_bytes", "is for `udp`");
        }
        if self.receive_buffer_bytes == Some(0) {
            problems.at("receive_buffer_bytes", "must be at least 1");
        }
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let malformed = Registry::global().counter(&format!("source.{}", cx.name), "malformed");
            let decoder = Decoder::new(cx.name.clone(), cx.batcher.event_name(), malformed);
            match config.mode {
                Transport::Udp => udp(config, cx, decoder).await,
                Transport::Tcp => tcp(config, cx, decoder).await,
            }
        })
    }
}

/// Turns raw messages into events.
#[derive(Clone)]
struct Decoder {
    source: Arc<str>,
    /// For messages with no app name, and malformed ones.
    name: Arc<str>,
    malformed: Counter,
    /// The strings messages repeat (app names, hosts, tag keys), shared rather than
    /// allocated per event.
    strings: Interner,
}

impl Decoder {
    fn new(source: Arc<str>, name: Arc<str>, malformed: Counter) -> Self {
        Self {
            source,
            name,
            malformed,
            strings: Interner::default(),
        }
    }

    fn event(&mut self, raw: &[u8], peer: IpAddr) -> Event {
        let now = crate::event::now_ns();
        match parse::parse(raw, now) {
            Ok(m) => {
                let name: Arc<str> = m
                    .app
                    .map_or_else(|| self.name.clone(), |app| self.strings.get(app));
                let mut event = Event::from_body(name, m.msg.to_vec());
                event.timestamp = Some(m.timestamp.unwrap_or(now));
                event.level = Level::from_syslog_severity(m.severity);
                let strings = &mut self.strings;
                match m.host {
                    Some(host) => strings.tag(&mut event.tags, "host", host),
                    None => strings.tag(&mut event.tags, "host", &peer.to_string()),
                }
                strings.tag(
                    &mut event.tags,
                    "facility",
                    parse::FACILITIES[m.facility as usize],
                );
                if let Some(procid) = m.procid {
                    strings.tag(&mut event.tags, "procid", procid);
                }
                if let Some(msgid) = m.msgid {
                    strings.tag(&mut event.tags, "msgid", msgid);
                }
                for (id, params) in m.structured {
                    let object: Map = params
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), Value::String(v)))
                        .collect();
                    event.fields.insert(id, Value::Object(object));
                }
                event
            }
            Err(reason) => {
                self.malformed.add(1);
                tracing::debug!(source = %self.source, %peer, "malformed syslog message: {reason}");
                let mut event = Event::from_body(self.name.clone(), raw.to_vec());
                event.timestamp = Some(now);
                event.tags.set("parse_error", reason);
                event.tags.set("host", peer.to_string());
                event
            }
        }
    }
}

async fn udp(config: SyslogConfig, cx: SourceContext, mut decoder: Decoder) {
    let SourceContext {
        mut batcher,
        shutdown,
        name,
        ..
    } = cx;
    let socket = match bind_udp(config.listen, config.receive_buffer_bytes) {
        Ok(socket) => socket,
        Err(e) => {
            batcher.error(&format!("listen on udp {}: {e}", config.listen), None);
            return;
        }
    };
    let buffer = socket2::SockRef::from(&socket)
        .recv_buffer_size()
        .unwrap_or(0);
    tracing::info!(source = %name, listen = %config.listen, receive_buffer_bytes = buffer, "syslog: listening on UDP");
    let mut receiver = udp::Receiver::new(&socket);
    let dropped = crate::internal_events::KernelDrops::counters(&name);
    let mut dropped_before = 0u32;
    let max = batcher.max_line_bytes();
    // One byte more than the limit tells a message cut by it.
    let mut buf = vec![0u8; max.max(65_536) + 1];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = batcher.due() => batcher.flush().await,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    batcher.error(&format!("udp receive: {e}"), None);
                    continue;
                }
                // Everything waiting, up to a batch, before the next select.
                for _ in 0..512 {
                    match receiver.recv(&socket, &mut buf) {
                        Ok(udp::Received { len: n, peer, dropped_so_far }) => {
                            if let Some(so_far) = dropped_so_far
                                && so_far != dropped_before
                            {
                                crate::internal_events::KernelDrops {
                                    source: &name,
                                    count: u64::from(so_far.wrapping_sub(dropped_before)),
                                    receive_buffer_bytes: buffer,
                                }
                                .emit(&dropped);
                                dropped_before = so_far;
                            }
                            let raw = if n > max {
                                batcher.truncated();
                                &buf[..max]
                            } else {
                                &buf[..n]
                            };
                            let event = decoder.event(raw, peer.ip());
                            batcher.push_event(event).await;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            batcher.error(&format!("udp receive: {e}"), None);
                            break;
                        }
                    }
                }
            }
        }
    }
    batcher.flush().await;
}

/// A UDP socket on `addr` with its receive buffer set first (when asked).
fn bind_udp(addr: SocketAddr, receive_buffer: Option<usize>) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn tcp(config: SyslogConfig, cx: SourceContext, decoder: Decoder) {
    let limits = config.limits();
    super::listener::serve(
        config.listen,
        limits,
        config.tls.as_ref(),
        "syslog",
        cx,
        move |stream, peer, batcher, shutdown| {
            let mut decoder = decoder.clone();
            async move { serve(stream, peer, batcher, shutdown, &mut decoder).await }
        },
    )
    .await;
}

/// One connection: frames in, events out, until the peer closes or the agent stops.
async fn serve(
    mut stream: super::listener::Stream,
    peer: SocketAddr,
    mut batcher: Batcher,
    shutdown: CancellationToken,
    decoder: &mut Decoder,
) {
    let mut framer = Framer::new(batcher.max_line_bytes());
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = batcher.due() => { batcher.flush().await; continue; }
            read = stream.read(&mut chunk) => match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(source = %decoder.source, %peer, "syslog: connection dropped: {e}");
                    break;
                }
            },
        };
        let mut frames = Vec::new();
        framer.feed(&chunk[..n], |frame| frames.push(frame));
        for frame in frames {
            if frame.truncated {
                batcher.truncated();
            }
            batcher
                .push_event(decoder.event(&frame.bytes, peer.ip()))
                .await;
        }
    }
    if let Some(frame) = framer.finish() {
        batcher
            .push_event(decoder.event(&frame.bytes, peer.ip()))
            .await;
    }
    batcher.flush().await;
}

/// One message cut out of a TCP stream.
#[derive(Debug, PartialEq)]
struct Frame {
    bytes: Vec<u8>,
    /// Longer than the limit: these are its first bytes.
    truncated: bool,
}

/// RFC 6587 framing, frame by frame: a frame starting with a digit is octet-counted
/// (`LEN SP MSG`), any other ends at a newline or a NUL (non-transparent framing). Frames over
/// `max` bytes are cut to `max`; the rest of them is skipped.
struct Framer {
    max: usize,
    buffer: Vec<u8>,
    /// Bytes of the current frame still to skip (after a cut).
    skip: Skip,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Skip {
    Nothing,
    /// This many more bytes (an octet-counted frame).
    Bytes(usize),
    /// Up to and including the next newline.
    Line,
}

impl Framer {
    fn new(max: usize) -> Self {
        Self {
            max,
            buffer: Vec::new(),
            skip: Skip::Nothing,
        }
    }

    fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(Frame)) {
        match self.skip {
            Skip::Nothing => {}
            Skip::Bytes(n) => {
                let used = n.min(chunk.len());
                chunk = &chunk[used..];
                self.skip = if used == n {
                    Skip::Nothing
                } else {
                    Skip::Bytes(n - used)
                };
            }
            Skip::Line => match memchr::memchr2(b'\n', b'\0', chunk) {
                Some(at) => {
                    chunk = &chunk[at + 1..];
                    self.skip = Skip::Nothing;
                }
                None => return,
            },
        }
        self.buffer.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            let rest = &self.buffer[at..];
            if rest.is_empty() {
                break;
            }
            if rest[0].is_ascii_digit() {
                let Some(space) = rest.iter().take(12).position(|b| *b == b' ') else {
                    if rest.len() >= 12 || !rest.iter().all(u8::is_ascii_digit) {
                        // Digits, then no length: not octet counting after all.
                        if !self.line(&mut at, &mut emit) {
                            break;
                        }
                        continue;
                    }
                    break; // the length is still coming
                };
                let Some(len) = std::str::from_utf8(&rest[..space])
                    .ok()
                    .and_then(|l| l.parse::<usize>().ok())
                else {
                    if !self.line(&mut at, &mut emit) {
                        break;
                    }
                    continue;
                };
                let body = &rest[space + 1..];
                if len > self.max {
                    if body.len() >= self.max {
                        emit(Frame {
                            bytes: body[..self.max].to_vec(),
                            truncated: true,
                        });
                        let have = body.len().min(len);
                        at += space + 1 + have;
                        if have < len {
                            self.skip = Skip::Bytes(len - have);
                            at = self.buffer.len();
                            break;
                        }
                        continue;
                    }
                    break;
                }
                if body.len() < len {
                    break;
                }
                emit(Frame {
                    bytes: body[..len].to_vec(),
                    truncated: false,
                });
                at += space + 1 + len;
                // A newline some senders add after a counted frame.
                if self.buffer.get(at) == Some(&b'\n') {
                    at += 1;
                }
            } else if !self.line(&mut at, &mut emit) {
                break;
            }
        }
        self.buffer.drain(..at);
    }

    /// Emits the frame at `at` ended by a newline or a NUL (Python's `SysLogHandler`
    /// ends its messages so); false when its end has not come yet (a frame past `max`
    /// is then cut and the rest of it skipped).
    fn line(&mut self, at: &mut usize, emit: &mut impl FnMut(Frame)) -> bool {
        let rest = &self.buffer[*at..];
        match memchr::memchr2(b'\n', b'\0', rest) {
            Some(end) => {
                let mut line = &rest[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let truncated = line.len() > self.max;
                emit(Frame {
                    bytes: line[..line.len().min(self.max)].to_vec(),
                    truncated,
                });
                *at += end + 1;
                true
            }
            None if rest.len() > self.max => {
                emit(Frame {
                    bytes: rest[..self.max].to_vec(),
                    truncated: true,
                });
                *at = self.buffer.len();
                self.skip = Skip::Line;
                false
            }
            None => false,
        }
    }

    /// What is left when the stream ends: an unterminated last frame.
    fn finish(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.is_empty() && self.skip == Skip::Nothing).then_some(Frame {
            bytes: rest,
            truncated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, |f| {
                out.push((String::from_utf8(f.bytes).unwrap(), f.truncated))
            });
        }
        if let Some(f) = framer.finish() {
            out.push((String::from_utf8(f.bytes).unwrap(), f.truncated));
        }
        out
    }

    #[test]
    fn octet_counted_and_newline_frames_mix_and_split_anywhere() {
        let stream = b"10 <13>hello\n2<14>x\r\n5 <1>ab<15>nul\0<13>tail";
        let whole = frames(100, &[stream]);
        assert_eq!(
            whole,
            [
                ("<13>hello\n".to_owned(), false),
                ("2<14>x".to_owned(), false),
                ("<1>ab".to_owned(), false),
                ("<15>nul".to_owned(), false),
                ("<13>tail".to_owned(), false),
            ]
        );
        for cut in 1..stream.len() {
            assert_eq!(
                frames(100, &[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_cut_and_the_rest_skipped() {
        assert_eq!(
            frames(4, &[b"10 <1>abcdef", b"g<2>z\n"]),
            [("<1>a".to_owned(), true), ("<2>z".to_owned(), false)]
        );
        assert_eq!(
            frames(4, &[b"<1>abcdef", b"gh\n<2>z\n"]),
            [("<1>a".to_owned(), true), ("<2>z".to_owned(), false)]
        );
    }

    #[test]
    fn a_malformed_message_is_kept_tagged_with_its_reason() {
        let mut decoder = Decoder::new(
            "sys".into(),
            "sys".into(),
            Registry::global().counter("source.test-syslog", "malformed"),
        );
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let event = decoder.event(b"\xff\x00garbage", peer);
        assert_eq!(event.body, b"\xff\x00garbage");
        assert_eq!(event.tags.get("parse_error"), Some("no <PRI> at the start"));
        assert_eq!(event.tags.get("host"), Some("10.0.0.9"));
        assert_eq!(decoder.malformed.get(), 1);
        let event = decoder.event(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine evntslog 7 ID47 [ex@1 k=\"v\"] hi",
            peer,
        );
        assert_eq!(&*event.name, "evntslog");
        assert_eq!(event.level, Level::Info);
        assert_eq!(event.tags.get("host"), Some("mymachine"));
        assert_eq!(event.tags.get("facility"), Some("local4"));
        assert_eq!(event.tags.get("procid"), Some("7"));
        assert_eq!(event.tags.get("msgid"), Some("ID47"));
        assert_eq!(event.body, b"hi");
        assert_eq!(event.fields.len(), 1);
    }
}
