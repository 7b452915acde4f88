//! Differential tests (issue 23, item 7): one matrix of server certificates, each
//! cell served by a real Redis and a real Mosquitto, judged by their own clients
//! (`redis-cli`, `mosquitto_pub`) and by depprobe on the same server. Every cell
//! asserts that the verdicts agree, and that both are the one written in the
//! table (so that a server that did not start cannot make them agree). Where a
//! client fails, depprobe's class is the one the table names for the cause.
//!
//! No SHA-1 or RSA-1024 cell: Debian's redis-server refuses to load such a
//! certificate (its OpenSSL's security level), so no such server exists here; those
//! are compared with curl in `tls_classes.rs`.
//!
//! The `smtp` kind is compared with `openssl s_client -starttls smtp` (OpenSSL's
//! verification with `X509_check_host`, as SMTP clients built on OpenSSL do: the
//! table's broker column) on one Postfix with a STARTTLS listener per cell.
//!
//! The `tls`/`http` kinds are compared with curl in `tls_classes.rs`, `postgres`
//! with psql in `pg_ssl_suite.rs`, `mysql` with the mariadb client in `mysql.rs`.

use std::path::PathBuf;

use depprobe_probes::{ErrorType, Outcome, Status};
use depprobe_tests::brokers::{Mosquitto, MosquittoOptions, Postfix};
use depprobe_tests::openssl_cli::{CliCa, self_signed_howto};
use depprobe_tests::{Ca, Identity, RedisServer, RedisSpec, Scratch, Validity, run_once};

/// One cell: a certificate, the CA file clients trust, the host they dial, and
/// the verdict each client reaches (`None`: up; else the class depprobe names).
struct Cell {
    name: &'static str,
    identity: Identity,
    ca: PathBuf,
    host: &'static str,
    redis: Option<ErrorType>,
    mqtt: Option<ErrorType>,
}

const SAN: &str = "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n";

fn cells(dir: &Scratch) -> Vec<Cell> {
    let cli = CliCa::new(&dir.path(""), "Diff Root CA").unwrap();
    let root = Ca::root("Diff rcgen Root").unwrap();
    let inter = root
        .intermediate("Diff Issuing CA", Validity::current())
        .unwrap();
    let chain_ca = dir.ca(&root).unwrap();
    let issue = |stem: &str, subj: &str, ext: Option<&str>| cli.issue(stem, subj, ext).unwrap();
    let leaf = |v: Validity| inter.leaf(&["localhost"], v).unwrap();
    let mut alone = leaf(Validity::current());
    alone.chain.truncate(1);
    let end = "-----END CERTIFICATE-----\n";
    alone.chain_pem = match alone.chain_pem.find(end) {
        Some(at) => alone.chain_pem[..at + end.len()].to_owned(),
        None => panic!("no PEM certificate"),
    };
    let stranger = Ca::root("Stranger Root")
        .unwrap()
        .leaf(&["localhost"], Validity::current())
        .unwrap();
    let howto =
        self_signed_howto(&dir.path(""), "howto", "localhost", Some("DNS:localhost")).unwrap();
    use ErrorType as E;
    let cell = |name, identity, ca: &PathBuf, host, redis, mqtt| Cell {
        name,
        identity,
        ca: ca.clone(),
        host,
        redis,
        mqtt,
    };
    vec![
        cell(
            "v3 with SAN",
            issue("san", "/CN=localhost", Some(SAN)),
            &cli.cert,
            "localhost",
            None,
            None,
        ),
        cell(
            "v3, CN only",
            issue("cn", "/CN=localhost", Some("basicConstraints=CA:FALSE\n")),
            &cli.cert,
            "localhost",
            None,
            None,
        ),
        cell(
            "v1 (x509 -req, no -extfile)",
            issue("v1", "/CN=localhost", None),
            &cli.cert,
            "localhost",
            None,
            None,
        ),
        cell(
            "SAN of another name",
            issue(
                "other",
                "/CN=other.example",
                Some("basicConstraints=CA:FALSE\nsubjectAltName=DNS:other.example\n"),
            ),
            &cli.cert,
            "localhost",
            None,
            Some(E::TlsHostnameMismatch),
        ),
        cell(
            "IP SAN, dialled by address",
            issue(
                "ip",
                "/CN=db",
                Some("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n"),
            ),
            &cli.cert,
            "127.0.0.1",
            None,
            None,
        ),
        cell(
            "CA:TRUE self-signed, its own anchor",
            howto,
            &dir.path("howto.crt"),
            "localhost",
            None,
            None,
        ),
        cell(
            "full chain",
            leaf(Validity::current()),
            &chain_ca,
            "localhost",
            None,
            None,
        ),
        cell(
            "expired leaf",
            leaf(Validity::expired()),
            &chain_ca,
            "localhost",
            Some(E::TlsCertExpired),
            Some(E::TlsCertExpired),
        ),
        cell(
            "leaf not yet valid",
            leaf(Validity::not_yet_valid()),
            &chain_ca,
            "localhost",
            Some(E::TlsCertNotYetValid),
            Some(E::TlsCertNotYetValid),
        ),
        cell(
            "intermediate not sent",
            alone,
            &chain_ca,
            "localhost",
            Some(E::TlsUnknownIssuer),
            Some(E::TlsUnknownIssuer),
        ),
        cell(
            "another CA",
            stranger,
            &chain_ca,
            "localhost",
            Some(E::TlsUnknownIssuer),
            Some(E::TlsUnknownIssuer),
        ),
    ]
}

/// A client's run: whether it worked, and what it printed.
async fn client(program: &str, args: &[String]) -> (bool, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && !text.contains("Could not connect"),
        text,
    )
}

fn verdict(o: &Outcome) -> Option<ErrorType> {
    match o.status {
        Status::Down => o.error_type,
        _ => None,
    }
}

#[tokio::test]
async fn redis_cli_and_mosquitto_pub_agree_with_the_probe_on_every_cell() {
    let dir = Scratch::new().unwrap();
    let mut disagreements = Vec::new();
    for c in cells(&dir) {
        let ca = c.ca.display().to_string();

        let redis = RedisServer::start(&RedisSpec {
            tls: Some(c.identity.clone()),
            ..Default::default()
        })
        .unwrap();
        let port = redis.port().to_string();
        let (cli_up, cli_text) = client(
            "redis-cli",
            &["--tls", "--cacert", &ca, "-h", c.host, "-p", &port, "PING"].map(String::from),
        )
        .await;
        let cli_up = cli_up && cli_text.contains("PONG");
        let o = run_once(&format!(
            "name: r\nkind: redis\nurl: rediss://{}:{port}\ntimeout: 5s\ntls:\n  ca_file: {ca}\n  system_roots: false\n",
            c.host
        ))
        .await
        .unwrap();
        let probe = verdict(&o);
        if cli_up != probe.is_none() || probe != c.redis || cli_up != c.redis.is_none() {
            disagreements.push(format!(
                "redis, {}: redis-cli {} ({}), depprobe {:?} ({}), table {:?}",
                c.name,
                if cli_up { "up" } else { "down" },
                cli_text.trim(),
                probe,
                o.message,
                c.redis
            ));
        }
        drop(redis);

        let broker = Mosquitto::start(&MosquittoOptions {
            identity: Some(c.identity.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        let port = broker.tls_port.to_string();
        let (pub_up, pub_text) = client(
            "mosquitto_pub",
            &[
                "-h",
                c.host,
                "-p",
                &port,
                "--cafile",
                &ca,
                "-t",
                "depprobe/diff",
                "-m",
                "x",
            ]
            .map(String::from),
        )
        .await;
        let o = run_once(&format!(
            "name: m\nkind: mqtt\nurl: mqtts://{}:{port}\ntimeout: 5s\ntls:\n  ca_file: {ca}\n  system_roots: false\n",
            c.host
        ))
        .await
        .unwrap();
        let probe = verdict(&o);
        if pub_up != probe.is_none() || probe != c.mqtt || pub_up != c.mqtt.is_none() {
            disagreements.push(format!(
                "mqtt, {}: mosquitto_pub {} ({}), depprobe {:?} ({}), table {:?}",
                c.name,
                if pub_up { "up" } else { "down" },
                pub_text.trim(),
                probe,
                o.message,
                c.mqtt
            ));
        }
        if !pub_up {
            assert!(pub_text.contains("TLS error"), "{}: {pub_text}", c.name);
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// `openssl s_client -starttls smtp` beside the `smtp` kind on every cell, all
/// served by one Postfix (a STARTTLS listener per cell). The verdict the table
/// names is the broker column's: both clients judge with OpenSSL and
/// `X509_check_host`.
#[tokio::test]
async fn openssl_s_client_starttls_smtp_agrees_with_the_probe_on_every_cell() {
    let dir = Scratch::new().unwrap();
    let cells = cells(&dir);
    let identities: Vec<Identity> = cells.iter().map(|c| c.identity.clone()).collect();
    let postfix = Postfix::start_presenting(&identities).await.unwrap();
    let mut disagreements = Vec::new();
    for (c, port) in cells.iter().zip(&postfix.extra_ports) {
        let ca = c.ca.display().to_string();
        let by_address = c.host.parse::<std::net::IpAddr>().is_ok();
        let mut args: Vec<String> = [
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-starttls",
            "smtp",
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-brief",
        ]
        .map(String::from)
        .to_vec();
        if by_address {
            args.extend(["-verify_ip".into(), c.host.into()]);
        } else {
            args.extend([
                "-servername".into(),
                c.host.into(),
                "-verify_hostname".into(),
                c.host.into(),
            ]);
        }
        let (s_client_up, text) = client("openssl", &args).await;
        let o = run_once(&format!(
            "name: s\nkind: smtp\nurl: smtp://{}:{port}\ntimeout: 10s\ntls:\n  ca_file: {ca}\n  system_roots: false\n",
            c.host
        ))
        .await
        .unwrap();
        let probe = verdict(&o);
        if s_client_up != probe.is_none() || probe != c.mqtt || s_client_up != c.mqtt.is_none() {
            disagreements.push(format!(
                "smtp, {}: s_client {} ({}), depprobe {:?} ({}), table {:?}",
                c.name,
                if s_client_up { "up" } else { "down" },
                text.trim(),
                probe,
                o.message,
                c.mqtt
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{}\n{}",
        disagreements.join("\n"),
        postfix.log_tail()
    );
}
