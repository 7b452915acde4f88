//! Credentials stay with their origin: on a redirect to another scheme, host or
//! port, the `http` probe sends no `Authorization` and none of its configured
//! headers (their values are secrets), and it does not follow `https` to `http`
//! unless `follow_redirects_to_http` says so.

use std::sync::{Arc, Mutex};

use depprobe_probes::{ErrorType, Phase, Status};
use depprobe_tests::{Ca, HttpServer, Reply, Req, Scratch, Validity, run_once};

/// A server that answers 200 and records the headers of every request it gets.
async fn recorder() -> (HttpServer, Arc<Mutex<Vec<Req>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = HttpServer::builder()
        .respond(move |req| {
            log.lock().unwrap().push(req.clone());
            Reply::ok("landed")
        })
        .start()
        .await
        .unwrap();
    (server, seen)
}

/// A server that redirects `/old` to `target` and answers anything else itself,
/// recording what it got.
async fn redirector(
    tls: Option<&depprobe_tests::Identity>,
    target: String,
) -> (HttpServer, Arc<Mutex<Vec<Req>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut builder = HttpServer::builder();
    if let Some(identity) = tls {
        builder = builder.tls(identity);
    }
    let server = builder
        .respond(move |req| {
            log.lock().unwrap().push(req.clone());
            if req.path == "/old" {
                Reply::new(302, "").header("location", &target)
            } else {
                Reply::ok("same origin")
            }
        })
        .start()
        .await
        .unwrap();
    (server, seen)
}

const TOKEN: &str = "tok-3f9a1c77e2b84d0c";
const API_KEY: &str = "key-8d2e6b19c4a7f035";

fn credentials() -> String {
    format!("bearer_token: {TOKEN}\nheaders:\n  X-Api-Key: {API_KEY}\nfollow_redirects: true\n")
}

fn assert_carries_nothing(req: &Req) {
    assert_eq!(req.header("authorization"), None, "{req:?}");
    assert_eq!(req.header("x-api-key"), None, "{req:?}");
    for (name, value) in &req.headers {
        assert!(
            !value.contains(TOKEN) && !value.contains(API_KEY),
            "{name}: {value}"
        );
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_credential() {
    let (landing, landed) = recorder().await;
    // 127.0.0.1 redirects to localhost on another port: another host and port.
    let (origin, at_origin) = redirector(None, landing.url("localhost", "/landing")).await;
    let o = run_once(&format!(
        "name: api\nkind: http\nurl: {}\n{}",
        origin.url("127.0.0.1", "/old"),
        credentials()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.http.unwrap().redirects, 1);
    // The configured origin got the credentials, the other host none.
    let first = at_origin.lock().unwrap()[0].clone();
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(first.header("x-api-key"), Some(API_KEY));
    let landed = landed.lock().unwrap();
    assert_eq!(landed.len(), 1);
    assert_carries_nothing(&landed[0]);
}

/// One run, with basic auth, of a probe of `/old` on `origin`, which must be up.
async fn basic_auth_run(origin: &HttpServer) {
    let basic =
        "basic_auth:\n  username: probe\n  password: pw-5c1e0a9b7d3f\nfollow_redirects: true\n";
    let o = run_once(&format!(
        "name: api\nkind: http\nurl: {}\n{basic}",
        origin.url("127.0.0.1", "/old")
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn basic_auth_stays_with_its_origin_and_follows_a_same_origin_redirect() {
    let (landing, landed) = recorder().await;
    let (origin, at_origin) = redirector(None, "/new".into()).await;
    basic_auth_run(&origin).await;
    // Same origin: both requests authenticate.
    let reqs = at_origin.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.header("authorization").is_some()));

    // Another port of the same host is another origin.
    let (origin, _) = redirector(None, landing.url("127.0.0.1", "/landing")).await;
    basic_auth_run(&origin).await;
    let landed = landed.lock().unwrap();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].header("authorization"), None, "{:?}", landed[0]);
}

#[tokio::test]
async fn https_to_http_is_refused_unless_allowed_and_never_carries_credentials() {
    let ca = Ca::root("Redirect CA").unwrap();
    let identity = ca.leaf(&["localhost"], Validity::current()).unwrap();
    let scratch = Scratch::new().unwrap();
    scratch.ca(&ca).unwrap();
    let tls = format!(
        "tls:\n  ca_file: {}\n",
        scratch.path("Redirect_CA.pem").display()
    );
    let (landing, landed) = recorder().await;
    let plain = landing.url("localhost", "/landing");
    let (origin, _) = redirector(Some(&identity), plain.clone()).await;
    let probe = format!(
        "name: api\nkind: http\nurl: {}\n{}{tls}",
        origin.url("localhost", "/old"),
        credentials()
    );
    let o = run_once(&probe).await.unwrap();
    assert_eq!(o.error_type, Some(ErrorType::UnexpectedResponse), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Request));
    assert!(
        o.message.contains("redirects from https to plain http")
            && o.message.contains(&plain)
            && o.message.contains("follow_redirects_to_http: true"),
        "{}",
        o.message
    );
    assert!(landed.lock().unwrap().is_empty(), "nothing went in clear");

    let o = run_once(&format!("{probe}follow_redirects_to_http: true\n"))
        .await
        .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let landed = landed.lock().unwrap();
    assert_eq!(landed.len(), 1);
    assert_carries_nothing(&landed[0]);
}
