//! This machine as a node: its identity and the resources it offers, read from the OS.

use crate::config::Config;
use anyhow::{Context, Result};
use orchestrator_shared_types::{Node, Resources};

/// CPU kept for the system and the daemon itself, in millicores (kubelet's `system-reserved`).
const RESERVED_CPU_MILLICORES: u64 = 100;
/// Memory kept for the system and the daemon: 5 %, at least 256 MB.
fn reserved_memory_mb(total: u64) -> u64 {
    (total / 20).max(256).min(total)
}

/// The node description of this machine, with overrides from the config.
pub fn this_machine(config: &Config) -> Result<Node> {
    let name = match &config.node_name {
        Some(n) => n.clone(),
        None => hostname()?,
    };
    let cpu = match config.cpu_millicores {
        Some(c) => c,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000,
    };
    let memory = match config.memory_mb {
        Some(m) => m,
        None => total_memory_mb()?,
    };
    let disk = disk_mb(&config.data_dir).unwrap_or(0);
    let capacity = Resources::new(cpu, memory, disk);
    // Overrides are what the user wants offered: no reserve taken from them.
    let allocatable = Resources::new(
        if config.cpu_millicores.is_some() {
            cpu
        } else {
            cpu.saturating_sub(RESERVED_CPU_MILLICORES)
        },
        if config.memory_mb.is_some() {
            memory
        } else {
            memory - reserved_memory_mb(memory)
        },
        disk,
    );
    let mut node = Node::new(name.as_str(), capacity);
    node.allocatable = allocatable;
    node.dynamic_ports = config.dynamic_ports;
    node.address = config.listen.to_string();
    node.labels.insert("kubernetes.io/hostname".into(), name);
    node.labels
        .insert("arch".into(), std::env::consts::ARCH.into());
    node.labels.insert("os".into(), std::env::consts::OS.into());
    Ok(node)
}

fn hostname() -> Result<String> {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the hostname")?;
    Ok(raw.trim().to_lowercase())
}

fn total_memory_mb() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    parse_mem_total_mb(&meminfo).context("no MemTotal in /proc/meminfo")
}

fn parse_mem_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn disk_mb(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_blocks.saturating_mul(st.f_frsize) / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        assert_eq!(
            parse_mem_total_mb("MemTotal:       24682416 kB\nMemFree: 1 kB\n"),
            Some(24103)
        );
        assert_eq!(parse_mem_total_mb("nothing"), None);
    }

    #[test]
    fn reserves_some_memory() {
        assert_eq!(reserved_memory_mb(24_000), 1200);
        assert_eq!(reserved_memory_mb(1000), 256);
        assert_eq!(reserved_memory_mb(100), 100);
    }
}
