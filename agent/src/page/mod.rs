//! The status page: `/` in a browser, and `/targets/NAME` for one target.
//!
//! Server-rendered HTML from the same state as `/status` (each target's latest
//! outcome, and the bounded history `record` keeps next to it): there is no second
//! source of truth. The page is readable with JavaScript off and has none: a
//! `<meta>` refresh reloads it, filters are links, history is inline SVG. Every
//! text that came from outside (names, messages, certificate fields) is escaped;
//! the `Content-Security-Policy` forbids scripts and external loads as a second
//! line of defence. Secrets cannot reach it: outcomes are scrubbed before they
//! reach the state, exactly as for `/status`.

mod escape;
mod overview;
mod render;
mod svg;
mod target;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use depprobe_probes::{ErrorType, Outcome};
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::history::PastRun;
use crate::state::State;

pub use escape::{html, path_segment, percent_decode, query_param};
pub use svg::{latency_sparkline, status_strip};

/// The prefix of a target's page.
const TARGET_PREFIX: &str = "/targets/";
/// How many recent runs a row of the overview draws.
const ROW_RUNS: usize = 40;

/// One target's row on the overview, copied out of the state under its lock.
struct Row {
    /// Its latest outcome.
    outcome: Arc<Outcome>,
    /// Its position in the configuration.
    order: usize,
    /// Its last few runs, oldest first.
    recent: Vec<PastRun>,
}

/// One target's page, copied out of the state under its lock.
struct Detail {
    /// Its latest outcome.
    outcome: Arc<Outcome>,
    /// Every run kept, oldest first.
    history: Vec<PastRun>,
    /// Runs since it was configured.
    runs: u64,
    /// Failures since it was configured, by class.
    failures: BTreeMap<ErrorType, u64>,
    /// Leaf certificate changes seen.
    cert_changes: u64,
}

/// The key under which concurrent requests share one render: the path, and for the
/// overview the filter it understood (an unknown parameter, or the same filter
/// spelt differently, is the same render), never the raw query.
pub fn render_key(path: &str, query: &str) -> String {
    if path == "/" {
        let filter = overview::Filter::parse(query);
        format!("/?{:?}", (filter.status.map(|s| s.as_str()), filter.kind))
    } else {
        path.to_owned()
    }
}

/// The page for `path` (with `query`, without `?`), or `None` when `path` is not
/// one of the page's.
pub fn respond(path: &str, query: &str, state: &State) -> Option<Response<Full<Bytes>>> {
    if path == "/" {
        let (rows, configured) = rows(state);
        let filter = overview::Filter::parse(query);
        return Some(page(
            StatusCode::OK,
            overview::render(&rows, configured, &filter),
        ));
    }
    let encoded = path.strip_prefix(TARGET_PREFIX)?;
    let Some(name) = percent_decode(encoded, false).filter(|n| !n.is_empty()) else {
        return Some(page(
            StatusCode::BAD_REQUEST,
            render::not_found("a malformed target name"),
        ));
    };
    Some(match detail(state, &name) {
        Some(d) => page(StatusCode::OK, target::render(&d)),
        None => page(
            StatusCode::NOT_FOUND,
            render::not_found(&format!("no target named “{name}” has run")),
        ),
    })
}

/// Every target that has run, and the number configured.
fn rows(state: &State) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut configured = 0;
    state.each(|t| {
        configured += 1;
        if let Some(o) = &t.last {
            let skip = t.history.len().saturating_sub(ROW_RUNS);
            rows.push(Row {
                outcome: o.clone(),
                order: t.order,
                recent: t.history.runs().skip(skip).collect(),
            });
        }
    });
    (rows, configured)
}

/// The target named `name`, if it has run.
fn detail(state: &State, name: &str) -> Option<Detail> {
    let mut found = None;
    state.each(|t| {
        if let Some(o) = t.last.as_ref().filter(|o| o.name == name) {
            found = Some(Detail {
                outcome: o.clone(),
                history: t.history.to_vec(),
                runs: t.runs,
                failures: t.failures.clone(),
                cert_changes: t.cert_changes,
            });
        }
    });
    found
}

/// An HTML response with the headers that keep it inert: no script may run, nothing
/// is loaded from elsewhere, nothing is cached.
fn page(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    let mut set = |name: hyper::header::HeaderName, value: &'static str| {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    };
    set(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(
        hyper::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(hyper::header::CACHE_CONTROL, "no-store");
    set(hyper::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(hyper::header::REFERRER_POLICY, "no-referrer");
    r
}
