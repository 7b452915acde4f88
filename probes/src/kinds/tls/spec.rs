//! `kind: tls`: a TLS handshake with a server, reporting its certificate chain.

use serde::Deserialize;

use depprobe_config::{Check, Checked};
use depprobe_config::TlsSpec;

/// Settings of a `tls` probe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeSpec {
    /// `host:port` to connect to.
    pub address: String,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl TlsProbeSpec {
    /// The host and port of `address`.
    pub fn host_port(&self) -> Option<(String, u16)> {
        depprobe_config::split_host_port(&self.address)
    }
}

impl Checked for TlsProbeSpec {
    fn check(&self, check: &mut Check<'_>) {
        if self.host_port().is_none() {
            check.error(
                "address",
                format!(
                    "`{}` is not host:port (e.g. api.example.com:443)",
                    self.address
                ),
            );
        }
        check.tls(&self.tls);
    }
}

impl depprobe_config::KindSpec for TlsProbeSpec {}
