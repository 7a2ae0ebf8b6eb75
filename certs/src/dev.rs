//! The PKI of `zen-watcher dev`: the self-managed PKI kept in files under
//! `<data-dir>/pki`, plus an admin client certificate for the kubeconfig. The CA is reused
//! across restarts so kubeconfigs keep working.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    CertError,
    inspect::CertInfo,
    issue::CertifiedKeyPem,
    manager::Publisher,
    pki::Pki,
    rotation::Settings,
    store::{StoreFuture, write_file},
};

/// User and group of the admin client certificate.
pub const ADMIN_USER: &str = "zen-admin";
pub const ADMIN_GROUP: &str = "system:masters";
const MIN_ADMIN_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// The names the dev serving certificate covers: loopback, and the in-cluster Service
/// names, so recorded traffic (SNI `zen-watcher.zen-system.svc`) verifies too.
pub fn settings(cert_validity: Duration, ca_validity: Duration) -> Settings {
    let mut dns_names = vec!["localhost".to_owned()];
    dns_names.extend(Settings::service_names("zen-watcher", "zen-system"));
    Settings {
        ca_name: "zen-watcher-dev-ca".into(),
        dns_names,
        ips: vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
        cert_validity,
        ca_validity,
    }
}

/// What a client of the dev server needs, current after each publication.
pub struct DevCredentials {
    /// Every CA to trust now (more than one during a CA rotation).
    pub ca_bundle: String,
    pub admin: CertifiedKeyPem,
}

type OnChange = Box<dyn Fn(&DevCredentials) -> Result<(), CertError> + Send + Sync>;

/// Publishes the dev PKI: `ca.crt` (the CA bundle), `tls.crt`/`tls.key` (the serving
/// certificate, for baselines that serve the same one) and a fresh admin certificate from
/// the signing CA in `admin.crt`/`admin.key`, then tells `on_change`.
pub struct DevPublisher {
    dir: PathBuf,
    validity: Duration,
    on_change: OnChange,
}

impl DevPublisher {
    /// A fresh admin certificate is issued with every publication (at least once per
    /// serving renewal, and whenever the CA changes). It lives at least 90 days, longer if
    /// the serving certificates do, and never past the CA: short serving lifetimes must not
    /// expire the certificates of clients on long-lived connections.
    pub fn new(
        dir: &Path,
        validity: Duration,
        on_change: impl Fn(&DevCredentials) -> Result<(), CertError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            validity,
            on_change: Box::new(on_change),
        }
    }
}

impl Publisher for DevPublisher {
    fn publish<'a>(&'a self, pki: &'a Pki) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let ca_end = CertInfo::of_pem(&pki.ca.pem.cert_pem, "CA certificate")?.not_after;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let left = Duration::from_secs(u64::try_from(ca_end - now).unwrap_or(0));
            let admin = pki.ca.issue_client(
                ADMIN_USER,
                Some(ADMIN_GROUP),
                self.validity.max(MIN_ADMIN_LIFETIME).min(left),
            )?;
            let creds = DevCredentials {
                ca_bundle: pki.bundle(),
                admin,
            };
            write_file(&self.dir.join("ca.crt"), creds.ca_bundle.as_bytes(), false)?;
            if let Some(serving) = &pki.serving {
                write_file(&self.dir.join("tls.key"), serving.key_pem.as_bytes(), true)?;
                write_file(
                    &self.dir.join("tls.crt"),
                    serving.cert_pem.as_bytes(),
                    false,
                )?;
            }
            write_file(
                &self.dir.join("admin.key"),
                creds.admin.key_pem.as_bytes(),
                true,
            )?;
            write_file(
                &self.dir.join("admin.crt"),
                creds.admin.cert_pem.as_bytes(),
                false,
            )?;
            (self.on_change)(&creds)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{manager::SelfManaged, store::FileStore};

    const DAY: Duration = Duration::from_secs(86_400);

    async fn start(dir: &Path) -> Result<Arc<Mutex<Option<String>>>, CertError> {
        let bundle = Arc::new(Mutex::new(None));
        let seen = bundle.clone();
        let publisher = DevPublisher::new(dir, DAY, move |c| {
            *seen.lock().unwrap() = Some(c.ca_bundle.clone());
            Ok(())
        });
        SelfManaged::start(
            Arc::new(FileStore::new(dir)?),
            settings(DAY, 10 * DAY),
            Arc::new(publisher),
            None,
            None,
        )
        .await?;
        Ok(bundle)
    }

    #[tokio::test]
    async fn the_ca_survives_a_restart_and_a_broken_serving_key_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = start(dir.path()).await.unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        assert_eq!(first.lock().unwrap().as_deref(), Some(ca.as_str()));
        let tls = std::fs::read_to_string(dir.path().join("tls.crt")).unwrap();

        std::fs::write(
            dir.path().join("zen-watcher-tls.json"),
            r#"{"tls.crt":"x","tls.key":"y"}"#,
        )
        .unwrap();
        start(dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
            ca
        );
        let renewed = std::fs::read_to_string(dir.path().join("tls.crt")).unwrap();
        assert_ne!(renewed, tls);
        assert!(crate::inspect::signed_by(&renewed, &ca));
        let admin = std::fs::read_to_string(dir.path().join("admin.crt")).unwrap();
        assert!(crate::inspect::signed_by(&admin, &ca));
    }

    #[tokio::test]
    async fn a_corrupt_ca_is_an_error_naming_it_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        start(dir.path()).await.unwrap();
        let path = dir.path().join("zen-watcher-ca.json");
        let mut data: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        data["ca.crt"] = "not pem".into();
        let broken = data.to_string();
        std::fs::write(&path, &broken).unwrap();
        let err = start(dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("zen-watcher-ca/ca.crt"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    }

    #[tokio::test]
    async fn a_pki_directory_of_the_earlier_layout_keeps_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::issue::Ca::generate("old-dev-ca", 10 * DAY).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.pem.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.key"), &ca.pem.key_pem).unwrap();
        start(dir.path()).await.unwrap();
        let bundle = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        assert_eq!(bundle.trim_end(), ca.pem.cert_pem.trim_end());
    }
}
