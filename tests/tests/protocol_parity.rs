//! Protocol parity (issue 23, item 4): where a protocol's reference client reads
//! an answer one way, the probe reads it the same way. Each case runs the real
//! client (curl, the mariadb client) beside depprobe on the same server.

use std::sync::Arc;
use tokio::process::Command;

use depprobe_probes::{ErrorType, Status};
use depprobe_tests::{Ca, Scratch, Validity, run_once};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTPS server (HTTP/1 only) that answers every request with `answer` and
/// then closes the TCP connection without TLS `close_notify`, as Python's
/// `http.server` over `ssl` and many appliances end an HTTP/1.0 body.
async fn closing_without_close_notify(ca: &Ca, answer: &'static str) -> u16 {
    let leaf = ca.leaf(&["localhost"], Validity::current()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key =
        rustls::sign::CertifiedKey::from_der(leaf.chain.clone(), leaf.key(), &provider).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.flush().await;
                // The TCP connection is dropped without a close_notify alert.
                let (tcp, _) = tls.into_inner();
                drop(tcp);
            });
        }
    });
    port
}

/// curl's HTTP status code for `url`, trusting `ca_file`; None when curl fails.
/// (Run beside the server's task, never blocking it.)
async fn curl_status(url: &str, ca_file: &std::path::Path) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(ca_file)
        .arg(url)
        .output()
        .await
        .unwrap();
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[tokio::test]
async fn a_close_delimited_body_without_close_notify_is_read_as_curl_reads_it() {
    let ca = Ca::root("Parity CA").unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&ca).unwrap();
    let ok = closing_without_close_notify(
        &ca,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall good",
    )
    .await;
    let denied = closing_without_close_notify(
        &ca,
        "HTTP/1.0 401 Unauthorized\r\nContent-Type: text/plain\r\n\r\nwho are you",
    )
    .await;
    let probe = |port: u16, expect: &str| {
        format!(
            "name: appliance\nkind: http\nurl: https://localhost:{port}/\ntimeout: 3s\ntls:\n  ca_file: {}\n{expect}",
            ca_file.display()
        )
    };

    let url = format!("https://localhost:{ok}/");
    assert_eq!(
        curl_status(&url, &ca_file).await,
        Some(200),
        "curl reads the answer"
    );
    let o = run_once(&probe(ok, "expect:\n  body_contains: all good\n"))
        .await
        .unwrap();
    assert_eq!(o.status, Status::Up, "{o:#?}");
    assert_eq!(o.http.as_ref().unwrap().status_code, 200);
    assert_eq!(o.details["tls_close_notify"], "missing", "{o:#?}");

    let url = format!("https://localhost:{denied}/");
    assert_eq!(
        curl_status(&url, &ca_file).await,
        Some(401),
        "curl reads the 401"
    );
    let o = run_once(&probe(denied, "")).await.unwrap();
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.http.as_ref().unwrap().status_code, 401, "{o:#?}");
    assert_ne!(o.error_type, Some(ErrorType::ConnectionReset), "{o:#?}");
}

/// A body announced by its length and cut by a close without `close_notify` is
/// still a truncated answer (curl: "transfer closed with N bytes remaining").
#[tokio::test]
async fn a_body_cut_short_without_close_notify_is_still_incomplete() {
    let ca = Ca::root("Parity CA").unwrap();
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&ca).unwrap();
    let port = closing_without_close_notify(
        &ca,
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it",
    )
    .await;
    let url = format!("https://localhost:{port}/");
    assert_eq!(curl_status(&url, &ca_file).await, None, "curl fails");
    let o = run_once(&format!(
        "name: cut\nkind: http\nurl: {url}\ntimeout: 3s\ntls:\n  ca_file: {}\n",
        ca_file.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Down, "{o:#?}");
}

/// A MariaDB server that refuses the client's host before its greeting (error
/// 1130, an ERR packet without SQL state): the mariadb client says
/// `ERROR 1130 ... is not allowed to connect` (with `--skip-ssl`, as the probe's
/// `ssl-mode=DISABLED`; with TLS asked for, it prints the same error as one it
/// cannot authenticate); the probe says `auth_rejected`.
#[tokio::test]
async fn a_host_refused_before_the_greeting_is_auth_rejected_as_the_client_says() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut payload = vec![0xff, 0x6a, 0x04];
            payload.extend_from_slice(
                b"Host '127.0.0.1' is not allowed to connect to this MariaDB server",
            );
            let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
            packet.push(0);
            packet.extend_from_slice(&payload);
            let _ = tcp.write_all(&packet).await;
        }
    });
    let client = Command::new("mariadb")
        .args([
            "--skip-ssl",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-u",
            "probe",
            "-e",
            "SELECT 1",
        ])
        .arg(format!("-P{port}"))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&client.stderr);
    assert!(!client.status.success(), "{said}");
    assert!(said.contains("ERROR 1130"), "{said}");

    let o = run_once(&format!(
        "name: db\nkind: mysql\nurl: mysql://probe@127.0.0.1:{port}/app?ssl-mode=DISABLED\npassword: not-sent\ntimeout: 3s\n"
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(ErrorType::AuthRejected), "{o:#?}");
    let message = &o.message;
    assert!(
        message.contains("1130") && message.contains("not allowed to connect"),
        "{message}"
    );
}

/// nginx with `ssl_verify_client on`, serving on `port` with `leaf`, trusting
/// `client_ca` for client certificates; stopped when dropped.
struct Nginx {
    child: std::process::Child,
    _scratch: Scratch,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nginx_requiring_client_certificates(server: &Ca, client_ca: &Ca) -> (Nginx, u16) {
    let scratch = Scratch::new().unwrap();
    let dir = scratch.path("");
    let leaf = server.leaf(&["localhost"], Validity::current()).unwrap();
    let (cert, key) = leaf.write(&dir, "nginx").unwrap();
    let client_ca_file = scratch.ca(client_ca).unwrap();
    let port = depprobe_tests::servers::free_port().unwrap();
    let d = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name localhost;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_client_certificate {};\n    ssl_verify_client on;\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
        cert.display(),
        key.display(),
        client_ca_file.display()
    );
    let conf = scratch.write("nginx.conf", &config).unwrap();
    let child = std::process::Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Nginx {
        child,
        _scratch: scratch,
    };
    // nginx has no readiness notification: ready once its port accepts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        tokio::task::yield_now().await;
    }
    (nginx, port)
}

/// nginx's answer to a client without a certificate, after a handshake that asked
/// for one: HTTP 400 "No required SSL certificate was sent". curl gets that 400;
/// the probe names the cause: `tls_client_cert_required` (before, `http_status`).
#[tokio::test]
async fn nginx_asking_for_a_client_certificate_is_tls_client_cert_required() {
    let server_ca = Ca::root("Parity Server CA").unwrap();
    let client_ca = Ca::root("Parity Client CA").unwrap();
    let (_nginx, port) = nginx_requiring_client_certificates(&server_ca, &client_ca).await;
    let scratch = Scratch::new().unwrap();
    let ca_file = scratch.ca(&server_ca).unwrap();
    let url = format!("https://localhost:{port}/");

    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&ca_file)
        .arg(&url)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.ends_with("\n400"), "{said}");
    assert!(
        said.contains("No required SSL certificate was sent"),
        "{said}"
    );

    let o = run_once(&format!(
        "name: mtls-api\nkind: http\nurl: {url}\ntimeout: 5s\ntls:\n  ca_file: {}\n",
        ca_file.display()
    ))
    .await
    .unwrap();
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(
        o.error_type,
        Some(ErrorType::TlsClientCertRequired),
        "{o:#?}"
    );
    assert!(o.message.contains("HTTP 400"), "{}", o.message);
}
