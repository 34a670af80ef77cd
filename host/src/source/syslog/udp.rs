//! Receiving syslog datagrams with the kernel's count of those it dropped.
//!
//! What arrives while a UDP socket's receive buffer is full is dropped by the kernel,
//! before Runnel could see it. Linux counts those drops per socket and, once
//! `SO_RXQ_OVFL` is set, hands the count (since the socket was made) with every
//! datagram received: [`Receiver::recv`] reads it, and the source reports the growth as
//! `source.NAME dropped_kernel` — the loss is counted, not silent.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// `SO_RXQ_OVFL` of `asm-generic/socket.h`, which x86-64, aarch64 and riscv64 use.
const SO_RXQ_OVFL: libc::c_int = 40;

/// Room for one control message carrying a `u32` (the drop count), and then some.
const CONTROL_LEN: usize = 64;

/// Receives datagrams from a socket, with the kernel's drop count when it gives one.
pub struct Receiver {
    /// Whether the kernel took `SO_RXQ_OVFL` (Linux does).
    counting: bool,
    control: [u8; CONTROL_LEN],
}

/// One received datagram: its length in the buffer, where it came from, and the
/// kernel's count of datagrams this socket has dropped so far (when counting).
pub struct Received {
    pub len: usize,
    pub peer: SocketAddr,
    pub dropped_so_far: Option<u32>,
}

impl Receiver {
    /// Asks the kernel to count drops on `socket`; without that (another OS), datagrams
    /// are still received, only not counted.
    pub fn new(socket: &UdpSocket) -> Self {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is the open socket `socket` owns for the whole call;
        // the option value is a live `c_int` and its exact size is passed.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_RXQ_OVFL,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            tracing::warn!(
                "syslog: the kernel does not count the datagrams it drops on this socket ({}): losses from a full receive buffer will not show in dropped_kernel",
                io::Error::last_os_error()
            );
        }
        Self {
            counting: set == 0,
            control: [0; CONTROL_LEN],
        }
    }

    /// Receives one datagram into `buf` without waiting (`WouldBlock` when none is
    /// there).
    pub fn recv(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
        let counting = self.counting;
        let control = &mut self.control;
        socket.try_io(Interest::READABLE, || {
            let sock = socket2::SockRef::from(socket);
            let mut from = socket2::SockAddr::from(SocketAddr::from(([0u16; 8], 0)));
            let mut bufs = [socket2::MaybeUninitSlice::new(as_uninit(buf))];
            let mut msg = socket2::MsgHdrMut::new()
                .with_addr(&mut from)
                .with_buffers(&mut bufs);
            if counting {
                msg = msg.with_control(as_uninit(&mut control[..]));
            }
            let len = sock.recvmsg(&mut msg, 0)?;
            // The last use of `msg`: its borrows of `from` and `control` end here.
            let control_len = if counting { msg.control_len() } else { 0 };
            let peer = from
                .as_socket()
                .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
            Ok(Received {
                len,
                peer,
                // The kernel adds the count only once it is not zero.
                dropped_so_far: counting.then(|| drop_count(&control[..control_len]).unwrap_or(0)),
            })
        })
    }
}

/// Views initialised bytes as possibly uninitialised ones, for a receive call to fill.
fn as_uninit(bytes: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the bytes are initialised;
    // the only writer through this view is the kernel's recvmsg, which stores
    // initialised bytes (never "uninitialised" ones), so they stay valid `u8`s.
    unsafe { &mut *(bytes as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// The `SO_RXQ_OVFL` count in the control messages of a `recvmsg` (Linux's `cmsghdr`
/// layout: `size_t len`, `int level`, `int type`, the data aligned to `size_t`).
fn drop_count(control: &[u8]) -> Option<u32> {
    const WORD: usize = std::mem::size_of::<usize>();
    let align = |n: usize| n.div_ceil(WORD) * WORD;
    let header = align(WORD + 8);
    let mut at = 0;
    while at + header <= control.len() {
        let field = |from: usize, n: usize| control.get(at + from..at + from + n);
        let len = usize::from_ne_bytes(field(0, WORD)?.try_into().ok()?);
        let level = i32::from_ne_bytes(field(WORD, 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(field(WORD + 4, 4)?.try_into().ok()?);
        if len < header {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == SO_RXQ_OVFL && len >= header + 4 {
            return Some(u32::from_ne_bytes(field(header, 4)?.try_into().ok()?));
        }
        at += align(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drops_of_a_full_receive_buffer_are_counted_exactly() {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let socket = UdpSocket::from_std(socket.into()).unwrap();
        let mut receiver = Receiver::new(&socket);
        let to = socket.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // 500 datagrams of 1000 bytes into a buffer of a few: most are dropped.
        for i in 0..500u32 {
            let mut datagram = vec![b'x'; 1000];
            datagram[..4].copy_from_slice(&i.to_le_bytes());
            sender.send_to(&datagram, to).unwrap();
        }
        let mut buf = vec![0u8; 2048];
        let mut received = 0u32;
        let mut dropped = 0;
        // Until nothing more comes for a while (tokio reads only once it saw readiness).
        while tokio::time::timeout(std::time::Duration::from_millis(300), socket.readable())
            .await
            .is_ok()
        {
            match receiver.recv(&socket, &mut buf) {
                Ok(got) => {
                    assert_eq!(got.len, 1000);
                    assert_eq!(got.peer, sender.local_addr().unwrap());
                    received += 1;
                    dropped = got.dropped_so_far.expect("Linux counts drops");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        // One more, after the queue was emptied: it carries the final count.
        sender.send_to(b"last", to).unwrap();
        socket.readable().await.unwrap();
        let last = receiver.recv(&socket, &mut buf).unwrap();
        assert_eq!(&buf[..last.len], b"last");
        let final_count = last.dropped_so_far.unwrap();
        assert!(final_count >= dropped);
        assert!(
            received < 500,
            "nothing was dropped: the test proves nothing"
        );
        assert_eq!(received + final_count, 500);
    }

    #[test]
    fn control_messages_that_are_not_a_drop_count_are_skipped() {
        assert_eq!(drop_count(&[]), None);
        assert_eq!(drop_count(&[0; 8]), None);
        let word = std::mem::size_of::<usize>();
        let mut control = Vec::new();
        control.extend_from_slice(&(word + 8 + 4).to_ne_bytes());
        control.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control.extend_from_slice(&SO_RXQ_OVFL.to_ne_bytes());
        control.extend_from_slice(&7u32.to_ne_bytes());
        assert_eq!(drop_count(&control), Some(7));
        // A zero length never loops.
        let mut looping = vec![0u8; 64];
        looping[word..word + 4].copy_from_slice(&1i32.to_ne_bytes());
        assert_eq!(drop_count(&looping), None);
    }
}
