//! Certificates made the way the how-tos make them: with the `openssl` command line.
//!
//! rcgen makes clean X.509 v3 certificates; users' internal CAs are often made with
//! `openssl x509 -req` without `-extfile` (an X.509 v1 certificate: no extensions,
//! the name only in the CN), `openssl req -x509 -subj /CN=...` (a CA:TRUE
//! self-signed certificate used as the server's own) and `openssl ca -gencrl` (a v1
//! CRL). The tests that prove the verdict on those run the same commands, in a
//! directory of their own.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::{CertError, Identity, Validity};

/// A CA made with `openssl req -x509` (v3, CA:TRUE), and the directory its files
/// live in.
pub struct CliCa {
    /// `ca.crt`.
    pub cert: PathBuf,
    /// `ca.key`.
    pub key: PathBuf,
    dir: PathBuf,
    /// The CA's certificate in PEM.
    pub pem: String,
}

fn err(what: &str, detail: impl std::fmt::Display) -> CertError {
    CertError::Write {
        path: PathBuf::from(what),
        source: std::io::Error::other(detail.to_string()),
    }
}

/// Runs `openssl` with `args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<(), CertError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| err("openssl", e))?;
    if !out.status.success() {
        return Err(err(
            &format!("openssl {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The identity in `<stem>.crt` (then `extra` PEM certificates) and `<stem>.key`.
pub fn identity(dir: &Path, stem: &str, extra: &[&str]) -> Result<Identity, CertError> {
    let mut chain_pem = read(&dir.join(format!("{stem}.crt")))?;
    for e in extra {
        chain_pem.push_str(e);
    }
    let key_pem = read(&dir.join(format!("{stem}.key")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err("certificate PEM", e))?;
    let key_der = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
        Ok(_) => return Err(err("key", "not PKCS#8")),
        Err(e) => return Err(err("key PEM", e)),
    };
    Ok(Identity {
        chain,
        key_der,
        chain_pem,
        key_pem,
        validity: Validity::current(),
        ocsp: None,
    })
}

impl CliCa {
    /// A root CA `/CN=<cn>` in `dir`, valid ten years.
    pub fn new(dir: &Path, cn: &str) -> Result<CliCa, CertError> {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                &format!("/CN={cn}"),
            ],
        )?;
        let cert = dir.join("ca.crt");
        Ok(CliCa {
            pem: read(&cert)?,
            key: dir.join("ca.key"),
            cert,
            dir: dir.to_owned(),
        })
    }

    /// `openssl x509 -req` of a new key for `subj` (`/CN=localhost`), signed by this
    /// CA: X.509 v1 without `ext` (the lines of an `-extfile`), v3 with it. Written
    /// to `<stem>.crt` / `<stem>.key`.
    pub fn issue(&self, stem: &str, subj: &str, ext: Option<&str>) -> Result<Identity, CertError> {
        self.issue_with(stem, subj, ext, "rsa:2048", None)
    }

    /// As [`CliCa::issue`], with the key `newkey` (`rsa:1024`) and the digest
    /// `digest` (`-sha1`, `-md5`) instead of OpenSSL's default (SHA-256).
    pub fn issue_with(
        &self,
        stem: &str,
        subj: &str,
        ext: Option<&str>,
        newkey: &str,
        digest: Option<&str>,
    ) -> Result<Identity, CertError> {
        let dir = &self.dir;
        let (key, csr, crt) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.crt"),
        );
        openssl(
            dir,
            &[
                "req", "-new", "-newkey", newkey, "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subj,
            ],
        )?;
        let ca_crt = self.cert.to_string_lossy().into_owned();
        let ca_key = self.key.to_string_lossy().into_owned();
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "365",
        ];
        let extfile = format!("{stem}.ext");
        if let Some(lines) = ext {
            std::fs::write(dir.join(&extfile), lines).map_err(|source| CertError::Write {
                path: dir.join(&extfile),
                source,
            })?;
            args.extend(["-extfile", &extfile]);
        }
        if let Some(d) = digest {
            args.push(d);
        }
        openssl(dir, &args)?;
        identity(dir, stem, &[])
    }
}

/// The how-to self-signed certificate: `openssl req -x509 -newkey rsa:2048 -nodes
/// -subj /CN=<cn> -addext subjectAltName=<san>` (CA:TRUE, OpenSSL's default), in
/// `<stem>.crt` / `<stem>.key` of `dir`.
pub fn self_signed_howto(
    dir: &Path,
    stem: &str,
    cn: &str,
    san: Option<&str>,
) -> Result<Identity, CertError> {
    let (key, crt) = (format!("{stem}.key"), format!("{stem}.crt"));
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &crt, "-days",
        "30", "-subj", &subj,
    ];
    let addext = san.map(|s| format!("subjectAltName={s}"));
    if let Some(a) = &addext {
        args.extend(["-addext", a]);
    }
    openssl(dir, &args)?;
    identity(dir, stem, &[])
}
