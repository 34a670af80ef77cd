//! The `exec` source: runs a command (`sh -c`), reads its standard output line by line,
//! and restarts it with exponential backoff whenever it exits or fails to start.

use super::lines::pump;
use super::{Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// A run this long resets the backoff: the command was healthy.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Run with `sh -c`.
    pub command: String,
    #[serde(default = "default_backoff_ms")]
    pub restart_backoff_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub restart_backoff_max_ms: u64,
}

fn default_backoff_ms() -> u64 {
    1000
}

fn default_backoff_max_ms() -> u64 {
    30_000
}

impl SourceConfig for ExecConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.command.trim().is_empty() {
            problems.at("command", "must not be empty");
        }
        problems.range("restart_backoff_ms", self.restart_backoff_ms, 1, 3_600_000);
        if self.restart_backoff_max_ms < self.restart_backoff_ms {
            problems.at(
                "restart_backoff_max_ms",
                "must be at least `restart_backoff_ms`",
            );
        }
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let SourceContext {
                name,
                mut batcher,
                shutdown,
                ..
            } = cx;
            run(
                &name,
                &config.command,
                Duration::from_millis(config.restart_backoff_ms),
                Duration::from_millis(config.restart_backoff_max_ms),
                &mut batcher,
                &shutdown,
            )
            .await;
            batcher.flush().await;
        })
    }
}

async fn run(
    source: &str,
    command: &str,
    backoff_initial: Duration,
    backoff_max: Duration,
    batcher: &mut Batcher,
    shutdown: &CancellationToken,
) {
    let mut backoff = backoff_initial;
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        let outcome = run_once(source, command, batcher, shutdown).await;
        batcher.flush().await;
        if shutdown.is_cancelled() {
            break;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = backoff_initial;
        }
        batcher.error(
            &format!("command `{command}` {outcome}; restarting"),
            Some(backoff),
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(backoff_max);
    }
}

/// Stops the command's whole process group (SIGTERM), then reaps the shell.
async fn stop_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: `killpg` only sends a signal; the group is the one the child leads
        // (spawned with `process_group(0)`), and the child has not been reaped yet, so
        // its id cannot have been reused.
        unsafe {
            libc::killpg(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    let _ = child.kill().await;
}

/// Runs the command once; returns how it ended.
async fn run_once(
    source: &str,
    command: &str,
    batcher: &mut Batcher,
    shutdown: &CancellationToken,
) -> String {
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that stopping it stops a whole pipeline
        // (`tail -F x | grep y`), not just the shell.
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return format!("could not start: {e}"),
    };
    if let Some(stderr) = child.stderr.take() {
        let source = source.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(source = %source, "command stderr: {line}");
            }
        });
    }
    let Some(stdout) = child.stdout.take() else {
        return "has no stdout".into();
    };
    if let Err(e) = pump(stdout, batcher, shutdown).await {
        stop_group(&mut child).await;
        return format!("stdout failed: {e}");
    }
    if shutdown.is_cancelled() {
        stop_group(&mut child).await;
        let _ = child.wait().await;
        return "stopped".into();
    }
    // The command closed its output. Once its shell has exited, stop what it left
    // running in its group (`sleep 313 &`): it would outlive every restart and the
    // agent. The shell is not reaped before that, so the group's id stays its own.
    if let Some(pid) = child.id() {
        let exited = tokio::task::spawn_blocking(move || wait_exited_unreaped(pid)).await;
        if matches!(exited, Ok(Ok(()))) {
            // SAFETY: as in `stop_group`: the leader is a zombie, not yet reaped, so
            // its id still names its group.
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    match child.wait().await {
        Ok(status) => format!("exited ({status})"),
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// Blocks until process `pid` (a child of the agent) has exited, without reaping it.
fn wait_exited_unreaped(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `waitid` writes only into `info`, a valid, exclusively borrowed
        // `siginfo_t`; WNOWAIT leaves the child waitable (not reaped).
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
