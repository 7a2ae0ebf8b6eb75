//! The PKI of `zen-watcher dev`, kept in a directory: a CA, a serving certificate for
//! localhost, and an admin client certificate for the kubeconfig. Reused across restarts so
//! kubeconfigs keep working; certificates near their end are reissued from the same CA.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{
    CertError,
    issue::{Ca, CertifiedKeyPem},
    tls::certs_from_pem,
};

const CA_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// User and group of the admin client certificate.
pub const ADMIN_USER: &str = "zen-admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// The dev PKI, loaded or created.
#[derive(Debug)]
pub struct DevPki {
    pub ca: CertifiedKeyPem,
    pub serving: CertifiedKeyPem,
    pub admin: CertifiedKeyPem,
}

fn read(path: &Path) -> Result<Option<String>, CertError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Seconds of validity left, or an error naming `origin` if the PEM is not a certificate.
fn remaining(cert_pem: &str, origin: &Path) -> Result<(i64, i64), CertError> {
    let certs = certs_from_pem(cert_pem, &origin.display().to_string())?;
    let (_, cert) =
        X509Certificate::from_der(certs[0].as_ref()).map_err(|e| CertError::Invalid {
            path: origin.display().to_string(),
            message: format!("unparsable certificate: {e}"),
        })?;
    let v = cert.validity();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let total = v.not_after.timestamp() - v.not_before.timestamp();
    Ok((v.not_after.timestamp() - now, total))
}

/// Whether a certificate is past two thirds of its life (or past its end).
fn due(cert_pem: &str, origin: &Path) -> Result<bool, CertError> {
    let (left, total) = remaining(cert_pem, origin)?;
    Ok(left <= total / 3)
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(dir: &Path, stem: &str) -> Self {
        Self {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    fn load(&self) -> Result<Option<CertifiedKeyPem>, CertError> {
        match (read(&self.cert)?, read(&self.key)?) {
            (Some(cert_pem), Some(key_pem)) => Ok(Some(CertifiedKeyPem { cert_pem, key_pem })),
            _ => Ok(None),
        }
    }

    fn store(&self, pem: &CertifiedKeyPem) -> Result<(), CertError> {
        write(&self.key, &pem.key_pem, true)?;
        write(&self.cert, &pem.cert_pem, false)
    }
}

impl DevPki {
    /// Loads the PKI from `dir`, creating or renewing what is missing or due.
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Self, CertError> {
        std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let ca_files = Files::new(dir, "ca");
        let ca = match ca_files.load()? {
            Some(pem) if !due(&pem.cert_pem, &ca_files.cert)? => {
                Ca::from_pem(pem).map_err(|e| CertError::Invalid {
                    path: ca_files.key.display().to_string(),
                    message: e.to_string(),
                })?
            }
            _ => {
                let ca = Ca::generate("zen-watcher-dev-ca", CA_LIFETIME)?;
                ca_files.store(&ca.pem)?;
                tracing::info!(path = %ca_files.cert.display(), "created the dev CA");
                ca
            }
        };
        let mut names = vec![
            "localhost".to_owned(),
            "zen-watcher.zen-system.svc".to_owned(),
        ];
        names.extend(extra_names.iter().cloned());
        let ips = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let serving = Self::leaf(&Files::new(dir, "tls"), &ca, || {
            ca.issue_serving(&names, &ips, LEAF_LIFETIME)
        })?;
        let admin = Self::leaf(&Files::new(dir, "admin"), &ca, || {
            ca.issue_client(ADMIN_USER, Some(ADMIN_GROUP), LEAF_LIFETIME)
        })?;
        Ok(Self {
            ca: ca.pem.clone(),
            serving,
            admin,
        })
    }

    /// An issued certificate, reused while it is valid, signed by the current CA and
    /// not yet due; reissued otherwise.
    fn leaf(
        files: &Files,
        ca: &Ca,
        issue: impl FnOnce() -> Result<CertifiedKeyPem, CertError>,
    ) -> Result<CertifiedKeyPem, CertError> {
        if let Some(pem) = files.load()?
            && !due(&pem.cert_pem, &files.cert)?
            && signed_by(&pem.cert_pem, &ca.pem.cert_pem)
            && crate::tls::key_from_pem(&pem.key_pem, &files.key.display().to_string()).is_ok()
        {
            return Ok(pem);
        }
        let pem = issue()?;
        files.store(&pem)?;
        tracing::info!(path = %files.cert.display(), "issued a certificate");
        Ok(pem)
    }
}

/// Whether `cert_pem`'s issuer is `ca_pem`'s subject and its signature verifies.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (
        certs_from_pem(cert_pem, "cert"),
        certs_from_pem(ca_pem, "ca"),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert[0].as_ref()),
        X509Certificate::from_der(ca[0].as_ref()),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_ca_and_renews_broken_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevPki::load_or_create(dir.path(), &[]).unwrap();
        let second = DevPki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        // A corrupt serving key is replaced, from the same CA.
        std::fs::write(dir.path().join("tls.key"), "garbage").unwrap();
        let third = DevPki::load_or_create(dir.path(), &[]).unwrap();
        assert_ne!(third.serving.cert_pem, first.serving.cert_pem);
        assert!(signed_by(&third.serving.cert_pem, &first.ca.cert_pem));
    }

    #[test]
    fn a_corrupt_ca_certificate_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        DevPki::load_or_create(dir.path(), &[]).unwrap();
        std::fs::write(dir.path().join("ca.crt"), "not pem").unwrap();
        let err = DevPki::load_or_create(dir.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.crt"), "{err}");
    }
}
