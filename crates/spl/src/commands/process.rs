//! Process checks for the pid recorded in `steward.json`.
//!
//! The file can outlive its steward (a crash, a reboot), and the pid in it can meanwhile belong
//! to an unrelated process. Before signalling, `spl` therefore checks both that the pid is alive
//! and, where `/proc` allows, that it is an `spl serve`.

use std::fs;

use anyhow::{bail, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Converts a recorded pid, refusing values `kill(2)` would treat as process groups (0, -1) or
/// that name init.
pub fn pid(raw: u32) -> Result<Pid> {
    match i32::try_from(raw) {
        Ok(pid) if pid > 1 => Ok(Pid::from_raw(pid)),
        _ => bail!("steward.json names an invalid pid {raw}"),
    }
}

/// Whether `pid` is a live process. Zombies count as exited: a steward started by a parent that
/// has not reaped it yet has nevertheless finished.
pub fn is_running(pid: Pid) -> bool {
    match kill(pid, None) {
        Err(Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Ok(()) | Err(_) => !is_zombie(pid),
    }
}

/// Whether `pid` is a running `spl serve` (the steward `steward.json` speaks of). Only liveness
/// can be checked without `/proc`, or while the command line reads empty (a process in the
/// middle of `execve`).
pub fn is_steward(pid: Pid) -> bool {
    if !is_running(pid) {
        return false;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if !cmdline.is_empty() => cmdline.split(|b| *b == 0).any(|arg| arg == b"serve"),
        _ => true,
    }
}

/// Sends SIGTERM; a process that is already gone is not an error.
pub fn terminate(pid: Pid) -> Result<()> {
    match kill(pid, Signal::SIGTERM) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => bail!("cannot signal pid {pid}: {e}"),
    }
}

fn is_zombie(pid: Pid) -> bool {
    // The state is the first field after the parenthesised command name, which may itself
    // contain spaces and parentheses, hence the search from the right.
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_pids() {
        assert!(pid(0).is_err());
        assert!(pid(1).is_err());
        assert!(pid(u32::MAX).is_err());
        assert_eq!(pid(1234).unwrap(), Pid::from_raw(1234));
    }

    #[test]
    fn recognises_serve_processes() {
        assert!(is_running(Pid::this()));
        let spawn = |args: &[&str]| {
            let child = std::process::Command::new("sh").args(args).spawn().unwrap();
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            // Until its exec completes the child's command line reads empty.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (pid, child)
        };
        // The trailing `; true` keeps sh from exec-ing sleep, which would replace the cmdline.
        let (other, mut other_child) = spawn(&["-c", "sleep 5; true"]);
        let (serve, mut serve_child) = spawn(&["-c", "sleep 5; true", "serve"]);
        assert!(!is_steward(other));
        assert!(is_steward(serve));
        for child in [&mut other_child, &mut serve_child] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn reaped_children_are_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        child.wait().unwrap();
        assert!(!is_running(pid));
    }

    #[test]
    fn unreaped_children_count_as_exited() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_running(pid));
        child.wait().unwrap();
    }
}
