//! Whether a request may be served from the daemon's warm pools, decided in
//! one place. A pooled zygote is a sandbox made for its profile as it is
//! (with limits of the request's own): anything else about the sandbox, or
//! about how the caller keeps and watches it, needs one made for it. The
//! reason for the cold path is what `--debug` prints.

use crate::cli::{ExecCmd, Run};

/// The copy of phantom the CVE-2019-5736 guard re-executed decided before
/// it (and logged why); it does not log again.
const REEXEC: &str = "the guard's re-exec (the warm path was tried before it)";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ask the daemon (which may still answer "no zygote": then cold).
    Warm,
    /// The cold path, and why.
    Cold(&'static str),
}

impl Route {
    fn first(checks: &[(bool, &'static str)]) -> Route {
        checks
            .iter()
            .find(|(cold, _)| *cold)
            .map_or(Route::Warm, |(_, why)| Route::Cold(why))
    }

    /// Logs a cold route's reason (`--debug`); the warm path logs its own
    /// line once a zygote answered.
    pub fn log(self, what: &str) -> Route {
        match self {
            Route::Cold(why) if why != REEXEC => tracing::debug!("cold path for {what}: {why}"),
            _ => {}
        }
        self
    }
}

/// `phantom run --profile`: `has_id` when the caller named the sandbox,
/// `stdin_tty` when a terminal is attached.
pub fn run(a: &Run, has_id: bool, has_command: bool, stdin_tty: bool) -> Route {
    let s = &a.sandbox;
    Route::first(&[
        (s.no_daemon, "--no-daemon"),
        (phantom_runtime::exe_guard::is_reexec(), REEXEC),
        (has_id, "the sandbox has an id of the caller's"),
        (!has_command, "no command"),
        (s.workspace.is_some(), "--workspace"),
        (s.workspace_size.is_some(), "--workspace-size"),
        (s.mode.is_some(), "--mode"),
        (s.network.is_some(), "--network"),
        // An egress sandbox needs its own network namespace, veth and
        // proxy, made for it: no pooled zygote has them.
        (
            !s.allow.is_empty() || !s.allow_cidr.is_empty(),
            "--allow or --allow-cidr (egress needs a network of its own)",
        ),
        (s.profile_path.is_some(), "--profile-path"),
        // The daemon's raises are per API key; its socket serves none.
        (
            s.raise_network.is_some()
                || s.raise_memory.is_some()
                || s.raise_pids.is_some()
                || s.raise_cpus.is_some(),
            "an operator's raised ceiling (the daemon's socket serves the profile's)",
        ),
        (a.console_socket.is_some(), "--console-socket"),
        (a.pid_file.is_some(), "--pid-file"),
        (a.detach, "--detach"),
        (a.keep, "--keep"),
        (stdin_tty, "a terminal on stdin"),
    ])
}

/// `phantom exec`: only plain invocations; what engines pass (a process
/// file, a terminal, --detach, a pid file, users, capabilities...) is the
/// cold path, so their process stays theirs.
pub fn exec(c: &ExecCmd) -> Route {
    let a = &c.oci;
    Route::first(&[
        (c.no_daemon, "--no-daemon"),
        (phantom_runtime::exe_guard::is_reexec(), REEXEC),
        (a.command.is_empty(), "no command"),
        (a.process.is_some(), "--process"),
        (a.tty, "--tty"),
        (a.detach, "--detach"),
        (a.pid_file.is_some(), "--pid-file"),
        (a.console_socket.is_some(), "--console-socket"),
        (
            a.user.is_some() || !a.additional_gids.is_empty(),
            "--user or --additional-gids",
        ),
        (!a.cap.is_empty(), "--cap"),
        (a.no_new_privs, "--no-new-privs"),
        (a.preserve_fds != 0, "--preserve-fds"),
        (
            a.apparmor.is_some() || a.process_label.is_some(),
            "--apparmor or --process-label",
        ),
        (a.cgroup.is_some(), "--cgroup"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> crate::cli::Cli {
        crate::cli::Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn the_first_reason_is_named() {
        let cli = parse(&["phantom", "exec", "--tty", "--detach", "box", "sh"]);
        let Some(crate::cli::Command::Exec(c)) = &cli.command else {
            panic!("exec")
        };
        assert_eq!(exec(c), Route::Cold("--tty"));
        let cli = parse(&["phantom", "exec", "box", "sh"]);
        let Some(crate::cli::Command::Exec(c)) = &cli.command else {
            panic!("exec")
        };
        assert_eq!(exec(c), Route::Warm);
    }

    #[test]
    fn runs_that_need_a_sandbox_of_their_own_are_cold() {
        let route = |args: &[&str], id: bool, tty: bool| {
            let cli = parse(args);
            let Some(crate::cli::Command::Run(r)) = &cli.command else {
                panic!("run")
            };
            run(r, id, true, tty)
        };
        let base = ["phantom", "run", "--profile", "python-dev"];
        assert_eq!(route(&base, false, false), Route::Warm);
        assert_eq!(
            route(&base, false, true),
            Route::Cold("a terminal on stdin")
        );
        assert_eq!(
            route(&base, true, false),
            Route::Cold("the sandbox has an id of the caller's")
        );
        let with = |extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            route(&v, false, false)
        };
        assert_eq!(with(&["--network", "loopback"]), Route::Cold("--network"));
        assert_eq!(with(&["--network", "egress"]), Route::Cold("--network"));
        assert_eq!(
            with(&["--allow", "pypi.org"]),
            Route::Cold("--allow or --allow-cidr (egress needs a network of its own)")
        );
        assert_eq!(with(&["--no-daemon"]), Route::Cold("--no-daemon"));
        assert_eq!(with(&["--detach"]), Route::Cold("--detach"));
    }
}
