//! One render shared by concurrent requests of the same route.
//!
//! Rendering `/metrics` or `/status` for thousands of targets takes milliseconds of
//! CPU and a buffer of megabytes; a burst of scrapes (several Prometheus replicas,
//! a dashboard refreshing) must not multiply either. A request for a route whose
//! render is in progress waits for that render and gets the same bytes.
//!
//! The render belongs to the server, not to the requests: it runs as a task of its
//! own, and that task removes its entry when it finishes, whether or not anyone
//! still waits. A client that resets its request at once therefore leaves nothing
//! behind (neither the entry nor the rendered bytes), and the next request after a
//! render finished always renders anew, so no answer predates the render in
//! progress when its request arrived. Keys are the route and the parameters that
//! change its output (see `page::render_key`), never the raw query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use super::reply;

/// One rendered answer, shared by the requests that waited for it.
pub(super) struct Rendered {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

type Flight = Shared<BoxFuture<'static, Arc<Rendered>>>;

/// Renders in progress, by key: a request for a key being rendered waits for that
/// render instead of starting another (single flight). Renders run on the blocking
/// pool, off the probes' threads, driven by a task of their own.
#[derive(Default)]
pub(super) struct Renders {
    flights: Arc<Mutex<HashMap<String, Flight>>>,
}

impl Renders {
    /// The answer for `key`: the render in progress, or a new one made by `render`.
    pub(super) async fn get<F>(&self, key: &str, render: F) -> Arc<Rendered>
    where
        F: FnOnce() -> Response<Full<Bytes>> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(key) {
                Some(f) => f.clone(),
                None => {
                    let f = Self::start(self.flights.clone(), key.to_owned(), render);
                    flights.insert(key.to_owned(), f.clone());
                    f
                }
            }
        };
        flight.await
    }

    /// Renders in flight now (for tests and the memory bound).
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Spawns the render of `key`; the task removes the entry when it is done, so
    /// that an abandoned render frees what it held. The entry is inserted by the
    /// caller under the same lock the task takes to remove it, so the removal can
    /// never come first.
    fn start<F>(flights: Arc<Mutex<HashMap<String, Flight>>>, key: String, render: F) -> Flight
    where
        F: FnOnce() -> Response<Full<Bytes>> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            let response = tokio::task::spawn_blocking(render)
                .await
                .unwrap_or_else(|_| failed());
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            Arc::new(Rendered {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        });
        async move {
            task.await.unwrap_or_else(|_| {
                let (parts, _) = failed().into_parts();
                Arc::new(Rendered {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::from_static(b"failed\n"),
                })
            })
        }
        .boxed()
        .shared()
    }
}

/// The answer when a render panicked.
fn failed() -> Response<Full<Bytes>> {
    reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "failed\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_requests_of_a_path_share_one_render() {
        let renders = Renders::default();
        let count = Arc::new(AtomicU64::new(0));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let gets = (0..10).map(|_| {
            let (count, wait) = (count.clone(), wait.clone());
            renders.get("/metrics", move || {
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(w) = wait.lock() {
                    let _ = w.recv_timeout(Duration::from_secs(5));
                }
                reply(StatusCode::OK, "text/plain", "rendered")
            })
        });
        let all = futures::future::join_all(gets);
        tokio::pin!(all);
        // Every request has joined before the render may finish.
        assert!(futures::poll!(&mut all).is_pending());
        release.send(()).unwrap();
        let answers = all.await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| a.body == "rendered"));
        // Once finished, the next request renders anew.
        let again = renders
            .get("/metrics", || reply(StatusCode::OK, "text/plain", "fresh"))
            .await;
        assert_eq!(again.body, "fresh");
    }

    #[tokio::test]
    async fn an_abandoned_render_is_finished_and_freed() {
        let renders = Renders::default();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        for i in 0..100 {
            let wait = wait.clone();
            let key = format!("/?kind=k{i}");
            let get = renders.get(&key, move || {
                if i == 0
                    && let Ok(w) = wait.lock()
                {
                    let _ = w.recv_timeout(Duration::from_secs(5));
                }
                reply(StatusCode::OK, "text/plain", "x".repeat(1 << 16))
            });
            // The request is dropped after its first poll, as a reset client's is.
            tokio::pin!(get);
            assert!(futures::poll!(&mut get).is_pending());
        }
        assert!(renders.in_flight() > 0);
        release.send(()).unwrap();
        // No waiter is left, yet every render finishes and removes its entry.
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while renders.in_flight() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(drained.is_ok(), "abandoned renders still held");
        assert_eq!(renders.in_flight(), 0, "abandoned renders were freed");
        // And the next request for an abandoned key renders anew.
        let again = renders
            .get("/?kind=k0", || reply(StatusCode::OK, "text/plain", "fresh"))
            .await;
        assert_eq!(again.body, "fresh");
    }
}
