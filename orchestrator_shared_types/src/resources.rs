//! Resource quantities: CPU in millicores, memory and disk in MB.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign};

/// An amount of CPU, memory and disk. Used for container requests, node capacity and allocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    #[serde(default)]
    pub cpu_millicores: u64,
    /// Memory in megabytes.
    #[serde(default)]
    pub memory_mb: u64,
    /// Disk in megabytes.
    #[serde(default)]
    pub disk_mb: u64,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        cpu_millicores: 0,
        memory_mb: 0,
        disk_mb: 0,
    };

    /// A quantity from its three parts.
    pub const fn new(cpu_millicores: u64, memory_mb: u64, disk_mb: u64) -> Self {
        Self {
            cpu_millicores,
            memory_mb,
            disk_mb,
        }
    }

    /// True when every part of `self` is at most the matching part of `other`.
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu_millicores <= other.cpu_millicores
            && self.memory_mb <= other.memory_mb
            && self.disk_mb <= other.disk_mb
    }

    /// `self - other`, each part floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millicores: self.cpu_millicores.saturating_sub(other.cpu_millicores),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            disk_mb: self.disk_mb.saturating_sub(other.disk_mb),
        }
    }

    /// `self + other`, each part capped at `u64::MAX` (user input can be huge).
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millicores: self.cpu_millicores.saturating_add(other.cpu_millicores),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            disk_mb: self.disk_mb.saturating_add(other.disk_mb),
        }
    }

    /// `self * n`, saturating.
    pub fn saturating_mul(&self, n: u64) -> Resources {
        Resources {
            cpu_millicores: self.cpu_millicores.saturating_mul(n),
            memory_mb: self.memory_mb.saturating_mul(n),
            disk_mb: self.disk_mb.saturating_mul(n),
        }
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, rhs: Resources) -> Resources {
        self.saturating_add(&rhs)
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, rhs: Resources) {
        *self = self.saturating_add(&rhs);
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m memory={}MB disk={}MB",
            self.cpu_millicores, self.memory_mb, self.disk_mb
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_subtracts() {
        let cap = Resources::new(1000, 1024, 0);
        assert!(Resources::new(500, 1024, 0).fits_in(&cap));
        assert!(!Resources::new(1001, 1, 0).fits_in(&cap));
        assert_eq!(
            cap.saturating_sub(&Resources::new(2000, 24, 5)),
            Resources::new(0, 1000, 0)
        );
        assert_eq!(
            Resources::new(u64::MAX, 1, 0) + Resources::new(1, 1, 0),
            Resources::new(u64::MAX, 2, 0)
        );
    }
}
