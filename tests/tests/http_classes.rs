//! The `http` probe against real local servers: statuses, token rejections, CDN
//! errors, body and header expectations, credentials read on every run.

use depprobe_probes::{ErrorType, Outcome, Phase, Status};
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity, Versions, run_once};

struct Site {
    server: HttpServer,
    ca_file: std::path::PathBuf,
    scratch: Scratch,
    ca: Ca,
}

async fn site(f: impl Fn(&depprobe_tests::Req) -> Reply + Send + Sync + 'static) -> Site {
    let ca = Ca::root("HTTP Test CA").unwrap();
    let leaf = ca.leaf(&["localhost"], Validity::current()).unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .respond(f)
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&ca).unwrap();
    Site {
        server,
        ca_file,
        scratch,
        ca,
    }
}

async fn probe(site: &Site, path: &str, extra: &str) -> Outcome {
    run_once(&format!(
        "name: api\nkind: http\nurl: {}\ntimeout: 3s\ntls:\n  ca_file: {}\n{extra}",
        site.server.url("localhost", path),
        site.ca_file.display()
    ))
    .await
    .unwrap()
}

fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

#[tokio::test]
async fn healthy_endpoint_is_up_over_http2_with_every_phase_timed() {
    let s = site(|_| Reply::ok("{\"status\":\"ok\"}")).await;
    let o = probe(&s, "/health", "expect:\n  body_contains: '\"ok\"'\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let http = o.http.as_ref().unwrap();
    assert_eq!(http.status_code, 200);
    assert_eq!(http.version, "HTTP/2.0");
    assert_eq!(o.tls.as_ref().unwrap().alpn.as_deref(), Some("h2"));
    for phase in [Phase::Dns, Phase::Connect, Phase::Tls, Phase::Request] {
        assert!(o.timings.get(phase).is_some(), "{phase} not timed");
    }
}

#[tokio::test]
async fn http11_is_used_when_alpn_offers_only_it() {
    let s = site(|_| Reply::ok("ok")).await;
    let o = probe(&s, "/", "  alpn: [\"http/1.1\"]\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.http.unwrap().version, "HTTP/1.1");
}

#[tokio::test]
async fn bearer_invalid_token_header_is_jwt_rejected() {
    let s = site(|_| {
        Reply::new(401, "").header(
            "www-authenticate",
            r#"Bearer realm="api", error="invalid_token""#,
        )
    })
    .await;
    let o = probe(&s, "/", "bearer_token: abc.def.ghi\n").await;
    assert_down(&o, ErrorType::JwtRejected, Phase::Request);
    assert!(!o.message.contains("abc.def.ghi"));
}

#[tokio::test]
async fn failed_to_validate_jwt_body_is_jwt_rejected() {
    let s = site(|_| Reply::new(401, r#"{"message":"Failed to validate JWT."}"#)).await;
    let o = probe(&s, "/", "").await;
    assert_down(&o, ErrorType::JwtRejected, Phase::Request);
    assert!(
        o.message.contains("Failed to validate JWT."),
        "{}",
        o.message
    );
    assert_eq!(o.http.unwrap().status_code, 401);
}

#[tokio::test]
async fn forbidden_is_auth_rejected() {
    let s = site(|_| Reply::new(403, "forbidden")).await;
    let o = probe(&s, "/", "").await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request);
}

#[tokio::test]
async fn cdn_526_is_upstream_tls_error() {
    let s = site(|_| Reply::new(526, "<html>Invalid SSL certificate</html>")).await;
    let o = probe(&s, "/", "").await;
    assert_down(&o, ErrorType::UpstreamTlsError, Phase::Request);
    assert!(o.message.contains("526"), "{}", o.message);
}

#[tokio::test]
async fn server_error_is_http_status() {
    let s = site(|_| Reply::new(500, "boom")).await;
    let o = probe(&s, "/", "").await;
    assert_down(&o, ErrorType::HttpStatus, Phase::Request);
    assert!(
        o.message
            .starts_with("HTTP 500 Internal Server Error: boom"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn body_mismatch_is_unexpected_response() {
    let s = site(|_| Reply::ok("{\"status\":\"degraded\"}")).await;
    let o = probe(&s, "/", "expect:\n  body_regex: '\"status\":\\s*\"ok\"'\n").await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
    assert!(o.message.contains("does not match"), "{}", o.message);
}

#[tokio::test]
async fn header_expectation_is_checked() {
    let s = site(|_| Reply::ok("ok").header("content-type", "text/html")).await;
    let o = probe(
        &s,
        "/",
        "expect:\n  headers:\n    content-type: ^application/json\n",
    )
    .await;
    assert_down(&o, ErrorType::UnexpectedResponse, Phase::Request);
}

#[tokio::test]
async fn expected_status_list_accepts_listed_codes() {
    let s = site(|_| Reply::new(204, "")).await;
    let o = probe(&s, "/", "expect:\n  status: [204]\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn token_file_is_read_on_every_run_and_its_absence_named() {
    let s = site(|req| match req.header("authorization") {
        Some("Bearer second-token") => Reply::ok("ok"),
        _ => Reply::new(401, r#"{"error":"invalid token"}"#),
    })
    .await;
    let token = s.scratch.path("token");
    let extra = format!("bearer_token_file: {}\n", token.display());

    let o = probe(&s, "/", &extra).await;
    assert_down(&o, ErrorType::CredentialMissing, Phase::Auth);
    assert_eq!(
        s.server.requests(),
        0,
        "no request is sent without the token"
    );

    std::fs::write(&token, "first-token\n").unwrap();
    let o = probe(&s, "/", &extra).await;
    assert_down(&o, ErrorType::JwtRejected, Phase::Request);

    std::fs::write(&token, "second-token\n").unwrap();
    let o = probe(&s, "/", &extra).await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
}

#[tokio::test]
async fn basic_auth_is_sent() {
    let s = site(|req| match req.header("authorization") {
        Some("Basic dXNlcjpwYXNz") => Reply::ok("ok"),
        _ => Reply::new(401, "who are you"),
    })
    .await;
    let o = probe(&s, "/", "basic_auth:\n  username: user\n  password: pass\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    let o = probe(
        &s,
        "/",
        "basic_auth:\n  username: user\n  password: wrong\n",
    )
    .await;
    assert_down(&o, ErrorType::AuthRejected, Phase::Request);
}

#[tokio::test]
async fn redirects_are_followed_only_when_asked() {
    let s = site(|req| {
        if req.path == "/old" {
            Reply::new(302, "").header("location", "/new")
        } else {
            Reply::ok("moved here")
        }
    })
    .await;
    let o = probe(&s, "/old", "").await;
    assert_down(&o, ErrorType::HttpStatus, Phase::Request);
    let o = probe(&s, "/old", "follow_redirects: true\n").await;
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.http.unwrap().redirects, 1);
}

#[tokio::test]
async fn plain_http_url_works_without_tls() {
    let server = HttpServer::builder()
        .respond(|_| Reply::ok("plain"))
        .start()
        .await
        .unwrap();
    let o = run_once(&format!(
        "name: p\nkind: http\nurl: {}\n",
        server.url("127.0.0.1", "/")
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert!(o.tls.is_none());
}

#[tokio::test]
async fn https_to_a_plaintext_server_is_tls_not_offered() {
    let server = HttpServer::builder()
        .respond(|_| Reply::ok("plain"))
        .start()
        .await
        .unwrap();
    let o = run_once(&format!(
        "name: p\nkind: http\nurl: https://127.0.0.1:{}/\n",
        server.port()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsNotOffered, Phase::Tls);
}

#[tokio::test]
async fn client_certificate_rejection_on_first_read_is_named() {
    let s = site(|_| Reply::ok("ok")).await;
    let client_ca = Ca::root("Client CA").unwrap();
    let leaf = s.ca.leaf(&["localhost"], Validity::current()).unwrap();
    let server = HttpServer::builder()
        .tls(&leaf)
        .versions(Versions::Tls13Only)
        .require_client_cert(&client_ca.cert)
        .start()
        .await
        .unwrap();
    let o = run_once(&format!(
        "name: m\nkind: http\nurl: {}\ntls:\n  ca_file: {}\n",
        server.url("localhost", "/"),
        s.ca_file.display()
    ))
    .await
    .unwrap();
    assert_down(&o, ErrorType::TlsClientCertRequired, Phase::Tls);
}
