//! Supervision of probe runs: a panic inside a probe is that run's outcome.
//!
//! A probe is code that parses what a dependency sends; a bug there must never
//! make a target vanish from `/status` and `/metrics` (a frozen probe that looks
//! healthy is worse than none). [`run`] polls a probe's run under
//! `catch_unwind`: a panic becomes a `down` outcome of class `internal_error`,
//! whose message is scrubbed of the probe's secrets like every other outcome, and
//! the probe keeps its schedule. The process-wide panic hook stays quiet for
//! panics inside a supervised run (the default hook would print the payload,
//! which may hold what the probe was parsing, to stderr) and only remembers where
//! it happened; every other panic still reaches the previous hook.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use depprobe_probes::{ErrorType, Outcome, Phase, Probe, ProbeError, ProbeMeta, Run};
use futures::FutureExt;

/// How much of a panic's payload the outcome's message keeps.
const PAYLOAD_CHARS: usize = 200;

thread_local! {
    /// Whether this thread is polling a supervised run right now.
    static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of a supervised run on this thread happened.
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A finished, supervised run.
#[derive(Debug)]
pub struct Finished {
    /// The run's outcome: the probe's own, or `internal_error` after a panic.
    pub outcome: Outcome,
    /// Whether the probe panicked.
    pub panicked: bool,
}

/// Runs `probe` once; a panic becomes an `internal_error` outcome, logged once
/// with the probe's name.
pub async fn run(probe: &dyn Probe) -> Finished {
    install_hook();
    match AssertUnwindSafe(Flagged(probe.run())).catch_unwind().await {
        Ok(outcome) => Finished {
            outcome,
            panicked: false,
        },
        Err(payload) => {
            let at = PANICKED_AT.with(|p| p.borrow_mut().take());
            let outcome = panicked(probe.meta(), payload.as_ref(), at.as_deref());
            tracing::error!(
                probe = %outcome.name,
                "{}: the probe panicked; the run is reported as internal_error and the probe keeps its schedule: {}",
                outcome.name,
                outcome.message
            );
            Finished {
                outcome,
                panicked: true,
            }
        }
    }
}

/// The outcome of a run that panicked with `payload` at `at`.
pub fn panicked(meta: &ProbeMeta, payload: &(dyn Any + Send), at: Option<&str>) -> Outcome {
    let mut text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".to_owned());
    // Scrubbed before it is cut, so that no secret survives in part.
    for secret in meta.secrets.iter().map(|s| s.expose()) {
        if !secret.is_empty() && text.contains(secret) {
            text = text.replace(secret, "***");
        }
    }
    let mut cut: String = text.chars().take(PAYLOAD_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    let place = at.map(|a| format!(" at {a}")).unwrap_or_default();
    // The phase is not visible from outside the probe: the request phase is where
    // a probe works on what the dependency sent, and where such bugs live.
    Run::start(meta).finish(Err(ProbeError::new(
        ErrorType::InternalError,
        Phase::Request,
        format!("the probe panicked{place}: {cut}"),
    )))
}

/// Polls the run with this thread marked as supervised.
struct Flagged<F>(F);

impl<F: Future + Unpin> Future for Flagged<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _mark = Mark::set();
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Marks the thread as supervised until dropped (also when a panic unwinds).
struct Mark(bool);

impl Mark {
    fn set() -> Mark {
        Mark(SUPERVISED.with(|s| s.replace(true)))
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        SUPERVISED.with(|s| s.set(self.0));
    }
}

/// Installs, once per process, the hook that keeps supervised panics quiet.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SUPERVISED.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANICKED_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use depprobe_config::Secret;
    use std::time::Duration;

    fn meta(secret: &str) -> ProbeMeta {
        ProbeMeta {
            name: "p".into(),
            kind: depprobe_config::Kind::new("test"),
            target: depprobe_probes::outcome::Target {
                address: "localhost".into(),
                port: 9,
            },
            timeout: Duration::from_secs(1),
            budgets: Vec::new(),
            secrets: vec![Secret::new(secret.to_owned())],
            attributes: &[],
            memory: Default::default(),
            propagate_trace: true,
            tracestate: None,
        }
    }

    #[test]
    fn a_panic_payload_is_cut_and_scrubbed_of_the_probes_secrets() {
        let payload: Box<dyn Any + Send> =
            Box::new(format!("bad value hunter2-secret {}", "x".repeat(500)));
        let o = panicked(&meta("hunter2-secret"), payload.as_ref(), Some("a.rs:1"));
        assert_eq!(o.error_type, Some(ErrorType::InternalError));
        assert!(
            o.message
                .starts_with("the probe panicked at a.rs:1: bad value")
        );
        assert!(!o.message.contains("hunter2"), "{}", o.message);
        assert!(o.message.len() < 500, "{}", o.message);
    }
}
