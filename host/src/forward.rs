//! The `forward` protocol, Runnel to Runnel (an edge agent's `forward` sink to a
//! collector's `forward` source) over TCP: batches in the file channel's payload form
//! (`channel::file::codec`, read back through the same checked reader as plugin
//! output), gzipped, encrypted and authenticated with AES-256-GCM under keys derived
//! from a shared 32-byte key, each acknowledged once the collector's channels hold it.
//!
//! A connection:
//!
//! 1. Both sides send `RNF1` and 16 random bytes (client first). From the shared key
//!    and both randoms, HKDF-SHA256 derives one key per direction: a recorded session
//!    cannot be replayed into another.
//! 2. Every frame after that is `len u32 (LE) ‖ kind u8 ‖ body`. Kind 1: sealed —
//!    AES-256-GCM of `type u8 ‖ id u64 ‖ payload`, its nonce the frame's number in its
//!    direction (so frames cannot be dropped, reordered or replayed unnoticed). Kind 2:
//!    a refusal in plain text, which only a server that could not authenticate the
//!    client sends, then closes.
//! 3. The client's first sealed frame is `HELLO` (its agent name), the server's answer
//!    `WELCOME`: a wrong key on either side fails here, with a clear error on both.
//!    Until then neither side takes a frame over [`MAX_HANDSHAKE_FRAME`] bytes: a peer
//!    that has not proven it holds the key cannot make the other allocate more.
//! 4. Then `BATCH id payload` → `ACK id` (in the collector's channels) or `NACK id
//!    reason` (not taken; the edge retries). The edge commits only on `ACK`.

use anyhow::Context;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: &[u8; 4] = b"RNF1";
const RANDOM_LEN: usize = 16;
/// The largest frame either side accepts (a batch's compressed payload, and then some).
pub const MAX_FRAME: usize = 64 << 20;
/// The largest frame either side accepts before the handshake is done (a `HELLO` with
/// its agent name, a `WELCOME`, a refusal).
pub const MAX_HANDSHAKE_FRAME: usize = 4096;
/// The largest batch payload a collector decompresses.
pub const MAX_BATCH: u64 = 256 << 20;

const SEALED: u8 = 1;
const REFUSED: u8 = 2;

/// What a sealed frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Hello = 1,
    Welcome = 2,
    Batch = 3,
    Ack = 4,
    Nack = 5,
}

impl FrameType {
    fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Hello,
            2 => Self::Welcome,
            3 => Self::Batch,
            4 => Self::Ack,
            5 => Self::Nack,
            _ => return None,
        })
    }
}

/// The shared key of an edge and its collector: 32 bytes, from a key file (32 raw
/// bytes, or 64 hex digits; `runnel forward keygen` makes one).
#[derive(Clone)]
pub struct SharedKey([u8; 32]);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

impl SharedKey {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        crate::files::warn_if_not_private(path, "forward key file");
        let contents =
            std::fs::read(path).with_context(|| format!("read key file {}", path.display()))?;
        let key = crate::files::parse_key(&contents)
            .map_err(|reason| anyhow::anyhow!("key file {}: {reason}", path.display()))?;
        Ok(Self(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer does not speak the forward protocol (it sent {0:?})")]
    NotForward(Vec<u8>),
    #[error(
        "a frame does not authenticate: the peer's key differs from ours, or the stream was altered"
    )]
    BadFrame,
    #[error("the collector refused us: {0}")]
    Refused(String),
    #[error("a frame of {len} bytes, over the {max} allowed here")]
    TooLarge { len: usize, max: usize },
    #[error("unexpected {0:?} frame")]
    Unexpected(FrameType),
}

/// One direction's sealing state.
struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn nonce(&mut self) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        Nonce::assume_unique_for_key(nonce)
    }
}

/// An authenticated, encrypted connection (either side).
pub struct Connection<S> {
    stream: S,
    send: Direction,
    receive: Direction,
    buffer: Vec<u8>,
}

/// Which side of the connection this is (which derived key seals).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// The edge's side: greets the collector and proves it holds the key.
    pub async fn client(mut stream: S, key: &SharedKey, agent: &str) -> Result<Self, ForwardError> {
        let mine = random()?;
        stream.write_all(&greeting(&mine)).await?;
        let theirs = read_greeting(&mut stream).await?;
        let mut conn = Self::keyed(stream, key, &mine, &theirs, Side::Client);
        conn.send(FrameType::Hello, 0, agent.as_bytes()).await?;
        match conn.receive_within(MAX_HANDSHAKE_FRAME).await? {
            (FrameType::Welcome, _, _) => Ok(conn),
            (other, _, _) => Err(ForwardError::Unexpected(other)),
        }
    }

    /// The collector's side: answers the greeting and checks the edge's key. Returns the
    /// edge's agent name. A client with another key gets a plain refusal, then EOF.
    pub async fn server(mut stream: S, key: &SharedKey) -> Result<(Self, String), ForwardError> {
        let theirs = read_greeting(&mut stream).await?;
        let mine = random()?;
        stream.write_all(&greeting(&mine)).await?;
        let mut conn = Self::keyed(stream, key, &theirs, &mine, Side::Server);
        match conn.receive_within(MAX_HANDSHAKE_FRAME).await {
            Ok((FrameType::Hello, _, agent)) => {
                let agent = String::from_utf8_lossy(&agent).into_owned();
                conn.send(FrameType::Welcome, 0, b"").await?;
                Ok((conn, agent))
            }
            Ok((other, _, _)) => Err(ForwardError::Unexpected(other)),
            Err(ForwardError::BadFrame) => {
                let reason = b"the key does not match the collector's";
                let mut frame = Vec::with_capacity(5 + reason.len());
                frame.extend_from_slice(&(1 + reason.len() as u32).to_le_bytes());
                frame.push(REFUSED);
                frame.extend_from_slice(reason);
                let _ = conn.stream.write_all(&frame).await;
                let _ = conn.stream.shutdown().await;
                Err(ForwardError::BadFrame)
            }
            Err(e) => Err(e),
        }
    }

    fn keyed(stream: S, key: &SharedKey, client: &[u8], server: &[u8], side: Side) -> Self {
        let mut salt = Vec::with_capacity(2 * RANDOM_LEN);
        salt.extend_from_slice(client);
        salt.extend_from_slice(server);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&key.0);
        let derive = |info: &[u8]| {
            let info = [info];
            let okm = prk
                .expand(&info, &AES_256_GCM)
                .expect("AES-256-GCM's key length is a valid HKDF output length");
            LessSafeKey::new(UnboundKey::from(okm))
        };
        let (to_server, to_client) = (
            derive(b"runnel forward v1 client to server"),
            derive(b"runnel forward v1 server to client"),
        );
        let (send, receive) = match side {
            Side::Client => (to_server, to_client),
            Side::Server => (to_client, to_server),
        };
        Self {
            stream,
            send: Direction {
                key: send,
                counter: 0,
            },
            receive: Direction {
                key: receive,
                counter: 0,
            },
            buffer: Vec::new(),
        }
    }

    /// The stream the connection runs over.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Seals and writes one frame.
    pub async fn send(
        &mut self,
        kind: FrameType,
        id: u64,
        payload: &[u8],
    ) -> Result<(), ForwardError> {
        let mut frame = Vec::with_capacity(5 + 9 + payload.len() + 16);
        frame.extend_from_slice(&[0; 4]);
        frame.push(SEALED);
        frame.push(kind as u8);
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(payload);
        let nonce = self.send.nonce();
        let tag = self
            .send
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut frame[5..])
            .map_err(|_| ForwardError::BadFrame)?;
        frame.extend_from_slice(tag.as_ref());
        let len = frame.len() - 4;
        if len > MAX_FRAME {
            return Err(ForwardError::TooLarge {
                len,
                max: MAX_FRAME,
            });
        }
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads and opens one frame: its type, id and payload.
    pub async fn receive(&mut self) -> Result<(FrameType, u64, Vec<u8>), ForwardError> {
        self.receive_within(MAX_FRAME).await
    }

    /// Reads and opens one frame of at most `max` bytes. The buffer grows as the
    /// frame's bytes arrive, never from the length a peer announces, and a large frame's
    /// buffer is not kept for the next.
    async fn receive_within(
        &mut self,
        max: usize,
    ) -> Result<(FrameType, u64, Vec<u8>), ForwardError> {
        /// What a connection keeps of its buffer between frames.
        const KEEP: usize = 64 << 10;
        let len = self.stream.read_u32_le().await? as usize;
        if len > max {
            return Err(ForwardError::TooLarge { len, max });
        }
        if len < 1 {
            return Err(ForwardError::BadFrame);
        }
        self.buffer.clear();
        self.buffer.shrink_to(KEEP);
        (&mut self.stream)
            .take(len as u64)
            .read_to_end(&mut self.buffer)
            .await?;
        if self.buffer.len() < len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        match self.buffer[0] {
            SEALED => {}
            REFUSED => {
                let reason = String::from_utf8_lossy(&self.buffer[1..]).into_owned();
                return Err(ForwardError::Refused(reason));
            }
            _ => return Err(ForwardError::BadFrame),
        }
        let nonce = self.receive.nonce();
        let plain = self
            .receive
            .key
            .open_in_place(nonce, Aad::empty(), &mut self.buffer[1..])
            .map_err(|_| ForwardError::BadFrame)?;
        if plain.len() < 9 {
            return Err(ForwardError::BadFrame);
        }
        let kind = FrameType::from_u8(plain[0]).ok_or(ForwardError::BadFrame)?;
        let id = u64::from_le_bytes(plain[1..9].try_into().expect("8 bytes"));
        Ok((kind, id, plain[9..].to_vec()))
    }
}

fn random() -> Result<[u8; RANDOM_LEN], ForwardError> {
    let mut bytes = [0u8; RANDOM_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ForwardError::Io(std::io::Error::other("no system randomness")))?;
    Ok(bytes)
}

fn greeting(random: &[u8; RANDOM_LEN]) -> [u8; 4 + RANDOM_LEN] {
    let mut out = [0u8; 4 + RANDOM_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..].copy_from_slice(random);
    out
}

async fn read_greeting<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<[u8; RANDOM_LEN], ForwardError> {
    let mut greeting = [0u8; 4 + RANDOM_LEN];
    stream.read_exact(&mut greeting).await?;
    if &greeting[..4] != MAGIC {
        return Err(ForwardError::NotForward(greeting[..4].to_vec()));
    }
    let mut random = [0u8; RANDOM_LEN];
    random.copy_from_slice(&greeting[4..]);
    Ok(random)
}

/// A new key for `forward`: 64 hex digits and a newline.
pub fn keygen() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex + "\n")
}

/// Writes a key made by [`keygen`] to a new file readable by its owner only.
pub fn write_key(out: &Path, key: &str) -> anyhow::Result<()> {
    use std::io::Write;
    crate::files::private_file()
        .write(true)
        .create_new(true)
        .open(out)
        .and_then(|mut f| f.write_all(key.as_bytes()))
        .with_context(|| format!("write the key file {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SharedKey {
        SharedKey::from_bytes([byte; 32])
    }

    #[tokio::test]
    async fn frames_flow_both_ways_sealed_and_in_order() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let (mut conn, agent) = Connection::server(b, &key(7)).await.unwrap();
            assert_eq!(agent, "edge-1");
            for expected in 1..=3u64 {
                let (kind, id, payload) = conn.receive().await.unwrap();
                assert_eq!((kind, id), (FrameType::Batch, expected));
                assert_eq!(
                    payload,
                    format!("batch {expected} SECRET-MARKER").into_bytes()
                );
                conn.send(FrameType::Ack, id, b"").await.unwrap();
            }
        });
        let mut client = Connection::client(a, &key(7), "edge-1").await.unwrap();
        for id in 1..=3u64 {
            client
                .send(
                    FrameType::Batch,
                    id,
                    format!("batch {id} SECRET-MARKER").as_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(client.receive().await.unwrap().0, FrameType::Ack);
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn before_the_handshake_a_large_frame_is_refused_before_it_is_read() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { Connection::server(b, &key(1)).await.map(|_| ()) });
        a.write_all(&greeting(&[9; RANDOM_LEN])).await.unwrap();
        a.write_all(&((64u32 << 20).to_le_bytes())).await.unwrap();
        // Nothing more is sent: the server answers from the length alone.
        match server.await.unwrap() {
            Err(ForwardError::TooLarge { len, max }) => {
                assert_eq!((len, max), (64 << 20, MAX_HANDSHAKE_FRAME));
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_and_large_frames_still_pass() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let big = vec![7u8; 3 << 20];
        let expected = big.clone();
        let server = tokio::spawn(async move {
            let (mut conn, _) = Connection::server(b, &key(4)).await.unwrap();
            let (_, _, payload) = conn.receive().await.unwrap();
            assert_eq!(payload, expected);
            // The next frame announces 1 MiB and the peer goes away after 10 bytes.
            conn.receive().await.map(|_| ())
        });
        let mut client = Connection::client(a, &key(4), "edge").await.unwrap();
        client.send(FrameType::Batch, 1, &big).await.unwrap();
        client
            .stream
            .write_all(&(1u32 << 20).to_le_bytes())
            .await
            .unwrap();
        client.stream.write_all(&[0; 10]).await.unwrap();
        drop(client);
        match server.await.unwrap() {
            Err(ForwardError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_with_a_clear_error_on_both_sides() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move { Connection::server(b, &key(1)).await.map(|_| ()) });
        let client = Connection::client(a, &key(2), "edge").await.map(|_| ());
        match client {
            Err(ForwardError::Refused(reason)) => assert!(reason.contains("key"), "{reason}"),
            other => panic!("{:?}", other.err()),
        }
        assert!(matches!(server.await.unwrap(), Err(ForwardError::BadFrame)));
    }

    #[tokio::test]
    async fn an_altered_or_replayed_frame_does_not_open() {
        // Two frames sealed by a client, read by a server that sees them out of order.
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let k = key(3);
        let client = tokio::spawn(async move {
            let mut conn = Connection::keyed(a, &k, &[1; 16], &[2; 16], Side::Client);
            conn.send(FrameType::Batch, 1, b"one").await.unwrap();
            conn.send(FrameType::Batch, 2, b"two").await.unwrap();
        });
        client.await.unwrap();
        let mut bytes = Vec::new();
        let mut first = [0u8; 4];
        b.read_exact(&mut first).await.unwrap();
        let len = u32::from_le_bytes(first) as usize;
        let mut frame1 = vec![0; len];
        b.read_exact(&mut frame1).await.unwrap();
        b.read_to_end(&mut bytes).await.unwrap(); // the second frame, whole
        assert!(
            !bytes.windows(3).any(|w| w == b"two"),
            "the payload is encrypted"
        );
        // The second frame first: its nonce is not the one expected.
        let (c, mut d) = tokio::io::duplex(1 << 20);
        d.write_all(&bytes).await.unwrap();
        drop(d);
        let mut server = Connection::keyed(c, &key(3), &[1; 16], &[2; 16], Side::Server);
        assert!(matches!(
            server.receive().await,
            Err(ForwardError::BadFrame)
        ));
        // The first frame with one bit flipped.
        let (e, mut f) = tokio::io::duplex(1 << 20);
        frame1[10] ^= 1;
        f.write_all(&(len as u32).to_le_bytes()).await.unwrap();
        f.write_all(&frame1).await.unwrap();
        drop(f);
        let mut server = Connection::keyed(e, &key(3), &[1; 16], &[2; 16], Side::Server);
        assert!(matches!(
            server.receive().await,
            Err(ForwardError::BadFrame)
        ));
    }
}
