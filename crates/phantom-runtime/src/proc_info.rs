//! Facts about processes read from `/proc`.

use std::fs;

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Start time of a process in clock ticks since boot (field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Parent pid (field 4).
pub fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// True if `pid` runs (not a zombie) and, when given, started at `start`.
pub fn is_alive(pid: i32, start: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(fields) = stat_fields(pid) else {
        return false;
    };
    let state = fields.first().map(String::as_str).unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    match (start, fields.get(19).and_then(|s| s.parse::<u64>().ok())) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    }
}

/// Every pid on the host whose pid namespace is `ns_link` (`pid:[N]`).
pub fn pids_in_pid_ns(ns_link: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(link) = fs::read_link(format!("/proc/{pid}/ns/pid")) {
            if link.to_string_lossy() == ns_link {
                out.push(pid);
            }
        }
    }
    out
}

/// `pid` and all its descendants, found through parent links.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some(pp) = ppid(p) {
                    all.push((p, pp));
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let st = start_time(me);
        assert!(st.is_some());
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st.map(|s| s + 1)));
        assert!(!is_alive(-1, None));
        assert_eq!(ppid(me), Some(nix::unistd::getppid().as_raw()));
    }
}
