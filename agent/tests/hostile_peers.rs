//! The standing adversarial suite (issue 24, item 7): each hostile dependency
//! beside a healthy probe, under the real agent. For each, the agent stays alive,
//! `/healthz` answers within 1 s, the healthy probe keeps its schedule, the agent's
//! RSS stays under [`RSS_BOUND_KIB`], and the hostile probe gets the class the
//! README's parser inventory documents for it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::{FAST_AGENT, World, entry, wait_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(60);

/// The RSS the agent stays under with a few probes, hostile or not (the README's
/// parser inventory): a debug build idles near 30 MiB.
const RSS_BOUND_KIB: u64 = 96 * 1024;

/// A loopback peer that answers each connection's first bytes with what `reply`
/// writes, then reads until the client hangs up.
async fn peer<F, Fut>(reply: F) -> u16
where
    F: Fn(tokio::net::tcp::OwnedWriteHalf) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve(false, reply).await
}

/// A loopback peer that speaks first (a greeting), with what `reply` writes, and
/// reads until the client hangs up.
async fn greeter<F, Fut>(reply: F) -> u16
where
    F: Fn(tokio::net::tcp::OwnedWriteHalf) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve(true, reply).await
}

async fn serve<F, Fut>(first: bool, reply: F) -> u16
where
    F: Fn(tokio::net::tcp::OwnedWriteHalf) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let (mut rd, wr) = conn.into_split();
                let mut request = [0u8; 512];
                if !first && rd.read(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                let writing = tokio::spawn(reply(wr));
                let mut sink = [0u8; 4096];
                while rd.read(&mut sink).await.unwrap_or(0) > 0 {}
                writing.abort();
            });
        }
    });
    port
}

/// A Connection.Start frame whose server-properties nest `depth` tables.
fn deep_amqp_start(depth: usize) -> Vec<u8> {
    let mut table: Vec<u8> = 0u32.to_be_bytes().to_vec();
    for _ in 1..depth {
        let mut entry = vec![1, b'a', b'F'];
        entry.extend_from_slice(&table);
        let mut next = (entry.len() as u32).to_be_bytes().to_vec();
        next.extend_from_slice(&entry);
        table = next;
    }
    let mut payload = vec![0, 10, 0, 10, 0, 9];
    payload.extend_from_slice(&table);
    for text in [&b"PLAIN"[..], b"en_US"] {
        payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
        payload.extend_from_slice(text);
    }
    let mut frame = vec![1, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    frame
}

/// Runs the agent of `world` with its healthy probe and `hostile` (a YAML list entry named
/// `hostile`), and checks what every hostile case must show; the hostile entry in
/// `/status` once it has run three times.
async fn beside_a_healthy_probe(world: &World, case: &str, hostile: &str) -> serde_json::Value {
    let text = format!(
        "{FAST_AGENT}defaults:\n  tls:\n    ca_file: {}\n{}{hostile}",
        world.ca_file.display(),
        world.probes()
    );
    let config = world.scratch.write(&format!("{case}.yaml"), &text).unwrap();
    let mut agent = world.start(&config, &format!("{case}.log")).await;
    let runs = |s: &serde_json::Value, name: &str| {
        entry(s, name).and_then(|e| e["runs"].as_u64()).unwrap_or(0)
    };
    let first = wait_status(&agent, WAIT, |s| runs(s, "hostile") >= 1).await;
    let healthy_before = runs(&first, "healthy-api");
    let last = wait_status(&agent, WAIT, |s| {
        runs(s, "hostile") >= 3 && runs(s, "healthy-api") >= healthy_before + 3
    })
    .await;
    let healthy = entry(&last, "healthy-api").unwrap();
    assert_eq!(healthy["status"], "up", "{case}: {healthy}");
    let (code, body) = tokio::time::timeout(Duration::from_secs(1), agent.get("/healthz"))
        .await
        .unwrap_or_else(|_| panic!("{case}: /healthz did not answer within 1 s"))
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"), "{case}");
    let rss = agent.rss_kib().expect("the agent's RSS");
    assert!(
        rss < RSS_BOUND_KIB,
        "{case}: RSS {rss} KiB, over the bound of {RSS_BOUND_KIB} KiB"
    );
    agent.signal("TERM").unwrap();
    assert_eq!(
        agent.wait_exit(WAIT).await,
        Some(0),
        "{case}: {}",
        agent.log_text()
    );
    entry(&last, "hostile").unwrap().clone()
}

/// A broker whose `Connection.Start` nests 9,000 field tables (63 KB, inside the
/// 64 KiB frame cap): the recursive parser used to overflow the stack and abort the
/// whole agent (SIGABRT). Now the depth is measured first: 32 levels at most.
#[tokio::test]
async fn an_amqp_start_nesting_9000_tables_is_unexpected_response() {
    let frame = deep_amqp_start(9_000);
    assert!(frame.len() < 64 * 1024, "{}", frame.len());
    let port = peer(move |mut wr| {
        let frame = frame.clone();
        async move {
            let _ = wr.write_all(&frame).await;
        }
    })
    .await;
    let hostile = format!(
        "  - name: hostile\n    kind: amqp\n    url: amqp://guest:guest@127.0.0.1:{port}/\n"
    );
    let e = beside_a_healthy_probe(&World::new().await, "amqp-deep", &hostile).await;
    assert_eq!(e["status"], "down", "{e}");
    assert_eq!(e["error_type"], "unexpected_response", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("more than 32 deep"), "{message}");
}

/// An `OP_MSG` reply whose body document nests `depth` documents, built as bytes.
fn deep_op_msg(depth: usize) -> Vec<u8> {
    let mut doc = vec![5u8, 0, 0, 0, 0];
    for _ in 0..depth {
        let mut outer = ((doc.len() + 8) as i32).to_le_bytes().to_vec();
        outer.extend_from_slice(&[3, b'd', 0]);
        outer.extend_from_slice(&doc);
        outer.push(0);
        doc = outer;
    }
    let mut m = ((16 + 5 + doc.len()) as i32).to_le_bytes().to_vec();
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&2013i32.to_le_bytes());
    m.extend_from_slice(&[0; 5]);
    m.extend_from_slice(&doc);
    m
}

/// A MongoDB server whose `hello` reply nests 10,000 documents (80 KB): the
/// driver's recursive BSON decoding used to overflow the stack and abort the whole
/// agent. Now the driver's connections go through the probe's relay, which measures
/// each reply's depth first (100 at most) and refuses this one.
#[tokio::test]
async fn a_mongodb_hello_nesting_10000_documents_is_unexpected_response() {
    let reply = deep_op_msg(10_000);
    assert!(
        reply.len() > 80_000 && reply.len() < 1 << 20,
        "{}",
        reply.len()
    );
    let port = peer(move |mut wr| {
        let reply = reply.clone();
        async move {
            let _ = wr.write_all(&reply).await;
        }
    })
    .await;
    let hostile = format!(
        "  - name: hostile\n    kind: mongodb\n    url: mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300\n"
    );
    let e = beside_a_healthy_probe(&World::new().await, "mongodb-deep", &hostile).await;
    assert_eq!(e["status"], "down", "{e}");
    assert_eq!(e["error_type"], "unexpected_response", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("more than 100 deep"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

/// A PostgreSQL server that answers the startup with a message announced as 2 GiB
/// and streams it: tokio-postgres used to buffer it as it arrived (RSS 15 -> 272 MB
/// in one run). Now the header is refused: 1 MiB per message at most.
#[tokio::test]
async fn a_postgres_message_announced_as_2_gib_is_refused_at_its_header() {
    let port = peer(|mut wr| async move {
        let mut header = vec![b'R'];
        header.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        if wr.write_all(&header).await.is_err() {
            return;
        }
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..4096 {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
    let hostile = format!(
        "  - name: hostile\n    kind: postgres\n    url: postgres://probe@127.0.0.1:{port}/app?sslmode=disable\n    password: not-asked\n"
    );
    let e = beside_a_healthy_probe(&World::new().await, "pg-huge", &hostile).await;
    assert_eq!(e["status"], "down", "{e}");
    assert_eq!(e["error_type"], "unexpected_response", "{e}");
    assert_eq!(e["phase"], "auth", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("2147483647 bytes") && message.contains("at most 1 MiB"),
        "{message}"
    );
}

/// An HTTPS server that agrees to HTTP/2 and then sends a SETTINGS frame of 5
/// bytes (a SETTINGS payload is a multiple of 6): a protocol violation, which is
/// `unexpected_response`, not a reset connection.
#[tokio::test]
async fn an_http2_protocol_violation_is_unexpected_response() {
    let world = World::new().await;
    let leaf = world
        .ca
        .leaf(&["localhost"], depprobe_tests::Validity::current())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key =
        rustls::sign::CertifiedKey::from_der(leaf.chain.clone(), leaf.key(), &provider).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(rustls::sign::SingleCertAndKey::from(
            key,
        )));
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(conn).await else {
                    return;
                };
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let _ = s
                    .write_all(&[0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
                    .await;
                let mut sink = [0u8; 4096];
                while s.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let hostile =
        format!("  - name: hostile\n    kind: http\n    url: https://localhost:{port}/\n");
    let e = beside_a_healthy_probe(&world, "h2-violation", &hostile).await;
    assert_eq!(e["status"], "down", "{e}");
    assert_eq!(e["error_type"], "unexpected_response", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("broke the HTTP/2 protocol"), "{message}");
}

/// Writes `chunk` `times` times (a stream without end, as far as a probe goes).
async fn endless(mut wr: tokio::net::tcp::OwnedWriteHalf, head: &[u8], chunk: &[u8], times: usize) {
    if wr.write_all(head).await.is_err() {
        return;
    }
    for _ in 0..times {
        if wr.write_all(chunk).await.is_err() {
            return;
        }
    }
}

/// The earlier hostile peers that hold, kept in the standing suite: each is
/// refused as `unexpected_response` with its bound in the message.
#[tokio::test]
async fn earlier_hostile_peers_stay_refused() {
    let world = World::new().await;
    // Redis: 100,000 nested arrays (the reader's depth pre-scan stops at 8).
    let redis = peer(|wr| endless(wr, b"", b"*1\r\n", 100_000)).await;
    // NATS and SMTP: a greeting line that never ends.
    let nats = greeter(|wr| endless(wr, b"INFO {", &[b'x'; 4096], 4096)).await;
    let smtp = greeter(|wr| endless(wr, b"220 ", &[b'x'; 4096], 4096)).await;
    // MQTT: a CONNACK whose remaining length announces 256 MB.
    let mqtt = peer(|wr| endless(wr, &[0x20, 0xFF, 0xFF, 0xFF, 0x7F], &[0; 4096], 4096)).await;
    let hostile = format!(
        "  - name: hostile\n    kind: redis\n    url: redis://127.0.0.1:{redis}\n\
         \x20 - name: hostile-nats\n    kind: nats\n    url: nats://127.0.0.1:{nats}\n\
         \x20 - name: hostile-smtp\n    kind: smtp\n    url: smtp://127.0.0.1:{smtp}\n    starttls: disabled\n\
         \x20 - name: hostile-mqtt\n    kind: mqtt\n    url: mqtt://127.0.0.1:{mqtt}\n"
    );
    let text = format!(
        "{FAST_AGENT}defaults:\n  tls:\n    ca_file: {}\n{}{hostile}",
        world.ca_file.display(),
        world.probes()
    );
    let config = world.scratch.write("earlier.yaml", &text).unwrap();
    let agent = world.start(&config, "earlier.log").await;
    let names = ["hostile", "hostile-nats", "hostile-smtp", "hostile-mqtt"];
    let all_ran = |s: &serde_json::Value| {
        names.iter().all(|n| {
            entry(s, n)
                .and_then(|e| e["runs"].as_u64())
                .is_some_and(|r| r >= 2)
        })
    };
    let s = wait_status(&agent, WAIT, all_ran).await;
    for name in names {
        let e = entry(&s, name).unwrap();
        assert_eq!(e["status"], "down", "{name}: {e}");
        assert_eq!(e["error_type"], "unexpected_response", "{name}: {e}");
    }
    assert_eq!(entry(&s, "healthy-api").unwrap()["status"], "up");
    let rss = agent.rss_kib().expect("the agent's RSS");
    assert!(rss < RSS_BOUND_KIB, "RSS {rss} KiB");
}

/// A gRPC server (cleartext HTTP/2) whose answer to the health check announces a
/// message of 4 GiB - 1 in its length prefix and then streams zeros: tonic's
/// decoder refuses a message over its 4 MiB limit at the prefix, before buffering,
/// and the probe names it `unexpected_response`.
#[tokio::test]
async fn a_grpc_message_announced_as_4_gib_is_refused_at_its_prefix() {
    use futures::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let prefix = bytes::Bytes::from_static(&[0, 0xFF, 0xFF, 0xFF, 0xFF]);
                    let zeros = bytes::Bytes::from(vec![0u8; 16 * 1024]);
                    let frames = futures::stream::iter(
                        std::iter::once(prefix).chain(std::iter::repeat_n(zeros, 64 * 1024)),
                    )
                    .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
                    let response = hyper::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(StreamBody::new(frames))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                        .await;
            });
        }
    });
    let hostile = format!("  - name: hostile\n    kind: grpc\n    url: http://127.0.0.1:{port}\n");
    let e = beside_a_healthy_probe(&World::new().await, "grpc-4gib", &hostile).await;
    assert_eq!(e["status"], "down", "{e}");
    assert_eq!(e["error_type"], "unexpected_response", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("4294967295"), "{message}");
}
