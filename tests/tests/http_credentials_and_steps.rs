//! The `http` probe checks its bearer token before sending it, and can run a short
//! sequence of requests: a synthetic write, then a read that must see it.

use std::sync::{Arc, Mutex};

use depprobe_probes::{ErrorType, FindingType, Phase, Status};
use depprobe_tests::harness::{jwt, unix_in};
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity, run_once};

async fn https(
    f: impl Fn(&depprobe_tests::Req) -> Reply + Send + Sync + 'static,
) -> (HttpServer, Scratch) {
    let ca = Ca::root("Steps CA").unwrap();
    let server = HttpServer::builder()
        .tls(&ca.leaf(&["localhost"], Validity::current()).unwrap())
        .respond(f)
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new().unwrap();
    scratch.ca(&ca).unwrap();
    (server, scratch)
}

fn ca_line(s: &Scratch) -> String {
    format!("tls:\n  ca_file: {}\n", s.path("Steps_CA.pem").display())
}

#[tokio::test]
async fn expired_bearer_jwt_is_credential_expired_and_not_sent() {
    let (server, s) = https(|_| Reply::new(401, r#"{"message":"Failed to validate JWT."}"#)).await;
    let token = s
        .write("token", &jwt(&format!(r#"{{"exp":{}}}"#, unix_in(-600))))
        .unwrap();
    let o = run_once(&format!(
        "name: api\nkind: http\nurl: {}\nbearer_token_file: {}\n{}",
        server.url("localhost", "/"),
        token.display(),
        ca_line(&s)
    ))
    .await
    .unwrap();
    assert_eq!(o.error_type, Some(ErrorType::CredentialExpired), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Auth));
    assert!(
        o.message
            .contains("the bearer token (a JWT) expired 10 minutes ago"),
        "{}",
        o.message
    );
    assert_eq!(server.requests(), 0, "an expired token is not sent");
}

#[tokio::test]
async fn bearer_jwt_near_expiry_is_a_finding_on_a_working_target() {
    let (server, s) = https(|_| Reply::ok("ok")).await;
    let token = s
        .write(
            "token",
            &jwt(&format!(r#"{{"exp":{}}}"#, unix_in(2 * 86_400))),
        )
        .unwrap();
    let o = run_once(&format!(
        "name: api\nkind: http\nurl: {}\nbearer_token_file: {}\n{}",
        server.url("localhost", "/"),
        token.display(),
        ca_line(&s)
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Degraded, "{o:#?}");
    assert_eq!(o.findings[0].kind, FindingType::CREDENTIAL_EXPIRING);
    assert!(o.details["credential_not_after"].as_f64().is_some());
}

/// A tiny time-series API: `POST /write` stores the body, `GET /query?q=X` answers
/// with the stored lines containing X. `lose_writes` makes it accept and forget.
fn store(
    lose_writes: Arc<Mutex<bool>>,
) -> impl Fn(&depprobe_tests::Req) -> Reply + Send + Sync + 'static {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    move |req| {
        if req.header("authorization") != Some("Token write-read-token") {
            return Reply::new(401, "unauthorized");
        }
        if req.method == "POST" && req.path.starts_with("/write") {
            if req.header("content-type") != Some("text/plain; charset=utf-8") {
                return Reply::new(415, "line protocol expected");
            }
            if !*lose_writes.lock().unwrap() {
                lines
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&req.body).into_owned());
            }
            return Reply::new(204, "");
        }
        if req.method == "GET" && req.path.starts_with("/query?q=") {
            let q = &req.path["/query?q=".len()..];
            let found: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(q))
                .cloned()
                .collect();
            return Reply::ok(found.join("\n"));
        }
        Reply::new(404, "no such endpoint")
    }
}

fn write_then_read(server: &HttpServer, s: &Scratch) -> String {
    format!(
        "name: write-path\nkind: http\nurl: {}\nmethod: POST\nheaders:\n  authorization: Token write-read-token\n  content-type: text/plain; charset=utf-8\nbody: \"probe,run={{{{run_id}}}} value=1 {{{{timestamp_ns}}}}\"\nexpect:\n  status: [204]\nsteps:\n  - url: /query?q={{{{run_id}}}}\n    method: GET\n    headers:\n      content-type: application/json\n    expect:\n      body_contains: \"run={{{{run_id}}}}\"\n{}",
        server.url("localhost", "/write"),
        ca_line(s)
    )
}

#[tokio::test]
async fn a_write_then_a_read_that_sees_it_is_up() {
    let lose = Arc::new(Mutex::new(false));
    let (server, s) = https(store(lose.clone())).await;
    let o = run_once(&write_then_read(&server, &s)).await.unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.details["steps"], 2);
    assert_eq!(server.requests(), 2);
    assert!(o.message.starts_with("2 requests OK"), "{}", o.message);
}

#[tokio::test]
async fn a_write_the_read_does_not_see_names_the_failing_step() {
    let lose = Arc::new(Mutex::new(true));
    let (server, s) = https(store(lose.clone())).await;
    let o = run_once(&write_then_read(&server, &s)).await.unwrap();
    assert_eq!(o.error_type, Some(ErrorType::UnexpectedResponse), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Request));
    assert!(o.message.starts_with("step 2/2 (GET /query?q={{run_id}}): HTTP 200, but the body does not contain \"run=depprobe-"), "{}", o.message);
    // The write itself refused: the first step is named.
    *lose.lock().unwrap() = false;
    let o =
        run_once(&write_then_read(&server, &s).replace("Token write-read-token", "Token wrong"))
            .await
            .unwrap();
    assert_eq!(o.error_type, Some(ErrorType::AuthRejected), "{o:#?}");
    assert!(o.message.starts_with("step 1/2 (POST "), "{}", o.message);
}

#[tokio::test]
async fn a_fifo_token_file_is_credential_invalid_and_nothing_waits_on_it() {
    let (server, s) = https(|_| Reply::ok("ok")).await;
    let fifo = s.path("token.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let o = run_once(&format!(
        "name: api\nkind: http\nurl: {}\nbearer_token_file: {}\n{}",
        server.url("localhost", "/"),
        fifo.display(),
        ca_line(&s)
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(ErrorType::CredentialInvalid), "{o:#?}");
    assert_eq!(o.phase, Some(Phase::Auth));
    assert!(o.message.contains("not a regular file"), "{}", o.message);
    assert_eq!(server.requests(), 0);
}
