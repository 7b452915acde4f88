//! Sharing one configuration among several agents: `--shard i/n` keeps the probes
//! whose name ranks shard `i` highest among `n` (rendezvous, or highest-random-weight,
//! hashing). Going from `n` to `n + 1` agents moves only the probes that the new
//! shard wins, about `1/(n + 1)` of them, to the new agent; every other probe stays
//! where it ran, with its state. In a Kubernetes StatefulSet `--shard pod/n` takes
//! `i` from the pod's index, so every replica runs the same command.

use std::fmt;
use std::str::FromStr;

/// The variable a StatefulSet pod's index is read from (the downward API's
/// `metadata.labels['apps.kubernetes.io/pod-index']`), before the host name.
pub const POD_INDEX_VAR: &str = "DEPPROBE_POD_INDEX";

/// Shards at most: more would mean more agents than a fleet of this kind runs,
/// and bounds the work of choosing a probe's shard.
pub const MAX_SHARDS: u64 = 4096;

/// Why a shard cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// The text is not `i/n` or `pod/n`.
    #[error(
        "`{0}` is not a shard: write i/n with 1 <= i <= n <= {MAX_SHARDS} (e.g. 2/4), or pod/n \
         to take i from the StatefulSet pod's index"
    )]
    Syntax(String),
    /// `pod/n`, but neither the variable nor the host name gives an index.
    #[error(
        "--shard pod/{count}: no pod index: set {POD_INDEX_VAR} (downward API label \
         apps.kubernetes.io/pod-index) or run in a pod named <name>-<ordinal>"
    )]
    NoPodIndex {
        /// The number of shards asked for.
        count: u64,
    },
    /// The pod's index is past the shards (the StatefulSet has more replicas than `n`).
    #[error(
        "--shard pod/{count}: this pod's index is {index}, so it would run no probe: \
         make n equal the StatefulSet's replicas"
    )]
    PodIndexOutOfRange {
        /// The pod's 0-based index.
        index: u64,
        /// The number of shards asked for.
        count: u64,
    },
}

/// One of `count` shards of a shared configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

/// `--shard` as written: a fixed shard, or one whose index comes from the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `i/n`.
    Fixed(Shard),
    /// `pod/n`: `i` is the StatefulSet pod's 0-based index plus one.
    Pod {
        /// Number of shards (the StatefulSet's replicas).
        count: u64,
    },
}

impl Shard {
    /// Whether the probe named `name` belongs to this shard: the shard with the
    /// highest weight for the name wins (ties, practically impossible, go to the
    /// lower index).
    pub fn keeps(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

/// The 1-based shard among `count` that runs the probe named `name`.
pub fn owner(name: &str, count: u64) -> u64 {
    let key = name_hash(name);
    let mut best = (0u64, 1u64);
    for i in 1..=count.max(1) {
        let w = weight(key, i);
        if w > best.0 {
            best = (w, i);
        }
    }
    best.1
}

/// FNV-1a of the name: stable across builds, platforms and releases (Rust's own
/// hasher is not), so agents of different versions agree on the shards.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The weight of shard `i` for a name: SplitMix64's finaliser of both, so that
/// neighbouring names and indices give unrelated weights.
fn weight(key: u64, i: u64) -> u64 {
    mix(key ^ mix(i))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ShardSpec {
    /// The shard this agent runs, reading the pod's index from `var` (the
    /// environment) for `pod/n`.
    pub fn resolve(&self, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let count = match *self {
            ShardSpec::Fixed(s) => return Ok(s),
            ShardSpec::Pod { count } => count,
        };
        let index = var(POD_INDEX_VAR)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| var("HOSTNAME").as_deref().and_then(ordinal))
            .ok_or(ShardError::NoPodIndex { count })?;
        if index >= count {
            return Err(ShardError::PodIndexOutOfRange { index, count });
        }
        Ok(Shard {
            index: index + 1,
            count,
        })
    }

    /// [`ShardSpec::resolve`] from the process environment.
    pub fn resolve_from_env(&self) -> Result<Shard, ShardError> {
        self.resolve(|k| std::env::var(k).ok())
    }
}

/// The ordinal of a StatefulSet pod's name: `depprobe-12` -> 12.
fn ordinal(pod_name: &str) -> Option<u64> {
    let (_, digits) = pod_name.trim().rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_count(s: &str) -> Option<u64> {
    let n: u64 = s.trim().parse().ok()?;
    (1..=MAX_SHARDS).contains(&n).then_some(n)
}

impl FromStr for ShardSpec {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Syntax(s.chars().take(64).collect());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let count = parse_count(n).ok_or_else(bad)?;
        if i.trim() == "pod" {
            return Ok(ShardSpec::Pod { count });
        }
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(ShardSpec::Fixed(Shard { index, count }))
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        match s.parse::<ShardSpec>()? {
            ShardSpec::Fixed(shard) => Ok(shard),
            ShardSpec::Pod { .. } => Err(ShardError::Syntax(s.to_owned())),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        (0..10_000).map(|i| format!("probe-{i}")).collect()
    }

    /// Going from n to n + 1 shards moves about 1/(n + 1) of 10,000 probes, and only
    /// to the new shard. A modulo hash would move n/(n + 1) of them: 3/4, 4/5.
    #[test]
    fn adding_a_shard_moves_about_one_in_n_plus_one_and_only_to_the_new_shard() {
        let names = names();
        for n in [3u64, 4] {
            let mut moved = 0usize;
            for name in &names {
                let (before, after) = (owner(name, n), owner(name, n + 1));
                if before != after {
                    assert_eq!(after, n + 1, "{name} moved from {before} to {after}");
                    moved += 1;
                }
            }
            let share = moved as f64 / names.len() as f64;
            let expected = 1.0 / (n + 1) as f64;
            // The binomial's standard deviation here is about 0.004.
            assert!(
                (share - expected).abs() < 0.02,
                "{n} -> {}: {moved} of 10,000 moved ({share:.3}), expected about {expected:.3}",
                n + 1
            );
        }
    }

    #[test]
    fn every_name_is_in_exactly_one_shard_and_shards_are_balanced() {
        let names = names();
        for count in [1u64, 3, 5] {
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let holders: Vec<u64> = (1..=count)
                    .filter(|&index| Shard { index, count }.keeps(name))
                    .collect();
                assert_eq!(holders.len(), 1, "{name} in {holders:?} of {count}");
                sizes[(holders[0] - 1) as usize] += 1;
            }
            let fair = names.len() as f64 / count as f64;
            for (i, size) in sizes.iter().enumerate() {
                assert!(
                    (*size as f64 - fair).abs() < fair * 0.06,
                    "shard {}/{count} holds {size} of 10,000",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn shards_parse_as_i_of_n_or_pod_of_n() {
        assert_eq!(
            "2/4".parse::<ShardSpec>(),
            Ok(ShardSpec::Fixed(Shard { index: 2, count: 4 }))
        );
        assert_eq!("pod/3".parse(), Ok(ShardSpec::Pod { count: 3 }));
        for bad in [
            "0/3",
            "4/3",
            "1/0",
            "x/2",
            "2",
            "pod/0",
            "1/99999999999999999999",
        ] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        assert!("pod/3".parse::<Shard>().is_err());
    }

    #[test]
    fn pod_shard_comes_from_the_index_label_then_the_pod_name() {
        let spec = ShardSpec::Pod { count: 3 };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let from_label = spec.resolve(env(&[(POD_INDEX_VAR, "0"), ("HOSTNAME", "depprobe-2")]));
        assert_eq!(from_label, Ok(Shard { index: 1, count: 3 }));
        let from_name = spec.resolve(env(&[("HOSTNAME", "depprobe-fleet-2")]));
        assert_eq!(from_name, Ok(Shard { index: 3, count: 3 }));
        assert_eq!(
            spec.resolve(env(&[("HOSTNAME", "depprobe-3")])),
            Err(ShardError::PodIndexOutOfRange { index: 3, count: 3 })
        );
        assert_eq!(
            spec.resolve(env(&[("HOSTNAME", "laptop")])),
            Err(ShardError::NoPodIndex { count: 3 })
        );
    }
}
