//! Resolving a `postgres` probe's URL and fields into one [`PgTarget`]: libpq's
//! defaults, and an error for a setting given twice rather than a precedence rule.

use std::path::PathBuf;
use std::time::Duration;

use super::uri::{UrlParts, parse_url};
use super::{DEFAULT_PORT, PostgresSpec, SslCertMode, SslMode, SslNegotiation, TlsVersion};
use depprobe_config::TlsSpec;
use depprobe_config::{Secret, SecretSource};

/// Where the trusted CAs come from when `sslrootcert` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// Only the CAs of this PEM file.
    File(PathBuf),
    /// The system's roots (`sslrootcert=system`).
    System,
}

/// A `postgres` probe's settings once the URL and the fields are resolved.
#[derive(Clone, Debug)]
pub struct PgTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// Where the password comes from, if one is configured.
    pub password: Option<SecretSource>,
    /// The sslmode as written (default `verify-full`).
    pub sslmode: SslMode,
    /// `sslrootcert`.
    pub sslrootcert: Option<RootCert>,
    /// `sslcert`.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`.
    pub sslkey: Option<PathBuf>,
    /// `sslnegotiation`.
    pub sslnegotiation: SslNegotiation,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `application_name`.
    pub application_name: String,
    /// `hostaddr`: where to connect (`host` is then only the name verified).
    pub hostaddr: Option<String>,
    /// `sslcrl`.
    pub sslcrl: Option<PathBuf>,
    /// `sslcrldir`.
    pub sslcrldir: Option<PathBuf>,
    /// `sslcertmode`.
    pub sslcertmode: SslCertMode,
    /// `sslpassword`.
    pub sslpassword: Option<Secret>,
    /// `sslsni`.
    pub sslsni: bool,
    /// `ssl_min_protocol_version` / `ssl_max_protocol_version`.
    pub versions: TlsVersions,
}

/// The TLS versions libpq would offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsVersions {
    /// Lowest (libpq's default: TLSv1.2).
    pub min: TlsVersion,
    /// Highest (default: the newest).
    pub max: TlsVersion,
}

impl PgTarget {
    /// The mode in force: libpq's `require` with a root CA file behaves as `verify-ca`.
    pub fn effective_sslmode(&self) -> SslMode {
        match (self.sslmode, &self.sslrootcert) {
            (SslMode::Require, Some(RootCert::File(_))) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// A problem found while resolving: the key it belongs to, and what is wrong.
type KeyError = (&'static str, String);

/// One setting that may come from the URL or from a key: both is an error.
fn one_of<T>(
    errors: &mut Vec<KeyError>,
    key: &'static str,
    from_url: Option<T>,
    from_key: Option<T>,
) -> Option<T> {
    match (from_url, from_key) {
        (Some(u), Some(_)) => {
            errors.push((
                key,
                format!("`{key}` is also set in `url`; set it in one place"),
            ));
            Some(u)
        }
        (u, k) => u.or(k),
    }
}

impl PostgresSpec {
    /// What the URL says (nothing when there is no URL).
    fn url_parts(&self) -> Result<UrlParts, String> {
        match &self.url {
            Some(url) => parse_url(url.expose()),
            None => Ok(UrlParts::default()),
        }
    }

    /// Resolves the URL and the fields into one target, or every problem found.
    // Over 80 lines on purpose: one line per libpq setting (URL or key, never both),
    // in libpq's order; the checks across settings are in `check_tls_keys`.
    pub fn target(&self) -> Result<PgTarget, Vec<(&'static str, String)>> {
        let mut errors: Vec<KeyError> = Vec::new();
        let url = match self.url_parts() {
            Ok(parts) => parts,
            Err(e) => return Err(vec![("url", e)]),
        };
        let host = one_of(&mut errors, "host", url.host, self.host.clone());
        let port = one_of(&mut errors, "port", url.port, self.port).unwrap_or(DEFAULT_PORT);
        let user = one_of(&mut errors, "user", url.user, self.user.clone());
        let dbname = one_of(&mut errors, "dbname", url.dbname, self.dbname.clone());
        let sslmode = one_of(&mut errors, "sslmode", url.sslmode, self.sslmode)
            .unwrap_or(SslMode::VerifyFull);
        let sslrootcert = one_of(
            &mut errors,
            "sslrootcert",
            url.sslrootcert,
            self.sslrootcert.clone(),
        );
        let sslcert = one_of(&mut errors, "sslcert", url.sslcert, self.sslcert.clone());
        let sslkey = one_of(&mut errors, "sslkey", url.sslkey, self.sslkey.clone());
        let sslnegotiation = one_of(
            &mut errors,
            "sslnegotiation",
            url.sslnegotiation,
            self.sslnegotiation,
        )
        .unwrap_or_default();
        let connect_timeout = one_of(
            &mut errors,
            "connect_timeout",
            url.connect_timeout,
            self.connect_timeout.map(|d| Some(d.0)),
        )
        .flatten();
        let application_name = one_of(
            &mut errors,
            "application_name",
            url.application_name,
            self.application_name.clone(),
        )
        .unwrap_or_else(|| "depprobe".into());

        let password = self.password_source(url.password, &mut errors);
        let hostaddr = one_of(&mut errors, "hostaddr", url.hostaddr, self.hostaddr.clone());
        if let Some(a) = &hostaddr
            && crate::transport::tls::names::host_address(a).is_none()
        {
            errors.push((
                "hostaddr",
                format!("hostaddr `{a}` is not a numeric address (libpq: use `host` for a name)"),
            ));
        }
        let sslcrl = one_of(&mut errors, "sslcrl", url.sslcrl, self.sslcrl.clone());
        let sslcrldir = one_of(&mut errors, "sslcrldir", url.sslcrldir, self.sslcrldir.clone());
        let sslcertmode = one_of(&mut errors, "sslcertmode", url.sslcertmode, self.sslcertmode)
            .unwrap_or_default();
        let sslpassword = one_of(
            &mut errors,
            "sslpassword",
            url.sslpassword.map(Secret::new),
            self.sslpassword.clone(),
        );
        let sslsni = one_of(&mut errors, "sslsni", url.sslsni, self.sslsni).unwrap_or(true);
        let versions = TlsVersions {
            min: one_of(
                &mut errors,
                "ssl_min_protocol_version",
                url.ssl_min_protocol_version,
                self.ssl_min_protocol_version,
            )
            .unwrap_or(TlsVersion::Tls12),
            max: one_of(
                &mut errors,
                "ssl_max_protocol_version",
                url.ssl_max_protocol_version,
                self.ssl_max_protocol_version,
            )
            .unwrap_or(TlsVersion::Tls13),
        };
        if versions.max < TlsVersion::Tls12 {
            errors.push((
                "ssl_max_protocol_version",
                "depprobe speaks TLS 1.2 and 1.3 only: ssl_max_protocol_version must be TLSv1.2 or TLSv1.3".into(),
            ));
        } else if versions.min > versions.max {
            errors.push((
                "ssl_min_protocol_version",
                "ssl_min_protocol_version is above ssl_max_protocol_version".into(),
            ));
        }

        let Some(host) = host.filter(|h| !h.trim().is_empty()) else {
            errors.push((
                "",
                "set `url` (postgres://user@host:5432/db) or `host`".into(),
            ));
            return Err(errors);
        };
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            errors.push((
                "user",
                "set the role to log in as: in `url` (postgres://USER@host/db) or with `user`"
                    .into(),
            ));
            return Err(errors);
        };
        let sslrootcert = sslrootcert.map(|r| match r.as_str() {
            "system" => RootCert::System,
            _ => RootCert::File(PathBuf::from(r)),
        });

        self.check_tls_keys(
            &mut errors,
            sslmode,
            sslnegotiation,
            sslrootcert.as_ref(),
            (sslcert.is_some(), sslkey.is_some()),
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PgTarget {
            dbname: dbname.unwrap_or_else(|| user.clone()),
            host,
            port,
            user,
            password,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            sslnegotiation,
            connect_timeout,
            application_name,
            hostaddr,
            sslcrl,
            sslcrldir,
            sslcertmode,
            sslpassword,
            sslsni,
            versions,
        })
    }

    /// Where the password comes from: the URL, `password` or `password_file` (one
    /// place only).
    fn password_source(
        &self,
        in_url: Option<String>,
        errors: &mut Vec<KeyError>,
    ) -> Option<SecretSource> {
        match (in_url, &self.password, &self.password_file) {
            (Some(_), Some(_), _) => {
                errors.push((
                    "password",
                    "the URL already holds a password; set it in one place".into(),
                ));
                None
            }
            (Some(_), None, Some(_)) => {
                errors.push((
                    "password_file",
                    "the URL already holds a password; remove it from the URL to use `password_file`"
                        .into(),
                ));
                None
            }
            (Some(p), None, None) => Some(SecretSource::Value(Secret::new(p))),
            (None, p, f) => SecretSource::from_pair(p.clone(), f.clone()),
        }
    }

    /// The TLS keys that contradict each other or libpq's rules.
    fn check_tls_keys(
        &self,
        errors: &mut Vec<KeyError>,
        sslmode: SslMode,
        sslnegotiation: SslNegotiation,
        sslrootcert: Option<&RootCert>,
        (sslcert, sslkey): (bool, bool),
    ) {
        let ssl_key = if self.url.as_ref().is_some_and(|_| self.sslmode.is_none()) {
            "url"
        } else {
            "sslmode"
        };
        if sslnegotiation == SslNegotiation::Direct && !sslmode.needs_tls() {
            errors.push((
                ssl_key,
                format!(
                    "sslnegotiation=direct needs sslmode=require or stronger (sslmode={sslmode} could fall back to plaintext)"
                ),
            ));
        }
        if sslrootcert == Some(&RootCert::System) && sslmode != SslMode::VerifyFull {
            errors.push((
                ssl_key,
                format!(
                    "sslrootcert=system needs sslmode=verify-full (as libpq): sslmode={sslmode} would not check the name"
                ),
            ));
        }
        if sslcert != sslkey {
            // Reported where the half that is set was written.
            let key = if self.sslcert.is_some() {
                "sslcert"
            } else if self.sslkey.is_some() {
                "sslkey"
            } else {
                "url"
            };
            errors.push((
                key,
                "a client certificate needs both `sslcert` and `sslkey`".into(),
            ));
        }
        if sslrootcert.is_some() && self.tls.ca_file.is_some() {
            errors.push((
                "tls.ca_file",
                "set either `sslrootcert` (only these CAs) or `tls.ca_file` (added to the system roots), not both".into(),
            ));
        }
        if sslcert && self.tls.cert_file.is_some() {
            errors.push((
                "tls.cert_file",
                "set either `sslcert`/`sslkey` or `tls.cert_file`/`tls.key_file`, not both".into(),
            ));
        }
    }

    /// The TLS settings in force: `tls:` with `sslrootcert`, `sslcrl` and
    /// `sslcrldir` applied (`sslrootcert=FILE` trusts only that file, as libpq does).
    pub fn tls_spec(&self, target: &PgTarget) -> TlsSpec {
        let mut tls = self.tls.clone();
        match &target.sslrootcert {
            Some(RootCert::File(path)) => {
                tls.ca_file = Some(path.clone());
                tls.system_roots = false;
                // libpq loads CRLs only beside a root file, and ignores a CRL
                // file that does not exist.
                // X509_STORE_load_locations stops at a file it cannot load.
                let file_ok = target.sslcrl.as_ref().is_none_or(|p| p.is_file());
                if file_ok {
                    if target.sslcrl.is_some() {
                        tls.crl_file = target.sslcrl.clone();
                    }
                    if target.sslcrldir.is_some() {
                        tls.crl_dir = target.sslcrldir.clone();
                    }
                }
            }
            Some(RootCert::System) => tls.system_roots = true,
            None => {}
        }
        // `sslcert`/`sslkey` are loaded by the probe, as libpq reads them
        // (encrypted with `sslpassword`, DER, permissions checked).
        tls
    }
}
