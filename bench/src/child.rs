//! Child processes the bench starts (the `fasthook` gateway, the forward relay): read stdout
//! until the "listening on http://…" line, keep draining stdout and stderr (the last lines
//! are kept for error messages), stop with SIGTERM and a grace period.

use anyhow::{anyhow, bail, Result};
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const TAIL_LINES: usize = 40;

pub struct ManagedChild {
    pub name: String,
    pub pid: u32,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut t = tail.lock().expect("tail");
    if t.len() == TAIL_LINES {
        t.pop_front();
    }
    t.push_back(line);
}

fn drain<R: AsyncRead + Unpin + Send + 'static>(r: R, tail: Arc<Mutex<VecDeque<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            push_tail(&tail, l);
        }
    });
}

/// The `http://…` address in a "… listening on http://IP:PORT" line.
pub fn parse_listen_line(line: &str, marker: &str) -> Option<String> {
    let at = line.find(marker)?;
    let rest = &line[at + marker.len()..];
    let start = rest.find("http://")?;
    let url = rest[start..].split_whitespace().next()?;
    Some(url.trim_end_matches('/').to_string())
}

/// What a started child told us.
pub struct Started {
    pub child: ManagedChild,
    pub base_url: String,
    /// From spawn to the listening line.
    pub listening_after: Duration,
}

/// Spawns `cmd` and reads its stdout until a line containing `marker` followed by an
/// `http://` address, within `timeout`.
pub async fn spawn(
    mut cmd: Command,
    name: &str,
    marker: &str,
    timeout: Duration,
) -> Result<Started> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // If the bench dies without unwinding (SIGKILL), take the child with it rather than
    // leave a gateway running on a shared machine.
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot start {name}: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    drain(child.stderr.take().expect("piped stderr"), tail.clone());
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut mc = ManagedChild {
        name: name.to_string(),
        pid,
        child,
        tail: tail.clone(),
    };
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Err(_) => {
                let _ = mc.kill().await;
                bail!(
                    "{name} printed no \"{marker} http://…\" line within {timeout:?}{}",
                    mc.tail_text()
                );
            }
            Ok(Ok(Some(l))) => l,
            Ok(_) => {
                let st = mc.child.wait().await.ok();
                bail!(
                    "{name} exited before listening ({}){}",
                    st.map(|s| s.to_string()).unwrap_or_default(),
                    mc.tail_text()
                );
            }
        };
        if let Some(url) = parse_listen_line(&line, marker) {
            let listening_after = t0.elapsed();
            drain(lines.into_inner().into_inner(), tail);
            return Ok(Started {
                child: mc,
                base_url: url,
                listening_after,
            });
        }
        push_tail(&tail, line);
    }
}

impl ManagedChild {
    /// The last lines the child printed, as a suffix for an error message.
    pub fn tail_text(&self) -> String {
        let t = self.tail.lock().expect("tail");
        if t.is_empty() {
            String::new()
        } else {
            format!(
                "\n--- last output of {} ---\n{}",
                self.name,
                t.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    }

    /// Whether the child has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn kill(&mut self) -> Result<()> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns the exit status if it stopped on its own.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited() {
            return Some(st);
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(st)) => Some(st),
            _ => {
                let _ = self.kill().await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_lines() {
        assert_eq!(
            parse_listen_line(
                "fasthook listening on http://127.0.0.1:4321",
                "listening on"
            )
            .as_deref(),
            Some("http://127.0.0.1:4321")
        );
        assert_eq!(
            parse_listen_line(
                "relay listening on http://127.0.0.1:9/ (2 threads)",
                "listening on"
            )
            .as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(parse_listen_line("starting", "listening on"), None);
    }
}
