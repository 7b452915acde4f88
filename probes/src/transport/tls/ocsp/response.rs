//! OCSP responses (RFC 6960) read and verified, and requests made, with the
//! `x509-ocsp` crate's types.
//!
//! A response counts only when it is about the leaf (its CertID names the leaf's
//! serial and the hashes of its issuer's name and key) and is signed by the issuer
//! or by a responder certificate the issuer signed for OCSP (`id-kp-OCSPSigning`).
//! Signatures are checked with rustls' own algorithms (aws-lc-rs), through webpki.

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};
use x509_parser::prelude::FromDer;

use crate::transport::tls::provider;

/// id-pkix-ocsp-basic.
const BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1, the CertID hash every responder understands.
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// SHA-256, which some responders use in their CertIDs.
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// How far in the future a response's `thisUpdate` may lie (the responder's clock).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The certificate that issued the leaf, as OCSP names it.
pub(crate) struct Issuer {
    /// Its DER.
    der: CertificateDer<'static>,
    /// Its subject (DER): the leaf's issuer name.
    name: Vec<u8>,
    /// Its subject public key (the BIT STRING's bytes).
    key: Vec<u8>,
    /// Its subject, as text.
    pub(crate) subject: String,
}

impl Issuer {
    /// The certificate among `candidates` whose subject is `leaf`'s issuer and whose
    /// key signed it.
    pub(crate) fn find(
        leaf: &CertificateDer<'_>,
        candidates: &[CertificateDer<'static>],
    ) -> Option<Issuer> {
        let leaf_cert = Certificate::from_der(leaf.as_ref()).ok()?;
        let wanted = leaf_cert.tbs_certificate.issuer.to_der().ok()?;
        let tbs = leaf_cert.tbs_certificate.to_der().ok()?;
        let signature = leaf_cert.signature.as_bytes()?;
        let algorithm = algorithm_content(&leaf_cert.signature_algorithm)?;
        candidates.iter().find_map(|der| {
            let cert = Certificate::from_der(der.as_ref()).ok()?;
            let name = cert.tbs_certificate.subject.to_der().ok()?;
            if name != wanted || !signed_by(der, &algorithm, &tbs, signature) {
                return None;
            }
            let key = cert
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .as_bytes()?
                .to_vec();
            Some(Issuer {
                der: der.clone(),
                name,
                key,
                subject: cert.tbs_certificate.subject.to_string(),
            })
        })
    }

    /// Whether `id` names the certificate with `serial` issued by this issuer.
    fn names(&self, id: &CertId, serial: &SerialNumber) -> bool {
        let algorithm = if id.hash_algorithm.oid == SHA1 {
            &digest::SHA1_FOR_LEGACY_USE_ONLY
        } else if id.hash_algorithm.oid == SHA256 {
            &digest::SHA256
        } else {
            return false;
        };
        id.serial_number == *serial
            && id.issuer_name_hash.as_bytes() == digest::digest(algorithm, &self.name).as_ref()
            && id.issuer_key_hash.as_bytes() == digest::digest(algorithm, &self.key).as_ref()
    }
}

/// What a verified response says about the leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Good,
    /// Revoked at this time.
    Revoked(SystemTime),
    /// The responder does not know the certificate.
    Unknown,
}

/// A verified answer about the leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: Status,
    /// When the responder stops vouching for it (`None`: newer information is
    /// always available).
    pub next_update: Option<SystemTime>,
}

/// Why a response does not count.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// Not DER an OCSP client reads.
    #[error("it cannot be read as an OCSP response ({0})")]
    Malformed(String),
    /// An error status instead of a response.
    #[error("the responder answered `{0}` instead of a status")]
    Refused(&'static str),
    /// No single response names the leaf.
    #[error("it is about another certificate")]
    OtherCertificate,
    /// Neither the issuer nor a responder it delegated to signed it.
    #[error(
        "its signature does not verify against the issuer ({0}) or a responder certificate the issuer signed for OCSP"
    )]
    BadSignature(String),
    /// Issued in the future by more than the clock skew allowed.
    #[error("its thisUpdate lies in the future")]
    Future,
    /// The leaf's issuer is not at hand (or the leaf cannot be read), so nothing
    /// can be checked.
    #[error("the leaf's issuer is neither in the chain nor among the anchors")]
    NoIssuer,
}

/// The leaf's serial number.
pub(crate) fn serial(leaf: &CertificateDer<'_>) -> Option<SerialNumber> {
    Certificate::from_der(leaf.as_ref())
        .ok()
        .map(|c| c.tbs_certificate.serial_number)
}

/// Reads the response `der` about the certificate with `serial` issued by
/// `issuer`, verifying its signature.
pub(crate) fn read(
    der: &[u8],
    serial: &SerialNumber,
    issuer: &Issuer,
    now: SystemTime,
) -> Result<Answer, ReadError> {
    let malformed = |e: der::Error| ReadError::Malformed(e.to_string());
    let response = OcspResponse::from_der(der).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(ReadError::Refused(status_name(response.response_status)));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| ReadError::Malformed("no responseBytes".into()))?;
    if bytes.response_type != BASIC {
        return Err(ReadError::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|s| issuer.names(&s.cert_id, serial))
        .ok_or(ReadError::OtherCertificate)?;
    verify(&basic, issuer, now)?;
    if single.this_update.0.to_system_time() > now + CLOCK_SKEW {
        return Err(ReadError::Future);
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(info) => Status::Revoked(info.revocation_time.0.to_system_time()),
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Answer {
        status,
        next_update: single.next_update.map(|t| t.0.to_system_time()),
    })
}

/// The DER of a request for the status of the certificate with `serial` issued by
/// `issuer` (SHA-1 CertID, no nonce: what every responder answers).
pub(crate) fn request(serial: &SerialNumber, issuer: &Issuer) -> Result<Vec<u8>, der::Error> {
    let sha1 = |data: &[u8]| {
        OctetString::new(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref())
    };
    let req_cert = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: SHA1,
            parameters: Some(Any::null()),
        },
        issuer_name_hash: sha1(&issuer.name)?,
        issuer_key_hash: sha1(&issuer.key)?,
        serial_number: serial.clone(),
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
}

/// Checks that the issuer, or a responder certificate in the response that the
/// issuer signed for OCSP, signed `basic`.
fn verify(basic: &BasicOcspResponse, issuer: &Issuer, now: SystemTime) -> Result<(), ReadError> {
    let bad = || ReadError::BadSignature(issuer.subject.clone());
    let tbs = basic.tbs_response_data.to_der().map_err(|_| bad())?;
    let signature = basic.signature.as_bytes().ok_or_else(bad)?;
    let algorithm = algorithm_content(&basic.signature_algorithm).ok_or_else(bad)?;
    if signed_by(&issuer.der, &algorithm, &tbs, signature) {
        return Ok(());
    }
    let delegated = basic
        .certs
        .iter()
        .flatten()
        .filter_map(|c| c.to_der().ok().map(CertificateDer::from))
        .filter(|c| delegated_by(c, issuer, now));
    for responder in delegated {
        if signed_by(&responder, &algorithm, &tbs, signature) {
            return Ok(());
        }
    }
    Err(bad())
}

/// Whether `cert` is a current responder certificate signed by `issuer` for OCSP.
fn delegated_by(cert: &CertificateDer<'_>, issuer: &Issuer, now: SystemTime) -> bool {
    let Ok(parsed) = Certificate::from_der(cert.as_ref()) else {
        return false;
    };
    let (Ok(tbs), Some(signature), Some(algorithm)) = (
        parsed.tbs_certificate.to_der(),
        parsed.signature.as_bytes(),
        algorithm_content(&parsed.signature_algorithm),
    ) else {
        return false;
    };
    if !signed_by(&issuer.der, &algorithm, &tbs, signature) {
        return false;
    }
    let Ok((_, x509)) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()) else {
        return false;
    };
    let ocsp_signing = matches!(x509.extended_key_usage(), Ok(Some(eku)) if eku.value.ocsp_signing);
    let at = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let valid = x509_parser::time::ASN1Time::from_timestamp(i64::try_from(at).unwrap_or(i64::MAX))
        .is_ok_and(|t| x509.validity().is_valid_at(t));
    ocsp_signing && valid
}

/// Whether the key of certificate `signer` made `signature` over `message` with
/// the algorithm whose AlgorithmIdentifier content is `algorithm`.
fn signed_by(
    signer: &CertificateDer<'_>,
    algorithm: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(signer) else {
        return false;
    };
    provider()
        .signature_verification_algorithms
        .all
        .iter()
        .filter(|a| a.signature_alg_id().as_ref() == algorithm)
        .any(|a| cert.verify_signature(*a, message, signature).is_ok())
}

/// An AlgorithmIdentifier's content (the OID and parameters, without the SEQUENCE
/// header), as webpki names its algorithms.
fn algorithm_content(id: &AlgorithmIdentifierOwned) -> Option<Vec<u8>> {
    let mut out = id.oid.to_der().ok()?;
    if let Some(parameters) = &id.parameters {
        out.extend(parameters.to_der().ok()?);
    }
    Some(out)
}

/// RFC 6960's name of an error status.
fn status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_bytes_are_malformed_never_a_status() {
        let issuer = Issuer {
            der: CertificateDer::from(Vec::new()),
            name: Vec::new(),
            key: Vec::new(),
            subject: "CN=x".into(),
        };
        let serial = SerialNumber::new(&[1]).unwrap();
        let now = SystemTime::now();
        for bytes in [
            &b""[..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            &[0x30, 0x03, 0x0a, 0x01, 0x00],
        ] {
            assert!(
                matches!(
                    read(bytes, &serial, &issuer, now),
                    Err(ReadError::Malformed(_))
                ),
                "{bytes:?}"
            );
        }
        assert_eq!(
            read(&[0x30, 0x03, 0x0a, 0x01, 0x03], &serial, &issuer, now),
            Err(ReadError::Refused("tryLater"))
        );
    }
}
