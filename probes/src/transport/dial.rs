//! The one dialer: an IP literal as is, a name through DNS, then TCP connect the
//! way a modern client does it (Happy Eyeballs, RFC 8305).
//!
//! Attempts start one after another, [`ATTEMPT_DELAY`] apart, alternating address
//! families, and race: the first connection wins and the others are dropped. An
//! attempt that has not connected within [`ATTEMPT_TIMEOUT`] gives way to the next
//! address at once (the last one runs until the run's deadline), so one
//! black-holed address never spends the whole deadline. When every address fails,
//! the message names each address and why.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;

use super::{Dns, classify_connect};
use crate::run::{ProbeError, Run};
use crate::taxonomy::{ErrorType, Phase};

/// Time between the start of two connection attempts (RFC 8305's "Connection
/// Attempt Delay", recommended 250 ms).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How long one address may stay silent before it counts as failed, when another
/// address is left to try.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The address of `host` when it is an IP literal (`10.0.0.1`, `::1`, `[::1]`).
pub fn literal(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| vec![SocketAddr::new(ip, port)])
}

/// Resolves `host` (phase `dns`, skipped for an IP literal) and connects to it
/// (phase `connect`).
pub async fn dial(
    run: &mut Run<'_>,
    dns: &Dns,
    host: &str,
    port: u16,
) -> Result<TcpStream, ProbeError> {
    let addrs = match literal(host, port) {
        Some(addrs) => addrs,
        None => run.phase(Phase::Dns, dns.resolve(host, port)).await?,
    };
    run.phase(Phase::Connect, connect(&addrs)).await
}

/// Connects to the first of `addrs` that accepts (Happy Eyeballs); when none does,
/// the error is the first address's class, and the message names every address.
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, ProbeError> {
    let order = interleave(addrs);
    let mut failures: Vec<(SocketAddr, std::io::Error)> = Vec::new();
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    loop {
        if next < order.len() {
            let addr = order[next];
            next += 1;
            let last = next == order.len();
            running.push(attempt(addr, last));
        }
        if running.is_empty() {
            break;
        }
        let more = next < order.len();
        tokio::select! {
            Some((addr, result)) = running.next() => match result {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => failures.push((addr, e)),
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if more => {}
        }
    }
    failures.sort_by_key(|(addr, _)| order.iter().position(|a| a == addr));
    Err(all_failed(failures))
}

/// One attempt; unless it is the `last` address, it gives up after
/// [`ATTEMPT_TIMEOUT`].
async fn attempt(addr: SocketAddr, last: bool) -> (SocketAddr, std::io::Result<TcpStream>) {
    let connecting = TcpStream::connect(addr);
    let result = if last {
        connecting.await
    } else {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, connecting).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    };
    (addr, result)
}

/// The addresses in their order, alternating families from the first one's.
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first.is_ipv6());
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while let Some(a) = same.pop() {
        out.push(a);
        if let Some(b) = other.pop() {
            out.push(b);
        }
    }
    out.extend(other.into_iter().rev());
    out
}

/// The error when every address failed (in the order they were tried): the first
/// one's class and message, then the others'.
fn all_failed(failures: Vec<(SocketAddr, std::io::Error)>) -> ProbeError {
    let mut errors = failures.iter().map(|(addr, e)| classify_connect(*addr, e));
    let Some(mut first) = errors.next() else {
        return ProbeError::new(
            ErrorType::DnsNotFound,
            Phase::Dns,
            "no address to connect to",
        );
    };
    let others: Vec<String> = errors.map(|e| e.message).collect();
    if !others.is_empty() {
        first.message = format!("{}; also: {}", first.message, others.join("; "));
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_from_the_first() {
        let order = interleave(&[
            a("10.0.0.1:1"),
            a("10.0.0.2:1"),
            a("[::1]:1"),
            a("[::2]:1"),
            a("[::3]:1"),
        ]);
        assert_eq!(
            order,
            vec![
                a("10.0.0.1:1"),
                a("[::1]:1"),
                a("10.0.0.2:1"),
                a("[::2]:1"),
                a("[::3]:1")
            ]
        );
    }

    #[test]
    fn literals_skip_dns() {
        assert_eq!(literal("[::1]", 5), Some(vec![a("[::1]:5")]));
        assert_eq!(literal("127.0.0.1", 5), Some(vec![a("127.0.0.1:5")]));
        assert_eq!(literal("localhost", 5), None);
    }

    #[tokio::test]
    async fn every_failed_address_is_named() {
        let closed = |_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let addrs: Vec<SocketAddr> = (0..2).map(closed).collect();
        let e = connect(&addrs).await.unwrap_err();
        assert_eq!(e.class, ErrorType::ConnectRefused);
        for addr in &addrs {
            assert!(e.message.contains(&addr.to_string()), "{}", e.message);
        }
    }

    /// A listener with a full accept queue: the kernel drops further SYNs, so a
    /// connect to it hangs, as to a black-holed address, without leaving loopback.
    async fn black_hole() -> (SocketAddr, Vec<TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(a("127.0.0.1:0")).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        // Fill the queue (never accepted); stop at the first attempt that hangs.
        for _ in 0..4 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => held.push(s),
                _ => break,
            }
        }
        std::mem::forget(listener);
        (addr, held)
    }

    #[tokio::test]
    async fn a_black_holed_address_gives_way_to_the_next() {
        let (hole, _held) = black_hole().await;
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        // Bounded so that the old sequential dialer fails instead of hanging.
        let stream = tokio::time::timeout(Duration::from_secs(20), connect(&[hole, good_addr]))
            .await
            .expect("the dialer hung on the black-holed address")
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
    }

    #[tokio::test]
    async fn a_black_holed_address_is_named_when_all_fail() {
        let (hole, _held) = black_hole().await;
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = connect(&[hole, refused]).await.unwrap_err();
        assert_eq!(e.class, ErrorType::ConnectTimeout, "{}", e.message);
        assert!(e.message.contains(&hole.to_string()), "{}", e.message);
        assert!(e.message.contains(&refused.to_string()), "{}", e.message);
    }
}
