//! Typed identifiers.
//!
//! Newtypes over `String` so a node id can never be passed where an instance id is expected.
//! They serialize as plain strings.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// Identifies a node. Stable across restarts of the node's daemon.
    NodeId
);
string_id!(
    /// Identifies a workload for its whole life; a workload deleted and created again under the
    /// same name gets a new id, so instances of the old one are never mistaken for the new one's.
    WorkloadId
);
string_id!(
    /// Identifies one replica of a workload, e.g. `web-3f9a0c1d2e4b`.
    InstanceId
);
string_id!(
    /// Identifies a container in its runtime.
    ContainerId
);

impl WorkloadId {
    /// A fresh random id (UUID v4).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl InstanceId {
    /// A fresh id for a replica of `workload_name`: the name plus 12 random hex digits, the way
    /// Kubernetes names pods, so that people can tell at a glance which workload it belongs to.
    pub fn generate(workload_name: &str) -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("{workload_name}-{}", &hex[..12]))
    }

    /// The workload name a [`generate`](Self::generate)d id starts with (`None` for an id of
    /// another shape); it finds an instance's workload without a lookup table.
    pub fn workload_name(&self) -> Option<&str> {
        self.0.rsplit_once('-').map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_instance_id_names_its_workload() {
        assert_eq!(
            InstanceId::generate("web-api").workload_name(),
            Some("web-api")
        );
        assert_eq!(InstanceId::from("plain").workload_name(), None);
    }
}
