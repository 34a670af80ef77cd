//! The systemd service protocol (`sd_notify`), for `Type=notify` units: the agent says
//! `READY=1` once its pipeline runs, `RELOADING=1` … `READY=1` around a config reload,
//! `STOPPING=1` when it begins to drain, and, when the unit sets `WatchdogSec=`, pings
//! `WATCHDOG=1` at half that interval from the runtime — a hung runtime stops the pings
//! and systemd restarts the service.
//!
//! The protocol is one datagram per message to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); without it (not
//! under systemd) every call does nothing. Written here rather than with a crate: it is
//! these few lines over std's `UnixDatagram`.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, if the agent runs under systemd with `Type=notify`.
fn socket_address() -> Option<std::os::unix::net::SocketAddr> {
    let name = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
    match bytes.split_first() {
        Some((b'@', abstract_name)) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()
        }
        Some((b'/', _)) => std::os::unix::net::SocketAddr::from_pathname(&name).ok(),
        _ => None,
    }
}

/// Sends one notification (`"READY=1"`); false when there is no systemd to tell or the
/// datagram could not be sent (logged at debug: the agent works on without it).
pub fn notify(state: &str) -> bool {
    let Some(address) = socket_address() else {
        return false;
    };
    let sent =
        UnixDatagram::unbound().and_then(|socket| socket.send_to_addr(state.as_bytes(), &address));
    if let Err(e) = &sent {
        tracing::debug!("sd_notify {state:?}: {e}");
    }
    sent.is_ok()
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process when
/// `WATCHDOG_PID` names one).
fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval from the tokio runtime, as long as the
/// runtime runs (nothing when the unit has no watchdog).
pub fn spawn_watchdog() {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog: pinging at half the interval"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            notify("WATCHDOG=1");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_and_nothing_happens_without_one() {
        // One test touches the environment, so tests running in parallel do not race.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        // SAFETY: no other test of this binary reads or writes NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        unsafe { std::env::set_var("NOTIFY_SOCKET", "relative/not/allowed") };
        assert!(!notify("READY=1"));
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify("READY=1"));
    }
}
