//! Killing every container of a node at once, without youki and without the daemon: the
//! processes in the cgroups under the node's cgroup parent, in every hierarchy. What a daemon's
//! watchdog does once the daemon is gone (a replica must not keep running on a node the cluster
//! has given up on), and what tests do to simulate a machine dying.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// How long [`kill_cgroup_tree`] keeps killing (processes may fork while it runs).
const KILL_FOR: Duration = Duration::from_secs(5);

/// SIGKILLs every process in the cgroups under `cgroup_parent` (in every hierarchy under
/// `/sys/fs/cgroup`, and in the unified one) until none is left, for at most 5 s. Returns how
/// many processes it killed.
pub fn kill_cgroup_tree(cgroup_parent: &str) -> usize {
    let deadline = Instant::now() + KILL_FOR;
    let mut killed = BTreeSet::new();
    loop {
        let pids = cgroup_tree_pids(cgroup_parent);
        if pids.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        for pid in pids {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (a killed process whose parent
/// has not reaped it yet still has a `/proc` entry).
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `PID (COMM) STATE ...`; COMM may hold spaces and parentheses: the state follows the
        // last `)`.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The processes in the cgroups under `cgroup_parent`, in every hierarchy.
pub fn cgroup_tree_pids(cgroup_parent: &str) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mount = Path::new(CGROUP_MOUNT);
    collect(&mount.join(cgroup_parent), &mut pids);
    for h in std::fs::read_dir(mount).into_iter().flatten().flatten() {
        collect(&h.path().join(cgroup_parent), &mut pids);
    }
    pids
}

fn collect(dir: &Path, pids: &mut BTreeSet<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&e.path(), pids);
        }
    }
}
