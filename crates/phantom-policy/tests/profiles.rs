//! The built-in profiles' seccomp filters in the kernel: each language's toolchain runs
//! under its profile (a child with no_new_privs and the filter installed right before
//! exec), and forbidden syscalls are denied under every profile. A toolchain that is not
//! installed is skipped with a message (Debian: python3, nodejs, golang-go, rustc,
//! default-jdk-headless).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use phantom_policy::{Catalog, CompiledFilter, TargetArch};

fn filter(profile: &str) -> CompiledFilter {
    let c = Catalog::builtin();
    let p = &c.get(profile).unwrap().profile;
    let s = p.linux_seccomp(TargetArch::native().unwrap()).unwrap();
    phantom_policy::compile_oci(&s).unwrap()
}

/// Runs `cmd` with `filter` installed after no_new_privs, right before exec.
fn run_under(filter: CompiledFilter, cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    let hook = move || {
        // SAFETY: prctl with integer arguments; `install` neither allocates nor locks,
        // as a child forked from a multi-threaded parent requires.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        filter
            .install()
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    // SAFETY: the hook only makes raw syscalls (see above).
    unsafe { cmd.pre_exec(hook) };
    cmd.output().expect("spawn")
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

fn check(profile: &str, prog: &str, args: &[&str], expect: impl Fn(&Output) -> bool) {
    let Some(path) = which(prog) else {
        eprintln!("SKIP {profile}: {prog} is not installed");
        return;
    };
    let out = run_under(filter(profile), Command::new(&path).args(args));
    assert!(
        out.status.success() && expect(&out),
        "{profile}: {} {args:?}: {:?}\nstdout: {}\nstderr: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ok {profile}: {prog} {args:?}");
}

fn stdout_has(s: &'static str) -> impl Fn(&Output) -> bool {
    move |o| String::from_utf8_lossy(&o.stdout).contains(s)
}

fn stderr_has(s: &'static str) -> impl Fn(&Output) -> bool {
    move |o| String::from_utf8_lossy(&o.stderr).contains(s)
}

#[test]
fn python_runs_under_python_dev() {
    check(
        "python-dev",
        "python3",
        &["-c", "import json, threading, subprocess, ssl; t = threading.Thread(target=print, args=(1,)); t.start(); t.join(); print(subprocess.run(['true']).returncode)"],
        stdout_has("1\n0"),
    );
}

#[test]
fn node_runs_under_node_dev() {
    check(
        "node-dev",
        "node",
        &["-e", "const w = new (require('worker_threads').Worker)('1', {eval: true}); w.on('exit', () => console.log(require('child_process').execSync('echo 42').toString().trim()))"],
        stdout_has("42"),
    );
}

#[test]
fn go_runs_under_go_dev() {
    check("go-dev", "go", &["version"], stdout_has("go version"));
}

/// `go build` of a hello world under go-dev, then the static binary under go-dev and
/// under minimal.
#[test]
fn go_build_and_static_binary_under_minimal() {
    let Some(go) = which("go") else {
        eprintln!("SKIP go-dev build and minimal: go is not installed");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("go.mod"), "module hello\n\ngo 1.19\n").unwrap();
    std::fs::write(
        d.path().join("main.go"),
        "package main\n\nimport (\"fmt\"; \"os\"; \"sync\")\n\nfunc main() {\n\tvar wg sync.WaitGroup\n\tfor i := 0; i < 4; i++ { wg.Add(1); go func() { defer wg.Done() }() }\n\twg.Wait()\n\tf, _ := os.ReadFile(\"/proc/self/comm\")\n\tfmt.Printf(\"hello %v\\n\", len(f) > 0)\n}\n",
    )
    .unwrap();
    let out = run_under(
        filter("go-dev"),
        Command::new(&go)
            .args(["build", "-o", "hello", "."])
            .current_dir(d.path())
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", d.path().join("cache"))
            .env("GOPATH", d.path().join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off"),
    );
    assert!(
        out.status.success(),
        "go build under go-dev: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let hello = d.path().join("hello");
    for profile in ["go-dev", "minimal", "strict"] {
        let out = run_under(filter(profile), &mut Command::new(&hello));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello true\n",
            "{profile}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn rustc_runs_under_rust_dev() {
    check("rust-dev", "rustc", &["--version"], stdout_has("rustc "));
    check("rust-dev", "cargo", &["--version"], stdout_has("cargo "));
}

/// rustc compiling and linking a program (threads, the linker, temp files).
#[test]
fn rustc_compiles_under_rust_dev() {
    let Some(rustc) = which("rustc") else {
        eprintln!("SKIP rust-dev compile: rustc is not installed");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("main.rs");
    std::fs::write(
        &src,
        "fn main() { println!(\"hi {}\", std::thread::spawn(|| 6 * 7).join().unwrap()); }",
    )
    .unwrap();
    let out = run_under(
        filter("rust-dev"),
        Command::new(&rustc)
            .arg(&src)
            .arg("-o")
            .arg(d.path().join("main"))
            .env("TMPDIR", d.path()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_under(filter("rust-dev"), &mut Command::new(d.path().join("main")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi 42\n");
}

#[test]
fn java_runs_under_java_dev() {
    check("java-dev", "java", &["-version"], stderr_has("version"));
}

#[test]
fn shell_and_python_run_under_strict() {
    check(
        "strict",
        "sh",
        &["-c", "echo a | cat; ls / > /dev/null && echo ok"],
        stdout_has("a\nok"),
    );
    check(
        "strict",
        "python3",
        &["-c", "print(sum(range(10)))"],
        stdout_has("45"),
    );
}

/// Raw syscalls a sandbox must never make; each returns its errno, or the probe's exit
/// code says it succeeded (0).
fn forbidden_probe() -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: raw syscalls with invalid or harmless arguments; none succeeds under a
    // filter, and without one each fails on its arguments (or is harmless).
    unsafe {
        let r = libc::syscall(
            libc::SYS_mount,
            c"none".as_ptr(),
            c"/nonexistent".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            0,
        );
        if r == 0 || errno() != libc::EPERM {
            return 10;
        }
        let r = libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        if r == 0 || errno() != libc::EPERM {
            return 11;
        }
        let r = libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
        if r >= 0 || errno() != libc::EPERM {
            return 12;
        }
        let r = libc::syscall(libc::SYS_bpf, 0, 0, 0);
        if r == 0 || errno() != libc::EPERM {
            return 13;
        }
        let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
        if r == 0 || errno() != libc::EPERM {
            return 14;
        }
        // clone with a namespace flag: no rule matches, the default (ENOSYS).
        let r = libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWNET | libc::SIGCHLD,
            0,
            0,
            0,
            0,
        );
        if r == 0 {
            libc::_exit(0);
        }
        if r > 0 || errno() != libc::ENOSYS {
            return 15;
        }
        // io_uring is not listed: ENOSYS, so that libuv and friends fall back.
        let r = libc::syscall(
            libc::SYS_io_uring_setup,
            1,
            std::ptr::null_mut::<libc::c_void>(),
        );
        if r >= 0 || errno() != libc::ENOSYS {
            return 16;
        }
    }
    0
}

#[test]
fn forbidden_syscalls_are_denied_under_every_profile() {
    for (name, _) in phantom_policy::profile::BUILTIN {
        let f = filter(name);
        let kills = *name == "strict";
        let mut cmd = Command::new("/bin/true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let hook = move || {
            // SAFETY: raw syscalls only; `_exit` never returns (no exec).
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(250);
                }
                if f.install().is_err() {
                    libc::_exit(251);
                }
                libc::_exit(forbidden_probe())
            }
        };
        // SAFETY: the hook only makes raw syscalls.
        unsafe { cmd.pre_exec(hook) };
        let status = cmd.status().unwrap();
        if kills {
            // strict kills on the first forbidden syscall.
            assert_eq!(status.signal(), Some(libc::SIGSYS), "{name}: {status:?}");
        } else {
            assert_eq!(
                status.code(),
                Some(0),
                "{name}: probe failed at step {status:?}"
            );
        }
    }
}

#[test]
fn builtin_instruction_counts() {
    let arch = TargetArch::native().unwrap();
    for (name, _) in phantom_policy::profile::BUILTIN {
        let c = Catalog::builtin();
        let p = &c.get(name).unwrap().profile;
        let f = phantom_policy::compile_oci(&p.linux_seccomp(arch).unwrap()).unwrap();
        println!("{name}: {} BPF instructions on {arch}", f.len());
        assert!(f.len() < 600);
    }
}
