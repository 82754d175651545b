//! Hook mode: record what a hook receives.
//!
//! ```text
//! rst-checker hook --log FILE --name NAME [--delay-ms MS] [--exit CODE] [--sleep SECS] [ARGS...]
//! ```
//!
//! Appends one JSON object per call to FILE: the hook name, the state read
//! from stdin (config.md: "the state of the container MUST be passed to
//! hooks over stdin"), argv, environment, the hook's pid and its mount and
//! pid namespace inodes. `--delay-ms` waits before all that (a slow hook,
//! for ordering tests). Then sleeps SECS (for timeout tests) and exits
//! with CODE (for failure tests).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use serde_json::{json, Value};

use crate::procfs;

pub fn main(args: &[String]) -> i32 {
    let mut log = None;
    let mut name = String::new();
    let mut exit = 0;
    let mut sleep = 0u64;
    let mut delay_ms = 0u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--log" => log = it.next().cloned(),
            "--name" => name = it.next().cloned().unwrap_or_default(),
            "--exit" => exit = it.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--sleep" => sleep = it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            "--delay-ms" => delay_ms = it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let Some(log) = log else {
        eprintln!("rst-checker hook: --log is required");
        return 2;
    };
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let state = serde_json::from_str::<Value>(&stdin).unwrap_or(Value::String(stdin));
    let record = json!({
        "name": name,
        "state": state,
        "argv": std::env::args().collect::<Vec<_>>(),
        "env": std::env::vars().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "hook_pid": std::process::id(),
        "mntns": procfs::ns_inode("/proc/self/ns/mnt"),
        "pidns": procfs::ns_inode("/proc/self/ns/pid"),
    });
    let line = format!("{record}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("rst-checker hook: append to {log}: {e}");
        return 3;
    }
    if sleep > 0 {
        std::thread::sleep(std::time::Duration::from_secs(sleep));
    }
    exit
}
