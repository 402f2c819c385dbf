//! Validation of user input. It returns *every* problem, each with the path of its field
//! (`containers[1].ports[0].host_port`), so a user fixes a manifest in one round trip.

use crate::{ContainerConfig, Labels, Probe, Protocol, Quantity, WorkloadDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// Most replicas one workload may ask for.
pub const MAX_REPLICAS: u32 = 10_000;
/// Most containers one replica may have.
pub const MAX_CONTAINERS: usize = 32;
/// Longest DNS-1123 label.
pub const MAX_NAME_LEN: usize = 63;
/// Longest `termination_grace_seconds`: an hour.
pub const MAX_TERMINATION_GRACE_SECONDS: u32 = 3600;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Path of the field, e.g. `containers[0].name`.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

/// Every problem found in one input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks `name` against DNS-1123 label rules; returns the rule broken.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters (got {})",
            name.len()
        ));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let bytes = name.as_bytes();
    if !ok_chars
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return Err(
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn check_labels(errors: &mut ValidationErrors, path: &str, labels: &Labels) {
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 253
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            errors.push(
                format!("{path}.{k}"),
                "label keys are 1-253 characters of letters, digits, '-', '_', '.' and '/'",
            );
        }
        let value_ok = v.len() <= MAX_NAME_LEN
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !value_ok {
            errors.push(
                format!("{path}.{k}"),
                "label values are at most 63 characters of letters, digits, '-', '_' and '.'",
            );
        }
    }
}

impl WorkloadDefinition {
    /// Every problem with this definition, or `Ok` when there is none.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Err(rule) = check_dns_label(&self.name) {
            errors.push("name", rule);
        }
        if self.replicas > MAX_REPLICAS {
            errors.push(
                "replicas",
                format!("must be at most {MAX_REPLICAS} (got {})", self.replicas),
            );
        }
        if let Some(grace) = self
            .termination_grace_seconds
            .filter(|&g| g > MAX_TERMINATION_GRACE_SECONDS)
        {
            errors.push(
                "termination_grace_seconds",
                format!("must be at most {MAX_TERMINATION_GRACE_SECONDS} (got {grace})"),
            );
        }
        if let Some(delay) = self
            .pre_stop_seconds
            .filter(|&d| d > MAX_TERMINATION_GRACE_SECONDS)
        {
            errors.push(
                "pre_stop_seconds",
                format!("must be at most {MAX_TERMINATION_GRACE_SECONDS} (got {delay})"),
            );
        }
        check_strategy(&mut errors, self);
        check_labels(&mut errors, "labels", &self.labels);
        check_labels(&mut errors, "node_selector", &self.node_selector);
        if self.containers.is_empty() {
            errors.push("containers", "at least one container is required");
        }
        if self.containers.len() > MAX_CONTAINERS {
            errors.push(
                "containers",
                format!("at most {MAX_CONTAINERS} containers per replica"),
            );
        }
        let mut names = HashSet::new();
        let mut container_ports = HashSet::new();
        let mut host_ports = HashSet::new();
        for (i, c) in self.containers.iter().enumerate() {
            let p = format!("containers[{i}]");
            if let Err(rule) = check_dns_label(&c.name) {
                errors.push(format!("{p}.name"), rule);
            } else if !names.insert(c.name.as_str()) {
                errors.push(
                    format!("{p}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
            if c.image.trim().is_empty() {
                errors.push(format!("{p}.image"), "must not be empty");
            } else if c.image.chars().any(char::is_whitespace) || c.image.len() > 4096 {
                errors.push(
                    format!("{p}.image"),
                    "must be an image reference without whitespace",
                );
            }
            if let Some(user) = &c.user {
                let ok = !user.is_empty()
                    && user.len() <= 256
                    && user.split(':').count() <= 2
                    && user.split(':').all(|part| {
                        !part.is_empty()
                            && part.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
                            })
                    });
                if !ok {
                    errors.push(
                        format!("{p}.user"),
                        "must be a user name or uid, optionally followed by ':' and a group name or gid",
                    );
                }
            }
            if c.resources.cpu_millicores == 0 {
                errors.push(
                    format!("{p}.resources.cpu_millicores"),
                    "must be greater than 0",
                );
            }
            if c.resources.memory_mb == 0 {
                errors.push(format!("{p}.resources.memory_mb"), "must be greater than 0");
            }
            for key in c.env.keys() {
                let ok = !key.is_empty()
                    && !key.as_bytes()[0].is_ascii_digit()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                if !ok {
                    errors.push(
                        format!("{p}.env.{key}"),
                        "names are letters, digits, '_', '.' and '-', not starting with a digit",
                    );
                }
            }
            for (field, probe) in [
                ("liveness_probe", &c.liveness_probe),
                ("readiness_probe", &c.readiness_probe),
                ("startup_probe", &c.startup_probe),
            ] {
                if let Some(probe) = probe {
                    check_probe(&mut errors, &format!("{p}.{field}"), probe, c);
                    if field != "readiness_probe" && probe.success_threshold > 1 {
                        errors.push(
                            format!("{p}.{field}.success_threshold"),
                            "must be 1 for liveness and startup probes",
                        );
                    }
                }
            }
            for (j, port) in c.ports.iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                if port.container_port == 0 {
                    errors.push(
                        format!("{pp}.container_port"),
                        "must be between 1 and 65535",
                    );
                } else if !container_ports.insert((port.protocol, port.container_port)) {
                    errors.push(
                        format!("{pp}.container_port"),
                        format!(
                            "duplicate port {}/{}",
                            port.container_port,
                            proto(port.protocol)
                        ),
                    );
                }
                // 0 is dynamic: each such mapping gets its own port, so they never collide.
                if let Some(h) = port.host_port.filter(|&h| h != 0) {
                    if !host_ports.insert((port.protocol, h)) {
                        errors.push(
                            format!("{pp}.host_port"),
                            format!("duplicate host port {h}/{}", proto(port.protocol)),
                        );
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The rules of one probe of container `c`, its fields under `path`.
fn check_probe(errors: &mut ValidationErrors, path: &str, probe: &Probe, c: &ContainerConfig) {
    if probe.checks() != 1 {
        errors.push(
            path.to_owned(),
            "must have exactly one of http, tcp and exec",
        );
    }
    for (field, value) in [
        ("period_seconds", probe.period_seconds),
        ("timeout_seconds", probe.timeout_seconds),
        ("success_threshold", probe.success_threshold),
        ("failure_threshold", probe.failure_threshold),
    ] {
        if value == 0 {
            errors.push(format!("{path}.{field}"), "must be at least 1");
        }
    }
    if probe.initial_delay_seconds > MAX_TERMINATION_GRACE_SECONDS
        || probe.period_seconds > MAX_TERMINATION_GRACE_SECONDS
        || probe.timeout_seconds > MAX_TERMINATION_GRACE_SECONDS
    {
        errors.push(
            path.to_owned(),
            format!(
                "delays, periods and timeouts are at most {MAX_TERMINATION_GRACE_SECONDS} seconds"
            ),
        );
    }
    let tcp_ports: Vec<u16> = c
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .map(|p| p.container_port)
        .collect();
    let check_port = |errors: &mut ValidationErrors, field: String, port: u16| {
        if !tcp_ports.contains(&port) {
            let declared = if tcp_ports.is_empty() {
                "none".to_owned()
            } else {
                tcp_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            errors.push(
                field,
                format!(
                    "must be a container_port of this container's TCP ports (got {port}; declared: {declared})"
                ),
            );
        }
    };
    if let Some(http) = &probe.http {
        check_port(errors, format!("{path}.http.port"), http.port);
        if !http.path.starts_with('/') || http.path.chars().any(char::is_whitespace) {
            errors.push(
                format!("{path}.http.path"),
                "must start with '/' and contain no whitespace",
            );
        }
        if let Some(status) = http.status.filter(|s| !(100..=599).contains(s)) {
            errors.push(
                format!("{path}.http.status"),
                format!("must be an HTTP status between 100 and 599 (got {status})"),
            );
        }
    }
    if let Some(tcp) = &probe.tcp {
        check_port(errors, format!("{path}.tcp.port"), tcp.port);
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() || exec.command[0].trim().is_empty() {
            errors.push(
                format!("{path}.exec.command"),
                "must not be empty: the program to run and its arguments",
            );
        }
    }
}

/// The rules of the update strategy.
fn check_strategy(errors: &mut ValidationErrors, def: &WorkloadDefinition) {
    let s = &def.strategy;
    let mut zero = 0;
    for (field, q) in [
        ("strategy.max_surge", &s.max_surge),
        ("strategy.max_unavailable", &s.max_unavailable),
    ] {
        match q {
            Quantity::Percent(_) if q.percent().is_none() => errors.push(
                field,
                "must be a count or a percentage such as \"25%\" (at most \"100%\")",
            ),
            _ if q.resolve(100, true) == 0 => zero += 1,
            _ => {}
        }
    }
    if zero == 2 {
        errors.push(
            "strategy.max_unavailable",
            "max_surge and max_unavailable must not both be 0: the rollout could never start",
        );
    }
    if s.progress_deadline_seconds == 0 {
        errors.push("strategy.progress_deadline_seconds", "must be at least 1");
    } else if s.progress_deadline_seconds <= s.min_ready_seconds {
        errors.push(
            "strategy.progress_deadline_seconds",
            format!(
                "must be greater than min_ready_seconds ({})",
                s.min_ready_seconds
            ),
        );
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PortMapping, Resources};

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("").is_err());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("-web").is_err());
        assert!(check_dns_label("web-").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let mut c = ContainerConfig::new("app", "img");
        c.resources = Resources::new(0, 0, 0);
        c.ports = vec![
            PortMapping {
                container_port: 80,
                host_port: Some(8080),
                protocol: Protocol::Tcp,
            },
            PortMapping {
                container_port: 80,
                host_port: Some(8080),
                protocol: Protocol::Tcp,
            },
        ];
        let mut w = WorkloadDefinition::new("Bad_Name", MAX_REPLICAS + 1, c.clone());
        w.containers.push(c);
        w.termination_grace_seconds = Some(MAX_TERMINATION_GRACE_SECONDS + 1);
        let errs = w.validate().unwrap_err();
        let fields: Vec<&str> = errs.0.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "name",
            "replicas",
            "termination_grace_seconds",
            "containers[0].resources.cpu_millicores",
            "containers[0].resources.memory_mb",
            "containers[0].ports[1].container_port",
            "containers[0].ports[1].host_port",
            "containers[1].name",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected} in {fields:?}"
            );
        }
    }

    #[test]
    fn users_are_names_or_ids_with_an_optional_group() {
        let with_user = |user: &str| {
            let mut c = ContainerConfig::new("app", "img");
            c.user = Some(user.into());
            WorkloadDefinition::new("web", 1, c).validate()
        };
        for ok in ["www", "33", "www:staff", "1000:1000", "svc-user.1"] {
            assert!(with_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":", "www:", ":0", "a:b:c", "www data", "root;rm"] {
            let errs = with_user(bad).unwrap_err();
            assert_eq!(errs.0[0].field, "containers[0].user", "{bad}");
        }
    }

    #[test]
    fn dynamic_host_ports_may_repeat_static_ones_may_not() {
        let port = |container_port, host_port| PortMapping {
            container_port,
            host_port: Some(host_port),
            protocol: Protocol::Tcp,
        };
        let mut c = ContainerConfig::new("app", "img");
        c.ports = vec![port(80, 0), port(81, 0), port(82, 8080)];
        let mut side = ContainerConfig::new("side", "img");
        side.ports = vec![port(90, 0)];
        let mut w = WorkloadDefinition::new("web", 3, c);
        w.containers.push(side);
        assert_eq!(w.validate(), Ok(()));
        assert_eq!(w.host_ports(), [(Protocol::Tcp, 8080)], "only static ones");
        assert!(w.has_dynamic_ports());

        w.containers[1].ports.push(port(91, 8080));
        let errs = w.validate().unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!(errs.0[0].field, "containers[1].ports[1].host_port");
        assert_eq!(errs.0[0].message, "duplicate host port 8080/tcp");
    }

    #[test]
    fn probes_and_strategies_are_checked_with_their_paths() {
        let mut c = ContainerConfig::new("app", "img");
        c.ports = vec![PortMapping {
            container_port: 80,
            host_port: Some(0),
            protocol: Protocol::Tcp,
        }];
        c.readiness_probe = Some(Probe::http("/healthz", 80));
        c.liveness_probe = Some(Probe::tcp(80));
        c.startup_probe = Some(Probe::exec(&["true"]));
        let mut w = WorkloadDefinition::new("web", 2, c);
        assert_eq!(w.validate(), Ok(()));

        let app = &mut w.containers[0];
        app.readiness_probe = Some(Probe::http("healthz", 81));
        app.liveness_probe.as_mut().unwrap().period_seconds = 0;
        app.liveness_probe.as_mut().unwrap().success_threshold = 2;
        app.startup_probe = Some(Probe::exec(&[]));
        let mut both = Probe::tcp(80);
        both.http = Some(crate::HttpCheck {
            path: "/".into(),
            port: 80,
            status: None,
        });
        w.containers.push(ContainerConfig {
            readiness_probe: Some(both),
            ..ContainerConfig::new("side", "img")
        });
        w.strategy.max_surge = Quantity::Count(0);
        w.strategy.max_unavailable = Quantity::Percent("0%".into());
        w.strategy.min_ready_seconds = 700;
        w.pre_stop_seconds = Some(4000);
        let errs = w.validate().unwrap_err();
        let fields: Vec<&str> = errs.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "pre_stop_seconds",
                "strategy.max_unavailable",
                "strategy.progress_deadline_seconds",
                "containers[0].liveness_probe.period_seconds",
                "containers[0].liveness_probe.success_threshold",
                "containers[0].readiness_probe.http.port",
                "containers[0].readiness_probe.http.path",
                "containers[0].startup_probe.exec.command",
                "containers[1].readiness_probe",
                "containers[1].readiness_probe.http.port",
                "containers[1].readiness_probe.tcp.port",
            ],
            "{errs}"
        );

        w.strategy.max_surge = Quantity::Percent("x%".into());
        let errs = WorkloadDefinition {
            containers: vec![ContainerConfig::new("app", "img")],
            pre_stop_seconds: None,
            ..w
        }
        .validate()
        .unwrap_err();
        assert_eq!(errs.0[0].field, "strategy.max_surge");
    }

    #[test]
    fn valid_definition_passes() {
        let w = WorkloadDefinition::new("web", 3, ContainerConfig::new("httpd", "busybox:1"));
        assert_eq!(w.validate(), Ok(()));
    }
}
