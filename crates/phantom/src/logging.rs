//! Logs as runc writes them: `--log FILE` (default stderr) and
//! `--log-format text|json`. containerd's shim and Podman read the JSON
//! lines `{"level":"error","msg":"...","time":"..."}` and show the last
//! error line, so every failure is logged there with what went wrong.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub fn parse_format(s: Option<&str>) -> anyhow::Result<Format> {
    match s {
        None | Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        Some(other) => anyhow::bail!("--log-format: unknown format {other:?} (text or json)"),
    }
}

struct RuncLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
    max: Level,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let lvl = level.as_str().to_ascii_lowercase();
        let time = phantom_runtime::state::rfc3339_now();
        let line = match self.format {
            Format::Json => {
                let mut v = serde_json::json!({"level": lvl, "msg": f.msg, "time": time});
                for (k, val) in f.extra {
                    v[k] = serde_json::Value::String(val);
                }
                format!("{v}\n")
            }
            Format::Text => {
                let extra: String = f.extra.iter().map(|(k, v)| format!(" {k}={v}")).collect();
                format!("time=\"{time}\" level={lvl} msg={:?}{extra}\n", f.msg)
            }
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// Install the logger. Returns whether logs go to a file (then errors are
/// also printed to stderr for the person at the terminal).
pub fn init(log: Option<&Path>, format: Format, debug: bool) -> anyhow::Result<bool> {
    let (out, to_file): (Box<dyn Write + Send>, bool) = match log {
        Some(p) if p != Path::new("/dev/stderr") => {
            let f: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--log: cannot open {}: {e}", p.display()))?;
            (Box::new(f), true)
        }
        _ => (Box::new(std::io::stderr()), false),
    };
    let max = if debug { Level::DEBUG } else { Level::WARN };
    let layer = RuncLayer {
        out: Mutex::new(out),
        format,
        max,
    };
    tracing_subscriber::registry().with(layer).init();
    Ok(to_file)
}
