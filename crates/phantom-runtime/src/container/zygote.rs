//! Zygotes: sandboxes set up up to the last request-independent step
//! (namespaces, rootfs, cgroup, limits, user and capabilities) whose init
//! then waits on the sync channel. A request hands over argv, env, cwd and
//! the caller's stdio (SCM_RIGHTS); init looks the program up, applies the
//! Landlock rules and the cached seccomp filter, and execs. One request
//! per zygote: nothing crosses between requests.

use std::os::fd::RawFd;

use crate::channel::{Channel, Msg};
use crate::error::{Error, Result};
use crate::process::init::ExecRequest;
use crate::state::{ContainerState, StateStore};

use super::create::CreateOptions;

pub struct Zygote {
    pub state: ContainerState,
    chan: Channel,
}

/// Create a zygote container (`opts.zygote` is forced on). The caller is
/// its parent and must reap it.
pub fn spawn(store: &StateStore, opts: &CreateOptions) -> Result<Zygote> {
    let mut opts = opts.clone();
    opts.zygote = true;
    let (state, chan) = super::create::create_with_channel(store, &opts)?;
    Ok(Zygote { state, chan })
}

impl Zygote {
    pub fn pid(&self) -> i32 {
        self.state.pid.unwrap_or(0)
    }

    /// Run `req` with `stdio` as its stdin, stdout and stderr. Returns once
    /// the program is executing, or the error that stopped it (a missing
    /// program: "executable file not found", as for `create`).
    pub fn exec(&self, store: &StateStore, req: &ExecRequest, stdio: [RawFd; 3]) -> Result<()> {
        let json = serde_json::to_string(req).expect("request serialises");
        self.chan.send_with_fds(&Msg::Exec(json), &stdio)?;
        // init's end is close-on-exec: end of stream means it executed.
        let res = match self.chan.recv()? {
            None => Ok(()),
            Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
                Err(m.into_error().expect("an error message"))
            }
            Some(other) => Err(Error::Init(format!("zygote sent {other:?} out of turn"))),
        };
        // The container is running now (state derives that from the fifo).
        let _ = std::fs::remove_file(store.fifo_path(&self.state.id));
        res
    }
}
