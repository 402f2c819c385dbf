//! The probes of one container as a pure state machine: no I/O, no clock of its own (every
//! call is given `now`), so every rule is a table-driven unit test.
//!
//! Rules (Kubernetes'):
//! * every probe is first checked `initial_delay_seconds` after the container runs, then every
//!   `period_seconds`;
//! * a startup probe holds the other two until it passes once; `failure_threshold` failures in
//!   a row kill the container;
//! * a liveness probe starts passing; `failure_threshold` failures in a row kill the container;
//! * a readiness probe starts failing (not ready); `success_threshold` successes in a row make
//!   it pass, `failure_threshold` failures in a row make it fail again;
//! * the container is ready when its startup probe (if any) passed and its readiness probe (if
//!   any) passes.
//!
//! # Spreading checks
//! Containers started together (a rollout, a daemon restart) would otherwise be checked in
//! lockstep forever. The first check of a probe is not delayed (a readiness probe's first
//! success is what a rollout waits for), but the second one comes after a per-container
//! `phase` in `[period / 2, period]` instead of a whole period, and the rest every period
//! after it: the checks of containers started at the same moment spread over half a period,
//! and the gap between two checks of one probe never shrinks below half a period.

use crate::Health;
use orchestrator_shared_types::{ContainerConfig, Probe, ProbeKind};
use std::time::Duration;
use tokio::time::Instant;

/// The outcome of one check: `Err` carries what failed, for messages (e.g.
/// `"HTTP 503 from GET /ready"`).
pub type CheckOutcome = Result<(), String>;

/// One probe's counters and schedule.
#[derive(Clone, Debug)]
struct Track {
    kind: ProbeKind,
    probe: Probe,
    /// Whether it passes now (startup: passed once; liveness: starts true; readiness: starts
    /// false).
    passing: bool,
    successes: u32,
    failures: u32,
    /// What the last failure said.
    last_error: Option<String>,
    /// When it is next checked (meaningful once the container runs).
    due: Instant,
    /// How many checks were started, to place the second one at the phase.
    checks: u64,
    /// A check was started and its outcome not recorded yet: not started again meanwhile.
    in_flight: bool,
}

impl Track {
    fn new(kind: ProbeKind, probe: &Probe, now: Instant) -> Self {
        Self {
            kind,
            probe: probe.clone(),
            passing: kind == ProbeKind::Liveness,
            successes: 0,
            failures: 0,
            last_error: None,
            due: now,
            checks: 0,
            in_flight: false,
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.probe.period_seconds.max(1)))
    }

    /// `"{kind} probe failed N times: ERROR"`. The count stops at the failure threshold: every
    /// change of the message is an event to the core, and a count that grew forever would send
    /// one every period for as long as a probe fails.
    fn failure_text(&self) -> String {
        let n = self.failures.min(self.probe.failure_threshold.max(1));
        format!(
            "{} probe failed {n} times: {}",
            self.kind,
            self.last_error.as_deref().unwrap_or("no detail")
        )
    }
}

/// What recording an outcome decided beyond the health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing more: keep probing.
    Continue,
    /// Kill the container: its liveness or startup probe failed too often. The reason, e.g.
    /// `"liveness probe failed 3 times: connection refused on port 20001"`.
    Kill(String),
}

/// The probes of one container (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    /// The container's name, leading every message.
    name: String,
    /// Startup, liveness, readiness (the order checks are considered in).
    tracks: Vec<Track>,
    /// See the module docs; in `[0, 1]`, scaled by each probe's period.
    phase: f64,
    /// When the container was seen running; nothing is due before.
    started: Option<Instant>,
    /// Set by a kill decision: nothing is checked any more.
    killed: Option<String>,
}

impl ContainerProbes {
    /// The probes of `config`, `None` when it has none. `phase` (any value, reduced to `[0, 1]`)
    /// spreads the checks of containers started together; callers derive it from the
    /// container id.
    pub fn new(config: &ContainerConfig, phase: f64, now: Instant) -> Option<Self> {
        let tracks: Vec<Track> = [
            (ProbeKind::Startup, &config.startup_probe),
            (ProbeKind::Liveness, &config.liveness_probe),
            (ProbeKind::Readiness, &config.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(kind, p)| p.as_ref().map(|p| Track::new(kind, p, now)))
        .collect();
        if tracks.is_empty() {
            return None;
        }
        Some(Self {
            name: config.name.clone(),
            tracks,
            phase: if phase.is_finite() {
                phase.abs().fract()
            } else {
                0.0
            },
            started: None,
            killed: None,
        })
    }

    /// The container runs since `now`: every probe is due `initial_delay_seconds` later. Later
    /// calls change nothing (the first sighting of a running container counts).
    pub fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        for t in &mut self.tracks {
            t.due = now + Duration::from_secs(u64::from(t.probe.initial_delay_seconds));
        }
    }

    /// Whether [`start`](Self::start) was called.
    pub fn is_started(&self) -> bool {
        self.started.is_some()
    }

    /// The probe of `kind`, if the container has one.
    pub fn probe(&self, kind: ProbeKind) -> Option<&Probe> {
        self.track(kind).map(|t| &t.probe)
    }

    fn track(&self, kind: ProbeKind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    fn startup_passed(&self) -> bool {
        self.track(ProbeKind::Startup).is_none_or(|t| t.passing)
    }

    /// Whether the probe of `kind` may be checked now: the container runs, was not killed, the
    /// startup probe (if any) holds the others until it passes and is not checked after.
    fn eligible(&self, t: &Track) -> bool {
        if self.started.is_none() || self.killed.is_some() || t.in_flight {
            return false;
        }
        match t.kind {
            ProbeKind::Startup => !t.passing,
            _ => self.startup_passed(),
        }
    }

    /// When the next check is due; `None` when nothing will be checked until something changes
    /// (not started, killed, every eligible probe in flight).
    pub fn next_due(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .filter(|t| self.eligible(t))
            .map(|t| t.due)
            .min()
    }

    /// The probes due at `now`, marked in flight and scheduled for their next check: the
    /// caller runs them and [`record`](Self::record)s each outcome.
    pub fn take_due(&mut self, now: Instant) -> Vec<ProbeKind> {
        let mut due = Vec::new();
        for i in 0..self.tracks.len() {
            if !self.eligible(&self.tracks[i]) || self.tracks[i].due > now {
                continue;
            }
            let phase = self.phase;
            let t = &mut self.tracks[i];
            let period = t.period();
            let gap = if t.checks == 0 {
                period / 2 + period.mul_f64(phase / 2.0)
            } else {
                period
            };
            t.checks += 1;
            t.in_flight = true;
            // A check held back (by the startup probe, or a slow previous check) restarts the
            // rhythm from now rather than firing the checks it missed.
            t.due = if t.due + gap > now {
                t.due + gap
            } else {
                now + gap
            };
            due.push(t.kind);
        }
        due
    }

    /// Records the outcome of a check of `kind` started by [`take_due`](Self::take_due).
    /// Outcomes after a kill, or of a probe the container does not have, are ignored.
    pub fn record(&mut self, kind: ProbeKind, outcome: CheckOutcome) -> Decision {
        if self.killed.is_some() {
            return Decision::Continue;
        }
        let Some(t) = self.tracks.iter_mut().find(|t| t.kind == kind) else {
            return Decision::Continue;
        };
        t.in_flight = false;
        match outcome {
            Ok(()) => {
                t.failures = 0;
                t.successes = t.successes.saturating_add(1);
                if t.successes >= t.probe.success_threshold.max(1) {
                    t.passing = true;
                }
            }
            Err(e) => {
                t.successes = 0;
                t.failures = t.failures.saturating_add(1);
                t.last_error = Some(e);
                if t.failures >= t.probe.failure_threshold.max(1) {
                    match t.kind {
                        ProbeKind::Readiness => t.passing = false,
                        // Liveness, and a startup probe that never passed (a passed one is
                        // no longer checked).
                        ProbeKind::Liveness | ProbeKind::Startup => {
                            t.passing = false;
                            let reason = t.failure_text();
                            self.killed = Some(reason.clone());
                            return Decision::Kill(reason);
                        }
                    }
                }
            }
        }
        Decision::Continue
    }

    /// Why the container was killed, once it was.
    pub fn killed(&self) -> Option<&str> {
        self.killed.as_deref()
    }

    /// What the probes say now: ready when the startup probe passed and the readiness probe
    /// (if any) passes; a message when not ready, or when a probe is failing.
    pub fn health(&self) -> Health {
        let ready =
            self.startup_passed() && self.track(ProbeKind::Readiness).is_none_or(|t| t.passing);
        let message = self.message().map(|m| format!("{}: {m}", self.name));
        Health { ready, message }
    }

    fn message(&self) -> Option<String> {
        if let Some(reason) = &self.killed {
            return Some(reason.clone());
        }
        let waiting_or_failed = |t: &Track| {
            if t.failures > 0 {
                t.failure_text()
            } else {
                format!("waiting for the {} probe", t.kind)
            }
        };
        if let Some(t) = self.track(ProbeKind::Startup).filter(|t| !t.passing) {
            return Some(waiting_or_failed(t));
        }
        if let Some(t) = self.track(ProbeKind::Readiness) {
            if !t.passing {
                return Some(waiting_or_failed(t));
            }
            if t.failures > 0 {
                return Some(t.failure_text());
            }
        }
        self.track(ProbeKind::Liveness)
            .filter(|t| t.failures > 0)
            .map(Track::failure_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeKind::{Liveness, Readiness, Startup};

    fn probe(period: u32, delay: u32, success: u32, failure: u32) -> Probe {
        Probe {
            initial_delay_seconds: delay,
            period_seconds: period,
            success_threshold: success,
            failure_threshold: failure,
            ..Probe::http("/ready", 80)
        }
    }

    fn config(
        startup: Option<Probe>,
        liveness: Option<Probe>,
        readiness: Option<Probe>,
    ) -> ContainerConfig {
        let mut c = ContainerConfig::new("web", "img");
        c.startup_probe = startup;
        c.liveness_probe = liveness;
        c.readiness_probe = readiness;
        c
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_probes_no_machine() {
        assert!(ContainerProbes::new(&config(None, None, None), 0.3, Instant::now()).is_none());
    }

    /// Each row: a sequence of outcomes of one probe kind, and after each the expected
    /// (ready, message, kill).
    #[test]
    fn outcome_tables() {
        type Row = (
            &'static str,
            ContainerConfig,
            Vec<(
                ProbeKind,
                CheckOutcome,
                bool,
                Option<&'static str>,
                Option<&'static str>,
            )>,
        );
        let e = |s: &str| Err(s.to_owned());
        let rows: Vec<Row> = vec![
            (
                "readiness: starts not ready, 2 successes make it ready, 2 failures not",
                config(None, None, Some(probe(1, 0, 2, 2))),
                vec![
                    (
                        Readiness,
                        Ok(()),
                        false,
                        Some("web: waiting for the readiness probe"),
                        None,
                    ),
                    (Readiness, Ok(()), true, None, None),
                    (
                        Readiness,
                        e("HTTP 503 from GET /ready"),
                        true,
                        Some("web: readiness probe failed 1 times: HTTP 503 from GET /ready"),
                        None,
                    ),
                    (
                        Readiness,
                        e("HTTP 503 from GET /ready"),
                        false,
                        Some("web: readiness probe failed 2 times: HTTP 503 from GET /ready"),
                        None,
                    ),
                    // The count in the message stops at the threshold.
                    (
                        Readiness,
                        e("HTTP 503 from GET /ready"),
                        false,
                        Some("web: readiness probe failed 2 times: HTTP 503 from GET /ready"),
                        None,
                    ),
                    (
                        Readiness,
                        Ok(()),
                        false,
                        Some("web: waiting for the readiness probe"),
                        None,
                    ),
                    (Readiness, Ok(()), true, None, None),
                ],
            ),
            (
                "liveness: starts passing, 3 failures in a row kill, a success resets",
                config(None, Some(probe(1, 0, 1, 3)), None),
                vec![
                    (
                        Liveness,
                        e("connection refused on port 20001"),
                        true,
                        Some(
                            "web: liveness probe failed 1 times: connection refused on port 20001",
                        ),
                        None,
                    ),
                    (Liveness, Ok(()), true, None, None),
                    (
                        Liveness,
                        e("x"),
                        true,
                        Some("web: liveness probe failed 1 times: x"),
                        None,
                    ),
                    (
                        Liveness,
                        e("x"),
                        true,
                        Some("web: liveness probe failed 2 times: x"),
                        None,
                    ),
                    (
                        Liveness,
                        e("connection refused on port 20001"),
                        true,
                        Some(
                            "web: liveness probe failed 3 times: connection refused on port 20001",
                        ),
                        Some("liveness probe failed 3 times: connection refused on port 20001"),
                    ),
                    // Nothing counts after a kill.
                    (
                        Liveness,
                        Ok(()),
                        true,
                        Some(
                            "web: liveness probe failed 3 times: connection refused on port 20001",
                        ),
                        None,
                    ),
                ],
            ),
            (
                "startup: holds readiness, passes after one success, then readiness decides",
                config(Some(probe(1, 0, 1, 3)), None, Some(probe(1, 0, 1, 3))),
                vec![
                    (
                        Startup,
                        e("x"),
                        false,
                        Some("web: startup probe failed 1 times: x"),
                        None,
                    ),
                    (
                        Startup,
                        Ok(()),
                        false,
                        Some("web: waiting for the readiness probe"),
                        None,
                    ),
                    (Readiness, Ok(()), true, None, None),
                ],
            ),
            (
                "startup: failure_threshold failures in a row kill",
                config(Some(probe(1, 0, 1, 2)), Some(probe(1, 0, 1, 3)), None),
                vec![
                    (
                        Startup,
                        e("no"),
                        false,
                        Some("web: startup probe failed 1 times: no"),
                        None,
                    ),
                    (
                        Startup,
                        e("no"),
                        false,
                        Some("web: startup probe failed 2 times: no"),
                        Some("startup probe failed 2 times: no"),
                    ),
                ],
            ),
            (
                "liveness alone: ready from the start",
                config(None, Some(probe(1, 0, 1, 1)), None),
                vec![(Liveness, Ok(()), true, None, None)],
            ),
        ];
        for (name, config, steps) in rows {
            let now = Instant::now();
            let mut m = ContainerProbes::new(&config, 0.0, now).unwrap();
            m.start(now);
            for (i, (kind, outcome, ready, message, kill)) in steps.into_iter().enumerate() {
                let decision = m.record(kind, outcome);
                let h = m.health();
                assert_eq!(h.ready, ready, "{name}, step {i}: ready");
                assert_eq!(h.message.as_deref(), message, "{name}, step {i}: message");
                let expected = kill.map_or(Decision::Continue, |k| Decision::Kill(k.to_owned()));
                assert_eq!(decision, expected, "{name}, step {i}: decision");
            }
        }
    }

    #[test]
    fn initial_health_says_what_is_awaited() {
        let now = Instant::now();
        for (config, ready, message) in [
            (
                config(None, None, Some(probe(1, 0, 1, 3))),
                false,
                Some("web: waiting for the readiness probe"),
            ),
            (
                config(Some(probe(1, 0, 1, 3)), None, Some(probe(1, 0, 1, 3))),
                false,
                Some("web: waiting for the startup probe"),
            ),
            (config(None, Some(probe(1, 0, 1, 3)), None), true, None),
        ] {
            let m = ContainerProbes::new(&config, 0.0, now).unwrap();
            assert_eq!(m.health().ready, ready);
            assert_eq!(m.health().message.as_deref(), message);
        }
    }

    /// Times of the checks of a machine driven by a perfect timer until `until`, every check
    /// answering `outcome(kind)`.
    fn schedule(
        m: &mut ContainerProbes,
        t0: Instant,
        until: Duration,
        outcome: impl Fn(ProbeKind) -> CheckOutcome,
    ) -> Vec<(ProbeKind, Duration)> {
        let mut done = Vec::new();
        while let Some(due) = m.next_due() {
            if due > t0 + until {
                break;
            }
            for kind in m.take_due(due) {
                done.push((kind, due - t0));
                m.record(kind, outcome(kind));
            }
        }
        done
    }

    #[test]
    fn schedule_tables() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Nothing is due before the container runs.
        let mut m =
            ContainerProbes::new(&config(None, Some(probe(10, 5, 1, 3)), None), 0.5, t0).unwrap();
        assert_eq!(m.next_due(), None);
        m.start(t0);
        // First at the initial delay, second after the phase (period/2 + period/2 * 0.5),
        // then every period.
        assert_eq!(
            schedule(&mut m, t0, secs(40), |_| Ok(())),
            vec![
                (Liveness, secs(5)),
                (Liveness, ms(12_500)),
                (Liveness, ms(22_500)),
                (Liveness, ms(32_500)),
            ]
        );

        // Phase 0: the second check half a period after the first.
        let mut m =
            ContainerProbes::new(&config(None, None, Some(probe(2, 0, 1, 3))), 0.0, t0).unwrap();
        m.start(t0);
        let times: Vec<Duration> = schedule(&mut m, t0, secs(5), |_| Ok(()))
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(times, vec![secs(0), secs(1), secs(3), secs(5)]);

        // The startup probe holds liveness until it passes; then it is not checked again.
        let mut m = ContainerProbes::new(
            &config(Some(probe(1, 0, 1, 10)), Some(probe(1, 0, 1, 3)), None),
            0.0,
            t0,
        )
        .unwrap();
        m.start(t0);
        let got = schedule(&mut m, t0, secs(4), |_| Ok(()));
        assert_eq!(got[0], (Startup, secs(0)));
        assert!(got[1..].iter().all(|(k, _)| *k == Liveness), "{got:?}");
        assert_eq!(
            got[1],
            (Liveness, secs(0)),
            "liveness runs as soon as startup passed"
        );

        // A probe in flight is not started again; a kill stops everything.
        let mut m =
            ContainerProbes::new(&config(None, Some(probe(1, 0, 1, 1)), None), 0.0, t0).unwrap();
        m.start(t0);
        assert_eq!(m.take_due(t0), vec![Liveness]);
        assert_eq!(m.next_due(), None, "in flight");
        assert_eq!(m.take_due(t0 + secs(5)), vec![]);
        assert!(matches!(
            m.record(Liveness, Err("x".into())),
            Decision::Kill(_)
        ));
        assert_eq!(m.next_due(), None, "killed");
        assert_eq!(m.killed(), Some("liveness probe failed 1 times: x"));

        // A check that took longer than the period: the next one comes a period after now,
        // not in a burst of missed ones.
        let mut m =
            ContainerProbes::new(&config(None, Some(probe(1, 0, 1, 3)), None), 0.0, t0).unwrap();
        m.start(t0);
        m.take_due(t0);
        m.record(Liveness, Ok(()));
        let late = t0 + secs(30);
        assert_eq!(m.take_due(late), vec![Liveness]);
        m.record(Liveness, Ok(()));
        assert_eq!(m.next_due(), Some(late + secs(1)));
    }

    #[test]
    fn starting_twice_keeps_the_first_time() {
        let t0 = Instant::now();
        let mut m =
            ContainerProbes::new(&config(None, Some(probe(1, 3, 1, 3)), None), 0.0, t0).unwrap();
        m.start(t0);
        m.start(t0 + secs(100));
        assert_eq!(m.next_due(), Some(t0 + secs(3)));
        assert!(m.is_started());
    }
}
