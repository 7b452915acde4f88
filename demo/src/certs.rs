//! A certificate factory: CAs, intermediates and leaves with any validity window,
//! generated fresh for each case (rcgen, ECDSA P-256).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A certificate's validity window.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From `from` days to `to` days relative to now (negative is the past).
    pub fn days(from: i64, to: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now + Duration::days(from),
            not_after: now + Duration::days(to),
        }
    }

    /// Issued 30 days ago, valid for 90 more.
    pub fn current() -> Validity {
        Validity::days(-30, 90)
    }

    /// Expired yesterday.
    pub fn expired() -> Validity {
        Validity::days(-90, -1)
    }

    /// Valid from tomorrow.
    pub fn not_yet_valid() -> Validity {
        Validity::days(1, 90)
    }

    /// Issued 80 days ago, expiring `days` days (plus one hour, so that rounding
    /// does not move it) from now.
    pub fn expiring_in(days: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::days(80),
            not_after: now + Duration::days(days) + Duration::hours(1),
        }
    }
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An OCSP structure could not be made.
    #[error("OCSP: {0}")]
    Ocsp(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate authority (root or intermediate) that can issue certificates.
pub struct Ca {
    /// Its common name.
    pub name: String,
    /// Its certificate.
    pub cert: CertificateDer<'static>,
    /// Its certificate in PEM.
    pub pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    /// The intermediates between this CA and its root, this one first (empty for a root).
    pub(crate) above: Vec<CertificateDer<'static>>,
}

/// A certificate with its key and the chain a server would present.
#[derive(Clone)]
pub struct Identity {
    /// Leaf first, then the intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's PKCS#8 private key.
    pub key_der: Vec<u8>,
    /// The chain in PEM.
    pub chain_pem: String,
    /// The key in PEM.
    pub key_pem: String,
    /// The leaf's validity.
    pub validity: Validity,
    /// The OCSP response a server staples with it (bytes as sent), if any.
    pub ocsp: Option<Vec<u8>>,
}

impl Identity {
    /// The private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), CertError> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write(&cert, &self.chain_pem)?;
        write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) -> Result<(), CertError> {
    std::fs::write(path, text).map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "depprobe test");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, validity: Validity) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn leaf_params(names: &[&str], validity: Validity) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    p.distinguished_name = dn(names.first().copied().unwrap_or("depprobe-test"));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    Ok(p)
}

impl Ca {
    /// A root CA valid from a year ago for ten years.
    pub fn root(cn: &str) -> Result<Ca, CertError> {
        Ca::root_with(cn, Validity::days(-365, 3650))
    }

    /// A root CA with the given validity.
    pub fn root_with(cn: &str, validity: Validity) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let params = ca_params(cn, validity)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            name: cn.to_owned(),
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            above: Vec::new(),
        })
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, cn: &str, validity: Validity) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let params = ca_params(cn, validity)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut above = vec![cert.der().clone()];
        above.extend(self.above.iter().cloned());
        Ok(Ca {
            name: cn.to_owned(),
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            above,
        })
    }

    /// This CA's private key in PEM (PKCS#8), for tools that sign as it (`openssl
    /// ocsp`).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), with the chain up to (not
    /// including) the root.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Result<Identity, CertError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(names, validity)?.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.above.iter().cloned());
        Ok(identity(chain, &key, validity))
    }

    /// A leaf that demands a stapled OCSP response (TLS Feature `status_request`,
    /// RFC 7633: "must-staple").
    pub fn leaf_must_staple(
        &self,
        names: &[&str],
        validity: Validity,
    ) -> Result<Identity, CertError> {
        // id-pe-tlsfeature, SEQUENCE { INTEGER 5 (status_request) }.
        let must_staple = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        );
        self.leaf_with(names, validity, vec![must_staple])
    }

    /// A leaf with these extensions besides the usual ones.
    pub(crate) fn leaf_with(
        &self,
        names: &[&str],
        validity: Validity,
        extensions: Vec<rcgen::CustomExtension>,
    ) -> Result<Identity, CertError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(names, validity)?;
        params.custom_extensions.extend(extensions);
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.above.iter().cloned());
        Ok(identity(chain, &key, validity))
    }

    /// A self-signed leaf for `names`.
    pub fn self_signed(names: &[&str], validity: Validity) -> Result<Identity, CertError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(names, validity)?.self_signed(&key)?;
        Ok(identity(vec![cert.der().clone()], &key, validity))
    }

    /// A CRL issued by this CA that revokes the leaves with these serials.
    pub fn crl(&self, revoked: &[&Identity]) -> Result<String, CertError> {
        self.crl_due(revoked, OffsetDateTime::now_utc() + Duration::days(7))
    }

    /// The same CRL, whose next update is due at `next_update` (in the past: a
    /// stale CRL).
    pub fn crl_due(
        &self,
        revoked: &[&Identity],
        next_update: OffsetDateTime,
    ) -> Result<String, CertError> {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .filter_map(|id| serial_of(&id.chain[0]))
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now - Duration::hours(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: (now - Duration::hours(1)).min(next_update - Duration::hours(1)),
            next_update,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

pub(crate) fn serial_of(der: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.raw_serial().to_vec())
}

fn identity(chain: Vec<CertificateDer<'static>>, key: &KeyPair, validity: Validity) -> Identity {
    let chain_pem = chain
        .iter()
        .map(|c| pem_block("CERTIFICATE", c.as_ref()))
        .collect::<String>();
    Identity {
        chain,
        key_der: key.serialize_der(),
        chain_pem,
        key_pem: key.serialize_pem(),
        validity,
        ocsp: None,
    }
}

fn pem_block(tag: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}
