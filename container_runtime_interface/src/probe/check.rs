//! Running one check of a probe: an HTTP GET, a TCP connect or a command in the container,
//! each cut at the probe's timeout. Every failure becomes a short message for users (see
//! [`CheckOutcome`]).

use super::machine::CheckOutcome;
use crate::ContainerRuntime;
use orchestrator_shared_types::{ContainerConfig, ContainerId, NodeId, Probe, Protocol};
use std::time::Duration;

/// Most characters of a check's output or error kept in messages: they end up in events,
/// listings and the API.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// What one check does, resolved from a probe and its container's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `GET http://127.0.0.1:{port}{path}`; success is `status`, or any 2xx or 3xx.
    Http {
        /// Host port.
        port: u16,
        /// Path, starting with '/'.
        path: String,
        /// The one status that counts as success.
        status: Option<u16>,
    },
    /// A TCP connection to `127.0.0.1:{port}`.
    Tcp {
        /// Host port.
        port: u16,
    },
    /// A command in the container; exit code 0 is success.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
    /// The probe cannot be checked (its port cannot be resolved, or it has no check): every
    /// check fails with this message.
    Invalid(String),
}

impl Check {
    /// The check `probe` asks for on a container configured as `config`.
    pub fn resolve(probe: &Probe, config: &ContainerConfig) -> Self {
        if let Some(http) = &probe.http {
            return match host_port(config, http.port) {
                Ok(port) => Check::Http {
                    port,
                    path: http.path.clone(),
                    status: http.status,
                },
                Err(e) => Check::Invalid(e),
            };
        }
        if let Some(tcp) = &probe.tcp {
            return match host_port(config, tcp.port) {
                Ok(port) => Check::Tcp { port },
                Err(e) => Check::Invalid(e),
            };
        }
        match &probe.exec {
            Some(exec) if !exec.command.is_empty() => Check::Exec {
                command: exec.command.clone(),
            },
            _ => Check::Invalid("the probe has no http, tcp or exec check".into()),
        }
    }
}

/// The port on this machine that container port `port` of `config` is reachable on: the host
/// port of its TCP mapping; for a dynamic mapping (`host_port: 0`) the one the core assigned,
/// which it passes as `PORT_<port>` in the environment; the container port itself when the
/// mapping has no host port (containers share the host's network).
pub fn host_port(config: &ContainerConfig, port: u16) -> Result<u16, String> {
    let mapping = config
        .ports
        .iter()
        .find(|p| p.container_port == port && p.protocol == Protocol::Tcp)
        .ok_or_else(|| format!("port {port} is not a TCP container_port of {}", config.name))?;
    match mapping.host_port {
        None => Ok(port),
        Some(0) => {
            let var = format!("PORT_{port}");
            config
                .env
                .get(&var)
                .and_then(|v| v.trim().parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    format!("port {port} is dynamic but {var} holds no assigned host port")
                })
        }
        Some(h) => Ok(h),
    }
}

/// `s` trimmed and cut to [`MAX_MESSAGE_CHARS`] characters (marked with `...`).
pub fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", s[..cut].trim_end()),
    }
}

/// What the checks share. HTTP checks open a fresh connection each time (reusing one would hide
/// a server that no longer accepts new ones) and send one HTTP/1.1 request through hyper's
/// connection API: no pool, no proxy, no redirects (a 3xx is a success of its own), as kubelet's
/// probes. A client with a pool (reqwest) cost twice the CPU per check for nothing used here.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checker;

impl Checker {
    /// A checker.
    pub fn new() -> Self {
        Self
    }

    /// Runs `check` against container `id` on `node`, cut at `timeout`.
    pub async fn run(
        &self,
        check: &Check,
        timeout: Duration,
        runtime: &dyn ContainerRuntime,
        node: &NodeId,
        id: &ContainerId,
    ) -> CheckOutcome {
        let work = async {
            match check {
                Check::Http { port, path, status } => self.http(*port, path, *status).await,
                Check::Tcp { port } => tcp(*port).await,
                Check::Exec { command } => exec(runtime, node, id, command, timeout).await,
                Check::Invalid(e) => Err(e.clone()),
            }
        };
        // The checks cut themselves at the timeout too; this bounds whatever they do not
        // (a slow DNS-free connect, a runtime that ignores its timeout).
        match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(match check {
                Check::Http { port, path, .. } => {
                    format!("no answer within {timeout:?} from GET {path} on port {port}")
                }
                Check::Tcp { port } => format!("no connection within {timeout:?} on port {port}"),
                Check::Exec { command } => {
                    format!(
                        "`{}` did not finish within {timeout:?}",
                        short(&command.join(" "))
                    )
                }
                Check::Invalid(e) => e.clone(),
            }),
        }
    }

    async fn http(&self, port: u16, path: &str, status: Option<u16>) -> CheckOutcome {
        use hyper::header::{CONNECTION, HOST, USER_AGENT};
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| io_error(&e, port))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| request_error(&e, port, path))?;
        let request = hyper::Request::get(path)
            .header(HOST, format!("127.0.0.1:{port}"))
            .header(
                USER_AGENT,
                concat!("orchestrator-probe/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONNECTION, "close")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| short(&format!("GET {path}: {e}")))?;
        // The connection is driven only until the answer's head arrives; dropping it then
        // closes the socket (the body is not needed). A server that answers and closes at once
        // ends the connection first, with the answer already handed to the request.
        let connection = std::pin::pin!(connection);
        let send = std::pin::pin!(sender.send_request(request));
        let mut send = send;
        let response = tokio::select! {
            biased;
            response = &mut send => response,
            ended = connection => match ended {
                Err(e) => return Err(request_error(&e, port, path)),
                Ok(()) => (&mut send).await,
            },
        }
        .map_err(|e| request_error(&e, port, path))?;
        let got = response.status().as_u16();
        let ok = match status {
            Some(wanted) => got == wanted,
            None => (200..400).contains(&got),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("HTTP {got} from GET {path}"))
        }
    }
}

/// A refused or reset connection in words; anything else with the client's message.
fn request_error(e: &(dyn std::error::Error + 'static), port: u16, path: &str) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_error(io, port);
        }
        source = s.source();
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    short(&format!("GET {path} on port {port}: {text}"))
}

fn io_error(e: &std::io::Error, port: u16) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("connection refused on port {port}"),
        std::io::ErrorKind::ConnectionReset => format!("connection reset on port {port}"),
        _ => short(&format!("port {port}: {e}")),
    }
}

async fn tcp(port: u16) -> CheckOutcome {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map(drop)
        .map_err(|e| io_error(&e, port))
}

async fn exec(
    runtime: &dyn ContainerRuntime,
    node: &NodeId,
    id: &ContainerId,
    command: &[String],
    timeout: Duration,
) -> CheckOutcome {
    let shown = || short(&command.join(" "));
    match runtime.exec(node, id, command, timeout).await {
        Ok(out) if out.code == 0 => Ok(()),
        Ok(out) => {
            let output = short(&out.output);
            Err(if output.is_empty() {
                format!("`{}` exited with code {}", shown(), out.code)
            } else {
                format!("`{}` exited with code {}: {output}", shown(), out.code)
            })
        }
        Err(e) => Err(short(&format!("`{}`: {e}", shown()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::PortMapping;

    fn with_port(
        container_port: u16,
        host_port: Option<u16>,
        protocol: Protocol,
    ) -> ContainerConfig {
        let mut c = ContainerConfig::new("web", "img");
        c.ports = vec![PortMapping {
            container_port,
            host_port,
            protocol,
        }];
        c
    }

    #[test]
    fn ports_resolve_like_the_scheduler_assigns_them() {
        let fixed = with_port(80, Some(8080), Protocol::Tcp);
        assert_eq!(host_port(&fixed, 80), Ok(8080));
        let shared = with_port(8000, None, Protocol::Tcp);
        assert_eq!(host_port(&shared, 8000), Ok(8000));
        let mut dynamic = with_port(80, Some(0), Protocol::Tcp);
        assert_eq!(
            host_port(&dynamic, 80),
            Err("port 80 is dynamic but PORT_80 holds no assigned host port".into())
        );
        dynamic.env.insert("PORT_80".into(), "20001".into());
        assert_eq!(host_port(&dynamic, 80), Ok(20001));
        let udp = with_port(53, None, Protocol::Udp);
        assert_eq!(
            host_port(&udp, 53),
            Err("port 53 is not a TCP container_port of web".into())
        );
        assert!(host_port(&fixed, 81).is_err());
    }

    #[test]
    fn checks_resolve_from_probes() {
        let c = with_port(80, Some(8080), Protocol::Tcp);
        assert_eq!(
            Check::resolve(&Probe::http("/ready", 80), &c),
            Check::Http {
                port: 8080,
                path: "/ready".into(),
                status: None
            }
        );
        assert_eq!(
            Check::resolve(&Probe::tcp(80), &c),
            Check::Tcp { port: 8080 }
        );
        assert_eq!(
            Check::resolve(&Probe::exec(&["true"]), &c),
            Check::Exec {
                command: vec!["true".into()]
            }
        );
        assert!(matches!(
            Check::resolve(&Probe::tcp(81), &c),
            Check::Invalid(_)
        ));
        assert!(matches!(
            Check::resolve(&Probe::with_defaults(), &c),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn messages_are_short() {
        assert_eq!(short("  ok\n"), "ok");
        let long = "é".repeat(500);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 3);
        assert!(cut.ends_with("..."));
    }
}
