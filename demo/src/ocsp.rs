//! OCSP (RFC 6960) for the tests and the demo: responses signed by a test CA or by
//! a responder certificate it delegated to, leaves that name a responder in their
//! Authority Information Access, and the answer function of a local responder (an
//! [`crate::HttpServer`] speaking OCSP over HTTP POST).

use std::collections::HashMap;

use der::asn1::{GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SigningKey as _};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse,
};

use crate::certs::{Ca, CertError, Identity, Validity, dn};
use crate::servers::{Reply, Req};

/// id-pkix-ocsp-basic.
const BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1 (CertID).
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// ecdsa-with-SHA256: every key of the factory is ECDSA P-256.
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-ad-ocsp.
const ACCESS_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");

/// What a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspStatus {
    /// `good`.
    Good,
    /// `revoked`, an hour ago.
    Revoked,
    /// `unknown`.
    Unknown,
}

/// A responder certificate a CA signed for OCSP (`id-kp-OCSPSigning`), with its key.
pub struct OcspDelegate {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

/// Who signs a response.
#[derive(Clone, Copy)]
pub enum Signer<'a> {
    /// The issuing CA itself.
    Issuer,
    /// A responder the CA delegated to (its certificate goes in the response).
    Delegate(&'a OcspDelegate),
    /// Another CA: a response no client should accept.
    Forger(&'a Ca),
}

fn ocsp_err(e: impl std::fmt::Display) -> CertError {
    CertError::Ocsp(e.to_string())
}

fn time(t: OffsetDateTime) -> Result<OcspGeneralizedTime, CertError> {
    let secs = u64::try_from(t.unix_timestamp()).map_err(ocsp_err)?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Ok(OcspGeneralizedTime(
        GeneralizedTime::from_system_time(at).map_err(ocsp_err)?,
    ))
}

fn sha1(data: &[u8]) -> Result<OctetString, CertError> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    OctetString::new(d.as_ref()).map_err(ocsp_err)
}

impl Ca {
    /// A leaf for `names` whose Authority Information Access names the OCSP
    /// responder at `url`.
    pub fn leaf_with_ocsp(
        &self,
        names: &[&str],
        validity: Validity,
        url: &str,
    ) -> Result<Identity, CertError> {
        let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
            access_method: ACCESS_OCSP,
            access_location: GeneralName::UniformResourceIdentifier(
                Ia5String::new(url).map_err(ocsp_err)?,
            ),
        }]);
        let ext = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            aia.to_der().map_err(ocsp_err)?,
        );
        self.leaf_with(names, validity, vec![ext])
    }

    /// A responder certificate signed by this CA for OCSP.
    pub fn ocsp_delegate(&self) -> Result<OcspDelegate, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(&format!("{} OCSP Responder", self.name));
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        let validity = Validity::days(-1, 30);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(OcspDelegate {
            cert: cert.der().clone(),
            key,
        })
    }

    /// The CertID of `leaf` as issued by this CA (SHA-1).
    pub fn ocsp_cert_id(&self, leaf: &Identity) -> Result<CertId, CertError> {
        let ca = Certificate::from_der(self.cert.as_ref()).map_err(ocsp_err)?;
        let leaf = leaf.chain.first().ok_or_else(|| ocsp_err("empty chain"))?;
        let leaf = Certificate::from_der(leaf.as_ref()).map_err(ocsp_err)?;
        let key = ca
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA1,
                parameters: Some(der::asn1::Any::null()),
            },
            issuer_name_hash: sha1(&ca.tbs_certificate.subject.to_der().map_err(ocsp_err)?)?,
            issuer_key_hash: sha1(key)?,
            serial_number: leaf.tbs_certificate.serial_number,
        })
    }

    /// A successful response (DER) about `leaf`, current until `next_update`,
    /// signed by `signer`.
    pub fn ocsp_response(
        &self,
        leaf: &Identity,
        status: OcspStatus,
        next_update: OffsetDateTime,
        signer: Signer<'_>,
    ) -> Result<Vec<u8>, CertError> {
        let id = self.ocsp_cert_id(leaf)?;
        self.ocsp_answer(id, status, next_update, signer)
    }

    /// A successful response (DER) for the certificate `id` names.
    pub fn ocsp_answer(
        &self,
        id: CertId,
        status: OcspStatus,
        next_update: OffsetDateTime,
        signer: Signer<'_>,
    ) -> Result<Vec<u8>, CertError> {
        let now = OffsetDateTime::now_utc();
        let cert_status = match status {
            OcspStatus::Good => CertStatus::good(),
            OcspStatus::Revoked => CertStatus::revoked(RevokedInfo {
                revocation_time: time(now - Duration::hours(1))?,
                revocation_reason: None,
            }),
            OcspStatus::Unknown => CertStatus::unknown(),
        };
        let single = SingleResponse {
            cert_id: id,
            cert_status,
            this_update: time((now - Duration::hours(1)).min(next_update - Duration::hours(1)))?,
            next_update: Some(time(next_update)?),
            single_extensions: None,
        };
        let (key, certs, responder) = match signer {
            Signer::Issuer => (self.issuer.key(), None, &self.cert),
            Signer::Delegate(d) => (&d.key, Some(vec![d.cert.clone()]), &d.cert),
            Signer::Forger(ca) => (ca.issuer.key(), None, &ca.cert),
        };
        let responder = Certificate::from_der(responder.as_ref()).map_err(ocsp_err)?;
        let tbs = ResponseData {
            version: x509_ocsp::Version::V1,
            responder_id: ResponderId::ByName(responder.tbs_certificate.subject),
            produced_at: time(now)?,
            responses: vec![single],
            response_extensions: None,
        };
        sign(tbs, key, certs)
    }
}

/// Signs `tbs` with `key` into a successful response.
fn sign(
    tbs: ResponseData,
    key: &KeyPair,
    certs: Option<Vec<CertificateDer<'static>>>,
) -> Result<Vec<u8>, CertError> {
    let signature = key.sign(&tbs.to_der().map_err(ocsp_err)?)?;
    let certs = match certs {
        Some(list) => Some(
            list.iter()
                .map(|c| Certificate::from_der(c.as_ref()).map_err(ocsp_err))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_SHA256,
            parameters: None,
        },
        signature: der::asn1::BitString::from_bytes(&signature).map_err(ocsp_err)?,
        certs,
    };
    OcspResponse {
        response_status: x509_ocsp::OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: BASIC,
            response: OctetString::new(basic.to_der().map_err(ocsp_err)?).map_err(ocsp_err)?,
        }),
    }
    .to_der()
    .map_err(ocsp_err)
}

/// An OCSP request (DER) for the certificate `id` names, as a client sends it.
pub fn request_for(id: CertId) -> Result<Vec<u8>, CertError> {
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(ocsp_err)
}

/// The serial number of the first certificate an OCSP request (DER) asks about.
pub fn requested_serial(body: &[u8]) -> Option<SerialNumber> {
    let request = OcspRequest::from_der(body).ok()?;
    request
        .tbs_request
        .request_list
        .first()
        .map(|r| r.req_cert.serial_number.clone())
}

/// A responder's answer function: the response kept for the requested serial
/// (from `answers`: leaf, response DER), `unauthorized` for any other, HTTP 400
/// for what is not an OCSP POST.
pub fn responder(
    answers: Vec<(&Identity, Vec<u8>)>,
) -> impl Fn(&Req) -> Reply + Send + Sync + use<> {
    let by_serial: HashMap<Vec<u8>, Vec<u8>> = answers
        .into_iter()
        .filter_map(|(leaf, der)| {
            let cert = Certificate::from_der(leaf.chain.first()?.as_ref()).ok()?;
            Some((cert.tbs_certificate.serial_number.as_bytes().to_vec(), der))
        })
        .collect();
    move |req: &Req| {
        if req.method != "POST" || req.header("content-type") != Some("application/ocsp-request") {
            return Reply::new(400, "an OCSP request is a POST of application/ocsp-request");
        }
        let found = requested_serial(&req.body).and_then(|s| by_serial.get(s.as_bytes()));
        let body = match found {
            Some(der) => der.clone(),
            None => OcspResponse::unauthorized().to_der().unwrap_or_default(),
        };
        Reply::ok(body).header("content-type", "application/ocsp-response")
    }
}
