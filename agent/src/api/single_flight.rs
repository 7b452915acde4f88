//! One render shared by concurrent requests of the same path.
//!
//! Rendering `/metrics` or `/status` for thousands of targets takes milliseconds of
//! CPU and a buffer of megabytes; a burst of scrapes (several Prometheus replicas,
//! a dashboard refreshing) must not multiply either. A request for a path whose
//! render is in progress waits for that render and gets the same bytes; the next
//! request after it finishes renders anew, so no answer is older than the request.

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

/// Renders in progress, by path: a request for a path being rendered waits for
/// that render instead of starting another (single flight). Renders run on the
/// blocking pool, off the probes' threads.
#[derive(Default)]
pub(super) struct Renders {
    flights: Arc<Mutex<HashMap<String, Flight>>>,
}

impl Renders {
    pub(super) async fn get<F>(&self, path: &str, render: F) -> Arc<Rendered>
    where
        F: FnOnce(&str) -> Response<Full<Bytes>> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(path) {
                Some(f) => f.clone(),
                None => {
                    let f = Self::render(self.flights.clone(), path.to_owned(), render);
                    flights.insert(path.to_owned(), f.clone());
                    f
                }
            }
        };
        flight.await
    }

    fn render<F>(flights: Arc<Mutex<HashMap<String, Flight>>>, path: String, render: F) -> Flight
    where
        F: FnOnce(&str) -> Response<Full<Bytes>> + Send + 'static,
    {
        async move {
            let p = path.clone();
            let response = tokio::task::spawn_blocking(move || render(&p))
                .await
                .unwrap_or_else(|_| {
                    reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "failed\n")
                });
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&path);
            Arc::new(Rendered {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .boxed()
        .shared()
    }
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
            renders.get("/metrics", move |_| {
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
            .get("/metrics", |_| reply(StatusCode::OK, "text/plain", "fresh"))
            .await;
        assert_eq!(again.body, "fresh");
    }
}
