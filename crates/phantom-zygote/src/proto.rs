//! The warm path's messages, each defined once for both of its ends:
//! a client (the CLI, the REST/MCP backend) and the daemon's unix socket,
//! and a client and a zygote runner (or the Python fork server, whose side
//! is written to the same shapes in `python/forkserver.py`).
//!
//! Every message is JSON. Requests carry `"v"`, the protocol version; one
//! without is version 1, and a version this build does not know is
//! answered with an error rather than guessed at. Fields are the wire's
//! names, so the shapes in the crate's doc are these types.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("protocol version {0} is not spoken here (this phantom speaks {VERSION})")]
    Version(u64),
}

/// The text of `msg` with the version added (requests only).
pub fn to_text<T: Serialize>(msg: &T) -> String {
    let mut v = serde_json::to_value(msg).expect("protocol messages serialise");
    if let Some(o) = v.as_object_mut() {
        o.insert("v".into(), VERSION.into());
    }
    v.to_string()
}

/// A request read from `text`, its version checked.
pub fn from_text<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ProtoError> {
    let v: Value = serde_json::from_str(text)?;
    let version = v.get("v").and_then(Value::as_u64).unwrap_or(1);
    if version != VERSION {
        return Err(ProtoError::Version(version));
    }
    Ok(serde_json::from_value(v)?)
}

/// Client -> daemon, one JSON line on its stream socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DaemonRequest {
    /// A pooled zygote of `profile`; `python`: the fork server may serve
    /// the command. `resources` are the limits the client will send the
    /// zygote: the daemon checks them against the profile first.
    Acquire {
        profile: String,
        #[serde(default)]
        python: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<Box<LinuxResources>>,
    },
    /// A process already joined to the running sandbox `id` under `root`.
    AcquireExec { id: String, root: PathBuf },
    /// The pools' sizes (`phantom daemon --status`): a JSON report.
    Pools,
}

/// Daemon -> client for `acquire` and `acquire_exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DaemonReply {
    /// Connect to the zygote at `zygote`.
    Zygote {
        zygote: PathBuf,
        /// "zygote", "python" (a fork server) or "exec".
        kind: String,
        /// The sandbox's fresh workspace on the host (plain zygotes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<PathBuf>,
    },
    /// None handed out. `refused`: the request may not be served at all
    /// (its limits are above the profile's), warm or cold.
    Error {
        error: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        refused: bool,
    },
}

impl DaemonReply {
    pub fn error(why: impl Into<String>) -> DaemonReply {
        DaemonReply::Error {
            error: why.into(),
            refused: false,
        }
    }

    pub fn refused(why: impl Into<String>) -> DaemonReply {
        DaemonReply::Error {
            error: why.into(),
            refused: true,
        }
    }
}

/// Client -> zygote runner: what to run, with fds 0, 1 and 2 attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub args: Vec<String>,
    /// `K=V`, added to (and overriding) the profile's environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Limits of this request for the zygote's cgroup (plain zygotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<LinuxResources>,
}

/// Runner -> client: first `Started` once the program runs, then
/// `Finished` once it exited (or `Finished` alone when it never started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunReply {
    Started {
        started: bool,
    },
    Finished {
        status: i32,
        /// Why the program could not start, or what ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The runner's detail of a failure, naming host paths: for the
        /// local CLI and the daemon's log, never a remote client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl RunReply {
    pub fn status(status: i32, error: Option<String>) -> RunReply {
        RunReply::Finished {
            status,
            error,
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shapes() {
        let req = DaemonRequest::Acquire {
            profile: "python-dev".into(),
            python: true,
            resources: None,
        };
        let text = to_text(&req);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["op"], "acquire");
        assert_eq!(v["v"], 1);
        assert_eq!(from_text::<DaemonRequest>(&text).unwrap(), req);
        // A version-less request is version 1; an unknown one is refused.
        assert_eq!(
            from_text::<DaemonRequest>(r#"{"op":"pools"}"#).unwrap(),
            DaemonRequest::Pools
        );
        assert!(matches!(
            from_text::<DaemonRequest>(r#"{"op":"pools","v":7}"#),
            Err(ProtoError::Version(7))
        ));
        assert!(from_text::<DaemonRequest>(r#"{"op":"steal"}"#).is_err());

        let reply: DaemonReply =
            serde_json::from_str(r#"{"zygote":"/z.sock","kind":"python"}"#).unwrap();
        assert!(matches!(
            reply,
            DaemonReply::Zygote {
                workspace: None,
                ..
            }
        ));
        let reply: DaemonReply = serde_json::from_str(r#"{"error":"no"}"#).unwrap();
        assert_eq!(reply, DaemonReply::error("no"));
        assert_eq!(
            serde_json::to_string(&DaemonReply::refused("above")).unwrap(),
            r#"{"error":"above","refused":true}"#
        );

        // What the Python fork server sends is read the same way.
        let r: RunReply = serde_json::from_str(r#"{"started":true}"#).unwrap();
        assert_eq!(r, RunReply::Started { started: true });
        let r: RunReply = serde_json::from_str(r#"{"status":126,"error":"x"}"#).unwrap();
        assert_eq!(r, RunReply::status(126, Some("x".into())));
        let run: RunRequest =
            from_text(r#"{"args":["true"],"env":[],"cwd":null,"timeout_ms":5}"#).unwrap();
        assert_eq!(run.timeout_ms, Some(5));
    }
}
