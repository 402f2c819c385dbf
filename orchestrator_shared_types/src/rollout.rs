//! How a template change reaches the replicas (the update strategy), and the revisions a
//! workload's template went through.

use crate::{ContainerConfig, Labels, PlacementStrategy, WorkloadDefinition};
use serde::{Deserialize, Serialize};

/// How many templates a workload remembers besides its current one (Kubernetes'
/// `revisionHistoryLimit` default).
pub const REVISION_HISTORY: usize = 10;

/// A count of replicas or a percentage of the desired count (`"25%"`), as Kubernetes'
/// `IntOrString`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum Quantity {
    /// A number of replicas.
    Count(u32),
    /// A percentage of the desired replicas: digits followed by '%', at most "100%".
    Percent(String),
}

impl Quantity {
    /// The percentage, if this is a valid one.
    pub fn percent(&self) -> Option<u32> {
        match self {
            Quantity::Count(_) => None,
            Quantity::Percent(s) => s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .filter(|p| *p <= 100),
        }
    }

    /// The number of replicas this is for `of` desired ones: percentages round up for a surge
    /// (`round_up`) and down for unavailability, as Kubernetes does. An invalid percentage
    /// (refused at validation) counts as 0.
    pub fn resolve(&self, of: u32, round_up: bool) -> u32 {
        match self {
            Quantity::Count(n) => *n,
            Quantity::Percent(_) => {
                let p = u64::from(self.percent().unwrap_or(0));
                let scaled = u64::from(of) * p;
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

/// The two ways of replacing replicas after a template change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum StrategyKind {
    /// Replace replicas a few at a time, keeping enough of them available (the default).
    #[default]
    RollingUpdate,
    /// Stop every outdated replica at once, then start new ones.
    Recreate,
}

/// How a template change reaches the replicas (Kubernetes' Deployment strategy, with its
/// defaults, plus an automatic rollback Kubernetes lacks).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct UpdateStrategy {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, rename = "type")]
    pub kind: StrategyKind,
    /// How many replicas may exist above the desired count during a rolling update: a count or
    /// a percentage of the desired count, rounded up (default "25%").
    #[serde(default = "UpdateStrategy::default_quarter")]
    pub max_surge: Quantity,
    /// How many replicas may be unavailable during a rolling update: a count or a percentage,
    /// rounded down (default "25%"). Not both 0.
    #[serde(default = "UpdateStrategy::default_quarter")]
    pub max_unavailable: Quantity,
    /// Seconds a new replica must be ready before it counts as available (default 0).
    #[serde(default)]
    pub min_ready_seconds: u32,
    /// Seconds a rollout may go without progress (a new replica available, an old one removed)
    /// before it is failed (default 600).
    #[serde(default = "UpdateStrategy::default_deadline")]
    pub progress_deadline_seconds: u32,
    /// Whether a failed rollout (its progress deadline missed, or a new replica restarted
    /// `ROLLBACK_RESTARTS` times before any became available) returns to the last good
    /// revision by itself (default true).
    #[serde(default = "UpdateStrategy::default_auto_rollback")]
    pub auto_rollback: bool,
}

/// Restarts of one new replica, with no new replica ever available, that fail a rollout.
pub const ROLLBACK_RESTARTS: u32 = 3;

impl UpdateStrategy {
    fn default_quarter() -> Quantity {
        Quantity::Percent("25%".to_owned())
    }
    fn default_deadline() -> u32 {
        600
    }
    fn default_auto_rollback() -> bool {
        true
    }

    /// Whether this is the default strategy (kept out of serialized manifests).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The surge and unavailability for `replicas` desired ones. When both come to 0 (small
    /// percentages of few replicas), one replica may be unavailable, as in Kubernetes.
    pub fn limits(&self, replicas: u32) -> (u32, u32) {
        let surge = self.max_surge.resolve(replicas, true);
        let unavailable = self.max_unavailable.resolve(replicas, false).min(replicas);
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self {
            kind: StrategyKind::RollingUpdate,
            max_surge: Self::default_quarter(),
            max_unavailable: Self::default_quarter(),
            min_ready_seconds: 0,
            progress_deadline_seconds: Self::default_deadline(),
            auto_rollback: Self::default_auto_rollback(),
        }
    }
}

/// A template a workload ran before: what makes its replicas differ (the same parts as
/// `WorkloadDefinition::spec_hash`), with its revision number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TemplateRevision {
    /// Its revision number (1 for a workload's first template, then one more per change).
    pub revision: u64,
    /// The containers.
    pub containers: Vec<ContainerConfig>,
    /// The node selector.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub node_selector: Labels,
    /// The placement.
    #[serde(default)]
    pub placement: PlacementStrategy,
    /// Who made it the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Set when a rollout to this template failed: why (an automatic rollback never returns
    /// to a failed revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// Why a rollback cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// The workload has no earlier template.
    #[error("workload {0} has no earlier revision to roll back to")]
    NoHistory(String),
    /// The revision asked for is not in the history.
    #[error("workload {name} has no revision {revision} (known: {known})")]
    UnknownRevision {
        /// The workload.
        name: String,
        /// The revision asked for.
        revision: u64,
        /// The revisions it has, e.g. "1, 2, 4 (current)".
        known: String,
    },
}

impl WorkloadDefinition {
    /// Carries the server's revision bookkeeping from `current` (the stored version) into this
    /// new version: the same template keeps its revision and history; a new one gets the next
    /// revision number, and `current`'s template joins the history (the oldest beyond
    /// [`REVISION_HISTORY`] are forgotten, and an entry with the new template is taken out: it
    /// is current again, under its new number, as `kubectl rollout undo` does).
    pub fn follow(&mut self, current: &WorkloadDefinition) {
        self.history.clone_from(&current.history);
        if self.same_template(current) {
            self.revision = current.revision;
            return;
        }
        let newest = current
            .history
            .iter()
            .map(|h| h.revision)
            .chain([current.revision])
            .max()
            .unwrap_or(0);
        self.revision = newest + 1;
        let mut old = current.template();
        if old.revision == 0 {
            // Stored before revisions were kept.
            old.revision = newest.max(1);
            self.revision = old.revision + 1;
        }
        self.history.push(old);
        let mine = (&self.containers, &self.node_selector, self.placement);
        self.history
            .retain(|h| (&h.containers, &h.node_selector, h.placement) != mine);
        let excess = self.history.len().saturating_sub(REVISION_HISTORY);
        self.history.drain(..excess);
    }

    /// This workload with the template of revision `to` (`None`: the newest earlier one that
    /// did not fail), ready to be stored: [`WorkloadDefinition::follow`] is applied, and with
    /// `failed` the current template is remembered as failed, so an automatic rollback never
    /// returns to it.
    pub fn rolled_back(
        &self,
        to: Option<u64>,
        failed: Option<String>,
    ) -> Result<WorkloadDefinition, RollbackError> {
        let target = match to {
            Some(revision) => self
                .history
                .iter()
                .find(|h| h.revision == revision)
                .ok_or_else(|| RollbackError::UnknownRevision {
                    name: self.name.clone(),
                    revision,
                    known: self
                        .history
                        .iter()
                        .map(|h| h.revision.to_string())
                        .chain([format!("{} (current)", self.revision)])
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
            None => self
                .history
                .iter()
                .rev()
                .find(|h| failed.is_none() || h.failed.is_none())
                .ok_or_else(|| RollbackError::NoHistory(self.name.clone()))?,
        };
        let mut next = self.clone();
        next.set_template(target);
        next.follow(self);
        if let Some(reason) = failed {
            if let Some(entry) = next
                .history
                .iter_mut()
                .find(|h| h.revision == self.revision)
            {
                entry.failed = Some(reason);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContainerConfig;

    fn image(def: &WorkloadDefinition) -> &str {
        &def.containers[0].image
    }

    #[test]
    fn revisions_follow_template_changes_and_rollbacks() {
        let mut v1 = WorkloadDefinition::new("web", 2, ContainerConfig::new("app", "img:1"));
        v1.revision = 1;
        let mut scaled = v1.clone();
        scaled.replicas = 5;
        scaled.follow(&v1);
        assert_eq!(
            (scaled.revision, scaled.history.len()),
            (1, 0),
            "no template change"
        );

        let mut v2 = scaled.clone();
        v2.containers[0].image = "img:2".into();
        v2.follow(&scaled);
        assert_eq!(v2.revision, 2);
        assert_eq!(v2.history.len(), 1);
        assert_eq!(v2.history[0].revision, 1);

        let mut v3 = v2.clone();
        v3.containers[0].image = "img:3".into();
        v3.follow(&v2);
        assert_eq!(v3.revision, 3);

        // Undo returns to revision 2 as revision 4; 2 leaves the history.
        let undone = v3.rolled_back(None, None).unwrap();
        assert_eq!((undone.revision, image(&undone)), (4, "img:2"));
        let revs: Vec<u64> = undone.history.iter().map(|h| h.revision).collect();
        assert_eq!(revs, [1, 3]);
        assert_eq!(undone.replicas, 5, "only the template moves");

        // An automatic rollback marks the failed template and skips failed ones.
        let auto = undone.rolled_back(None, Some("deadline".into())).unwrap();
        assert_eq!((auto.revision, image(&auto)), (5, "img:3"));
        let failed: Vec<(u64, bool)> = auto
            .history
            .iter()
            .map(|h| (h.revision, h.failed.is_some()))
            .collect();
        assert_eq!(failed, [(1, false), (4, true)]);
        let again = auto.rolled_back(None, Some("again".into())).unwrap();
        assert_eq!(image(&again), "img:1", "revision 4 failed: skipped");

        assert!(matches!(
            v1.rolled_back(None, None),
            Err(RollbackError::NoHistory(_))
        ));
        let err = v3.rolled_back(Some(9), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload web has no revision 9 (known: 1, 2, 3 (current))"
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut def = WorkloadDefinition::new("web", 1, ContainerConfig::new("app", "img:0"));
        def.revision = 1;
        for n in 1..=15 {
            let mut next = def.clone();
            next.containers[0].image = format!("img:{n}");
            next.follow(&def);
            def = next;
        }
        assert_eq!(def.revision, 16);
        assert_eq!(def.history.len(), REVISION_HISTORY);
        assert_eq!(def.history[0].revision, 6);
    }

    #[test]
    fn quantities_resolve_like_kubernetes() {
        let pct = |s: &str| Quantity::Percent(s.to_owned());
        assert_eq!(pct("25%").resolve(10, true), 3);
        assert_eq!(pct("25%").resolve(10, false), 2);
        assert_eq!(pct("100%").resolve(7, false), 7);
        assert_eq!(Quantity::Count(4).resolve(10, true), 4);
        assert_eq!(pct("25").percent(), None);
        assert_eq!(pct("101%").percent(), None);
        assert_eq!(pct("%").percent(), None);
        let s = UpdateStrategy::default();
        assert_eq!(s.limits(100), (25, 25));
        assert_eq!(s.limits(1), (1, 0));
        let zero = UpdateStrategy {
            max_surge: Quantity::Count(0),
            max_unavailable: pct("10%"),
            ..UpdateStrategy::default()
        };
        assert_eq!(zero.limits(3), (0, 1), "both 0: one may be unavailable");
    }

    #[test]
    fn quantities_parse_from_numbers_and_strings() {
        let s: UpdateStrategy =
            serde_json::from_str(r#"{"max_surge": 1, "max_unavailable": "0%"}"#).unwrap();
        assert_eq!(s.max_surge, Quantity::Count(1));
        assert_eq!(s.max_unavailable, Quantity::Percent("0%".into()));
        assert_eq!(s.progress_deadline_seconds, 600);
        assert!(s.auto_rollback);
    }
}
