//! Health checks of a container (Kubernetes' probes): what is checked, how often, and how many
//! results in a row change the verdict.
//!
//! Three kinds, with Kubernetes' meaning, set per container in the manifest:
//! * `liveness_probe`: failing `failure_threshold` times in a row restarts the container (its
//!   instance ends as failed and the restart policy and its backoff apply);
//! * `readiness_probe`: the instance is ready (shown as such, counted as available by rolling
//!   updates) only while it passes;
//! * `startup_probe`: holds the other two until it passes once; failing `failure_threshold`
//!   times restarts the container like liveness.

use serde::{Deserialize, Serialize};

/// An HTTP GET against the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct HttpCheck {
    /// Path requested, starting with '/' (default "/").
    #[serde(default = "HttpCheck::default_path")]
    pub path: String,
    /// A `container_port` of the container's TCP ports: the probe connects to the host port it
    /// is mapped to (the dynamic one when `host_port` is 0), or to the port itself when it has no
    /// host port.
    pub port: u16,
    /// The status that counts as success; by default any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl HttpCheck {
    fn default_path() -> String {
        "/".to_owned()
    }
}

/// A TCP connection to the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TcpCheck {
    /// A `container_port` of the container's TCP ports (mapped like an HTTP check's).
    pub port: u16,
}

/// A command run inside the container (`youki exec`); exit code 0 is success.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ExecCheck {
    /// The command and its arguments (not run through a shell).
    pub command: Vec<String>,
}

/// One health check of a container: exactly one of `http`, `tcp` and `exec`, with its timing.
/// Defaults are Kubernetes': every 10 s, 1 s timeout, 1 success, 3 failures.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Probe {
    /// An HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// A command in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    /// Seconds after the container starts before the first check (default 0).
    #[serde(default)]
    pub initial_delay_seconds: u32,
    /// Seconds between checks (default 10, at least 1).
    #[serde(default = "Probe::default_period")]
    pub period_seconds: u32,
    /// Seconds a check may take; a slower one (a hanging command) is cut and fails (default 1).
    #[serde(default = "Probe::default_timeout")]
    pub timeout_seconds: u32,
    /// Successes in a row that make a failing probe pass (default 1).
    #[serde(default = "Probe::default_success")]
    pub success_threshold: u32,
    /// Failures in a row that make a passing probe fail (default 3).
    #[serde(default = "Probe::default_failure")]
    pub failure_threshold: u32,
}

impl Probe {
    fn default_period() -> u32 {
        10
    }
    fn default_timeout() -> u32 {
        1
    }
    fn default_success() -> u32 {
        1
    }
    fn default_failure() -> u32 {
        3
    }

    /// A probe with Kubernetes' default timing and no check; handy in tests.
    pub fn with_defaults() -> Self {
        Self {
            http: None,
            tcp: None,
            exec: None,
            initial_delay_seconds: 0,
            period_seconds: Self::default_period(),
            timeout_seconds: Self::default_timeout(),
            success_threshold: Self::default_success(),
            failure_threshold: Self::default_failure(),
        }
    }

    /// An HTTP GET of `path` on `port` with default timing.
    pub fn http(path: &str, port: u16) -> Self {
        Self {
            http: Some(HttpCheck {
                path: path.to_owned(),
                port,
                status: None,
            }),
            ..Self::with_defaults()
        }
    }

    /// A TCP connect to `port` with default timing.
    pub fn tcp(port: u16) -> Self {
        Self {
            tcp: Some(TcpCheck { port }),
            ..Self::with_defaults()
        }
    }

    /// `command` run in the container, with default timing.
    pub fn exec(command: &[&str]) -> Self {
        Self {
            exec: Some(ExecCheck {
                command: command.iter().map(|s| (*s).to_owned()).collect(),
            }),
            ..Self::with_defaults()
        }
    }

    /// The container port the check connects to, if it is a network check.
    pub fn port(&self) -> Option<u16> {
        self.http
            .as_ref()
            .map(|h| h.port)
            .or(self.tcp.as_ref().map(|t| t.port))
    }

    /// How many of `http`, `tcp` and `exec` are set (exactly one is valid).
    pub fn checks(&self) -> usize {
        usize::from(self.http.is_some())
            + usize::from(self.tcp.is_some())
            + usize::from(self.exec.is_some())
    }
}

/// The kinds of probes, named as in events and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProbeKind {
    /// Restarts the container when failing.
    Liveness,
    /// Makes the instance ready or not.
    Readiness,
    /// Holds the other two until it passes.
    Startup,
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Startup => "startup",
        })
    }
}
