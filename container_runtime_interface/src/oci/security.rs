//! The defaults every container runs with, as Docker (runc) applies them: Docker's default
//! capability set without `CAP_NET_RAW`, and a seccomp filter that refuses the syscalls Docker's
//! default profile refuses (docs/security.md, "Container defaults"). `no_new_privileges` and
//! the pids, memory and CPU limits are set in [`super::spec`].
//!
//! The filter is written as "allow, except these" rather than Docker's allow-list: it refuses
//! what Docker's documentation lists as blocked by its default profile (kernel modules,
//! keyrings, mounts, namespaces, tracing other processes, the clock, rebooting, ...), and lets a
//! syscall a newer kernel adds through, where Docker's allow-list would refuse it until the list
//! is updated.

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Docker's default capabilities but `CAP_NET_RAW` (raw sockets: spoofing, ARP tricks; `ping`
/// works without it through ICMP datagram sockets).
pub const DEFAULT_CAPABILITIES: [Capability; 13] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// The syscalls a container may not make (they fail with `EPERM`): those Docker's default
/// profile blocks, for x86-64 (names this architecture lacks are left out).
pub const REFUSED_SYSCALLS: &[&str] = &[
    // Accounting, kernel modules, kexec, reboot, swap, quotas, kernel internals.
    "acct",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "init_module",
    "kexec_file_load",
    "kexec_load",
    "query_module",
    "quotactl",
    "reboot",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "uselib",
    "ustat",
    "nfsservctl",
    "lookup_dcookie",
    "syslog",
    // Keyrings (not namespaced).
    "add_key",
    "keyctl",
    "request_key",
    // BPF, perf, userfaultfd: kernel attack surface.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    // The clock (not namespaced).
    "clock_adjtime",
    "clock_settime",
    "settimeofday",
    // I/O ports.
    "ioperm",
    "iopl",
    // Mounts and namespaces: the container's view of the host.
    "mount",
    "umount2",
    "pivot_root",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "move_mount",
    "open_tree",
    "setns",
    "unshare",
    // Other processes' memory, handles and NUMA placement.
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "name_to_handle_at",
    "open_by_handle_at",
    "get_mempolicy",
    "mbind",
    "move_pages",
    "set_mempolicy",
];

/// The `clone` flags that make a new namespace: a clone with any of them is refused, as
/// `unshare` is.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// `EPERM`: what a refused syscall returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns, so that C libraries fall back to `clone`, whose flags the
/// filter can read (`clone3` passes them in memory), as Docker's profile does.
const ENOSYS: u32 = 38;

/// The capability sets of a container's process: bounding, effective and permitted hold
/// [`DEFAULT_CAPABILITIES`]; inheritable and ambient are empty, so a process of another user
/// (or after `execve`) has none.
pub fn capabilities() -> LinuxCapabilities {
    let set: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));
    caps
}

/// The seccomp filter of every container; see the module docs.
pub fn seccomp() -> LinuxSeccomp {
    let refuse = |names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>| {
        let mut s = LinuxSyscall::default();
        s.set_names(names);
        s.set_action(LinuxSeccompAction::ScmpActErrno);
        s.set_errno_ret(Some(errno));
        s.set_args(args);
        s
    };
    let mut syscalls = vec![
        refuse(
            REFUSED_SYSCALLS.iter().map(|s| s.to_string()).collect(),
            EPERM,
            None,
        ),
        refuse(vec!["clone3".into()], ENOSYS, None),
    ];
    // One rule per flag: the filter ANDs the conditions of one rule, so "any of the flags"
    // takes one rule each ((flags & FLAG) == FLAG).
    for flag in CLONE_NAMESPACE_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .expect("every field of the argument is set");
        syscalls.push(refuse(vec!["clone".into()], EPERM, Some(vec![arg])));
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_syscalls(Some(syscalls));
    seccomp
}
