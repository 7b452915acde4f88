//! The recent runs of one target, kept in memory for the status page.
//!
//! A bounded ring: the last [`History::CAPACITY`] runs, each reduced to what the
//! page draws (when, status, class, total latency) and packed in 8 bytes: 1.9 KiB
//! per target once full (19 MiB at 10,000 targets; 28 MiB in the 12 bytes of a
//! [`PastRun`]), however long the agent runs. The ring grows
//! as runs arrive (a target that ran three times holds three entries) and then
//! overwrites its oldest entry. It lives in the target's state, next to the latest
//! outcome, and is written by the same `record` call: there is no second source.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use depprobe_probes::{ErrorType, Outcome, Status};

/// One past run, as the status page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastRun {
    /// When it started, in whole seconds since the Unix epoch (saturated).
    pub at_unix: u32,
    /// Its total duration in milliseconds (saturated).
    pub latency_ms: u32,
    /// Its status.
    pub status: Status,
    /// Its failure class, when down.
    pub class: Option<ErrorType>,
}

impl PastRun {
    /// The run an outcome describes.
    pub fn of(outcome: &Outcome) -> PastRun {
        let at = outcome
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        PastRun {
            at_unix: at,
            latency_ms: u32::try_from(outcome.timings.total.as_millis()).unwrap_or(u32::MAX),
            status: outcome.status,
            class: outcome.error_type,
        }
    }

    /// When it started.
    pub fn started_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(self.at_unix))
    }
}

/// A [`PastRun`] in 8 bytes: the start in Unix seconds, then the latency in
/// milliseconds (24 bits, saturated at about 4.6 hours) and a code for the status
/// and class (8 bits: 0 up, 1 degraded, 2 + the class's index when down, 255 down
/// without a class).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    at_unix: u32,
    latency_and_code: u32,
}

/// The largest latency a packed run keeps, ms.
const MAX_LATENCY_MS: u32 = (1 << 24) - 1;

impl Packed {
    fn pack(r: PastRun) -> Packed {
        let code = match (r.status, r.class) {
            (Status::Up, _) => 0,
            (Status::Degraded, _) => 1,
            (Status::Down, Some(c)) => ErrorType::ALL
                .iter()
                .position(|x| *x == c)
                .and_then(|i| u8::try_from(i + 2).ok())
                .filter(|c| *c < u8::MAX)
                .unwrap_or(u8::MAX),
            (Status::Down, None) => u8::MAX,
        };
        Packed {
            at_unix: r.at_unix,
            latency_and_code: (r.latency_ms.min(MAX_LATENCY_MS) << 8) | u32::from(code),
        }
    }

    fn unpack(self) -> PastRun {
        let code = (self.latency_and_code & 0xff) as usize;
        let (status, class) = match code {
            0 => (Status::Up, None),
            1 => (Status::Degraded, None),
            c => (Status::Down, ErrorType::ALL.get(c - 2).copied()),
        };
        PastRun {
            at_unix: self.at_unix,
            latency_ms: self.latency_and_code >> 8,
            status,
            class,
        }
    }
}

/// The last runs of a target, oldest first, at most [`History::CAPACITY`].
#[derive(Clone, Debug, Default)]
pub struct History {
    runs: VecDeque<Packed>,
}

impl History {
    /// How many runs are kept: four hours at the default 60 s, two at 30 s.
    pub const CAPACITY: usize = 240;

    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Adds the run `outcome` describes, dropping the oldest when full.
    pub fn push(&mut self, outcome: &Outcome) {
        self.push_run(PastRun::of(outcome));
    }

    /// Adds `run`, dropping the oldest when full.
    pub fn push_run(&mut self, run: PastRun) {
        if self.runs.len() == Self::CAPACITY {
            self.runs.pop_front();
        }
        if self.runs.capacity() == self.runs.len() {
            // Grown to the bound at most, not to the next power of two past it.
            let more = (self.runs.len().max(2)).min(Self::CAPACITY - self.runs.len());
            self.runs.reserve_exact(more);
        }
        self.runs.push_back(Packed::pack(run));
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> impl ExactSizeIterator<Item = PastRun> + '_ {
        self.runs.iter().map(|p| p.unpack())
    }

    /// A copy of the runs, oldest first (taken under the state's lock, drawn after).
    pub fn to_vec(&self) -> Vec<PastRun> {
        self.runs().collect()
    }

    /// The number of runs kept.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no run was kept yet.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: u32, status: Status) -> PastRun {
        PastRun {
            at_unix: 1_700_000_000 + i,
            latency_ms: i,
            status,
            class: (status == Status::Down).then_some(ErrorType::Timeout),
        }
    }

    #[test]
    fn keeps_the_last_runs_in_order_and_no_more() {
        let mut h = History::new();
        let cap = u32::try_from(History::CAPACITY).unwrap();
        for i in 0..cap + 10 {
            h.push_run(run(i, Status::Up));
        }
        assert_eq!(h.len(), History::CAPACITY);
        assert_eq!(h.runs().next().map(|r| r.latency_ms), Some(10));
        assert_eq!(
            h.runs().last().map(|r| r.at_unix),
            Some(1_700_000_000 + cap + 9)
        );
    }

    #[test]
    fn a_run_keeps_status_class_and_time() {
        let mut h = History::new();
        h.push_run(run(42, Status::Down));
        let got = h.to_vec()[0];
        assert_eq!(got.status, Status::Down);
        assert_eq!(got.class, Some(ErrorType::Timeout));
        assert_eq!(
            got.started_at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_042)
        );
    }

    #[test]
    fn a_run_is_small() {
        assert!(std::mem::size_of::<PastRun>() <= 12);
        assert_eq!(std::mem::size_of::<Packed>(), 8);
    }

    #[test]
    fn every_status_and_class_survives_packing() {
        let mut h = History::new();
        let mut want = vec![run(0, Status::Up), run(1, Status::Degraded)];
        for (i, c) in ErrorType::ALL.iter().enumerate() {
            let mut r = run(2 + u32::try_from(i).unwrap(), Status::Down);
            r.class = Some(*c);
            want.push(r);
        }
        let mut slow = run(99, Status::Up);
        slow.latency_ms = u32::MAX;
        want.push(slow);
        for r in &want {
            h.push_run(*r);
        }
        slow.latency_ms = MAX_LATENCY_MS;
        *want.last_mut().unwrap() = slow;
        assert_eq!(h.to_vec(), want);
    }

    #[test]
    fn a_full_ring_holds_no_more_than_its_bound() {
        let mut h = History::new();
        for i in 0..u32::try_from(History::CAPACITY * 2).unwrap() {
            h.push_run(run(i, Status::Up));
        }
        assert!(
            h.runs.capacity() <= History::CAPACITY + 16,
            "{}",
            h.runs.capacity()
        );
    }
}
