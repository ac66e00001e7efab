//! What the kernel says about a process (CPU time, peak RSS) and what a data directory
//! holds on disk. Linux only: read from `/proc/<pid>/stat` and `/proc/<pid>/status`.

use std::path::Path;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, almost always 100).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime, in ticks, parsed from the text of `/proc/<pid>/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) a process has used so far; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / clk_tck())
}

/// CPU seconds used by this process.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// A `Vm…:   1234 kB` field of `/proc/<pid>/status`, in KiB.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident set size (VmHWM), KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&s, "VmHWM")
}

/// Current resident set size (VmRSS), KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&s, "VmRSS")
}

/// Size of everything under `dir`: (apparent bytes, allocated bytes on disk).
pub fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                apparent += md.len();
                allocated += md.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

/// Files a process holds open that are deleted (`/proc/<pid>/fd/*` → `… (deleted)`): how
/// many, and the bytes still allocated to them (freed only when the process closes them).
/// `None` once the process is gone.
pub fn deleted_open_files(pid: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut seen = std::collections::HashSet::new();
    let (mut count, mut allocated) = (0, 0);
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if !target.to_string_lossy().ends_with(" (deleted)") {
            continue;
        }
        // The metadata of the open file itself (the link is followed even when deleted);
        // a file open twice counts once.
        let Ok(md) = std::fs::metadata(fd.path()) else {
            continue;
        };
        if md.is_file() && seen.insert((md.dev(), md.ino())) {
            count += 1;
            allocated += md.blocks() * 512;
        }
    }
    Some((count, allocated))
}

/// A short description of the machine: cores, CPU model, kernel.
pub fn machine_summary() -> serde_json::Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_status_kib(&s, "MemTotal"));
    serde_json::json!({
        "cores": cores,
        "cpu": cpu,
        "kernel": kernel,
        "mem_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 50";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t  4321 kB\nVmRSS:\t  4000 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(4321));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(4000));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(vm_hwm_kib(pid).unwrap() > 0);
        assert!(vm_rss_kib(pid).unwrap() > 0);
    }

    #[test]
    fn sees_a_deleted_file_held_open() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("held");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        f.sync_all().unwrap();
        let pid = std::process::id();
        let (n0, b0) = deleted_open_files(pid).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (n1, b1) = deleted_open_files(pid).unwrap();
        // Other tests may hold deleted files of their own meanwhile: at least this one.
        assert!(n1 > n0 || b1 > b0, "{n0} {b0} → {n1} {b1}");
        drop(f);
    }

    #[test]
    fn sizes_a_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(d.path().join("sub/b"), vec![0u8; 24]).unwrap();
        let (apparent, _) = dir_size(d.path());
        assert_eq!(apparent, 1024);
    }
}
