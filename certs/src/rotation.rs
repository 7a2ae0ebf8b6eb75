//! When certificates are issued and rotated: one pure step from the stored PKI and the
//! clock to the next PKI, so every rule is testable without waiting.
//!
//! A CA rotation takes three steps, each stored and published before the next:
//! 1. *introduce*: a new CA joins every caBundle, the old one still signs;
//! 2. *promote*: once the bundles carry it, the new CA signs the serving certificate, which
//!    is served with a copy of the new CA cross-signed by the old one, so clients still
//!    holding only the old bundle verify it too; the old CA stays in the bundles;
//! 3. *retire*: after the overlap (one serving-certificate lifetime) the old CA leaves the
//!    bundles and the cross-signed copy leaves the chain.

use std::{net::IpAddr, time::Duration};

use crate::{
    CertError,
    inspect::{CertInfo, signed_by},
    issue::Ca,
    pki::{Pki, Retiring},
    tls::certified_key,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The CN prefix of generated CAs.
    pub ca_name: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
}

impl Settings {
    /// The names a Service `service` in `namespace` is reached by.
    pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
        vec![
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
    }
}

/// The reason of a serving certificate's first issue (not counted as a rotation).
pub const FIRST_ISSUE: &str = "there was none";

/// What a step did, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CaCreated,
    /// A new CA joined the bundle; the caller publishes it, then steps again to promote it.
    CaIntroduced,
    CaPromoted,
    CaRetired,
    ServingIssued {
        reason: String,
    },
}

#[derive(Debug)]
pub struct Reconciled {
    pub pki: Pki,
    pub changes: Vec<Change>,
    /// Unix seconds of the next step that would change something.
    pub next_check: i64,
}

/// One step. `force_ca` starts a CA rotation now (if none is under way).
pub fn reconcile(
    current: Option<Pki>,
    settings: &Settings,
    now: i64,
    force_ca: bool,
) -> Result<Reconciled, CertError> {
    let mut changes = Vec::new();
    let mut pki = match current {
        Some(pki) => pki,
        None => {
            changes.push(Change::CaCreated);
            Pki {
                ca: Ca::generate(&settings.ca_name, settings.ca_validity)?,
                next: None,
                previous: None,
                serving: None,
            }
        }
    };
    let mut reissue: Option<String> = None;

    if pki.previous.as_ref().is_some_and(|p| p.until <= now) {
        pki.previous = None;
        changes.push(Change::CaRetired);
        reissue = Some("the previous CA was retired".into());
    }

    if let Some(next) = pki.next.take() {
        // Published by the previous step's caller: it may sign now.
        let ca_end = CertInfo::of_pem(&pki.ca.pem.cert_pem, "CA certificate")?.not_after;
        let overlap = i64::try_from(settings.cert_validity.as_secs()).unwrap_or(i64::MAX);
        let cross_pem = pki.ca.cross_sign(&next)?;
        let old = std::mem::replace(&mut pki.ca, next);
        pki.previous = Some(Retiring {
            cert_pem: old.pem.cert_pem,
            cross_pem,
            until: now.saturating_add(overlap).min(ca_end),
        });
        changes.push(Change::CaPromoted);
        reissue = Some("the CA was rotated".into());
    } else if pki.previous.is_none() {
        let ca = CertInfo::of_pem(&pki.ca.pem.cert_pem, "CA certificate")?;
        let too_long = ca.not_after - now > secs(settings.ca_validity) + 60;
        if force_ca || now >= ca.renew_at() || too_long {
            pki.next = Some(Ca::generate(&settings.ca_name, settings.ca_validity)?);
            changes.push(Change::CaIntroduced);
        }
    }

    let reason = reissue.or_else(|| serving_problem(&pki, settings, now));
    if let Some(reason) = reason {
        let ca_end = CertInfo::of_pem(&pki.ca.pem.cert_pem, "CA certificate")?.not_after;
        let left = Duration::from_secs(u64::try_from(ca_end - now).unwrap_or(0));
        let leaf = pki.ca.issue_serving(
            &settings.dns_names,
            &settings.ips,
            settings.cert_validity.min(left),
        )?;
        pki.serving = Some(crate::issue::CertifiedKeyPem {
            cert_pem: pki.chain(&leaf.cert_pem),
            key_pem: leaf.key_pem,
        });
        changes.push(Change::ServingIssued { reason });
    }

    let next_check = next_check(&pki, now)?;
    Ok(Reconciled {
        pki,
        changes,
        next_check,
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Why the serving certificate must be reissued, if it must.
fn serving_problem(pki: &Pki, settings: &Settings, now: i64) -> Option<String> {
    let Some(serving) = &pki.serving else {
        return Some(FIRST_ISSUE.into());
    };
    if let Err(e) = certified_key(&serving.cert_pem, &serving.key_pem, "serving certificate") {
        tracing::warn!(error = %e, "the stored serving certificate is unusable");
        return Some(format!("the stored one is unusable: {e}"));
    }
    if !signed_by(&serving.cert_pem, &pki.ca.pem.cert_pem) {
        return Some("the stored one is not signed by the current CA".into());
    }
    let leaf = match CertInfo::of_pem(&serving.cert_pem, "serving certificate") {
        Ok(leaf) => leaf,
        Err(e) => return Some(e.to_string()),
    };
    if let Some(missing) = settings
        .dns_names
        .iter()
        .find(|n| !leaf.dns_names.contains(n))
    {
        return Some(format!("it does not cover {missing:?}"));
    }
    if now >= leaf.renew_at() {
        return Some("two thirds of its life have passed".into());
    }
    if leaf.not_after - now > secs(settings.cert_validity) + 60 {
        return Some("it outlives --cert-validity".into());
    }
    None
}

fn next_check(pki: &Pki, now: i64) -> Result<i64, CertError> {
    let mut at = now + 3600;
    if pki.next.is_some() {
        at = now;
    }
    if let Some(p) = &pki.previous {
        at = at.min(p.until);
    } else {
        at = at.min(CertInfo::of_pem(&pki.ca.pem.cert_pem, "CA certificate")?.renew_at());
    }
    if let Some(s) = &pki.serving {
        at = at.min(CertInfo::of_pem(&s.cert_pem, "serving certificate")?.renew_at());
    }
    Ok(at.max(now))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pki::Secrets;

    fn settings(cert: u64, ca: u64) -> Settings {
        Settings {
            ca_name: "test-ca".into(),
            dns_names: Settings::service_names("zen-watcher", "zen-system"),
            ips: vec![],
            cert_validity: Duration::from_secs(cert),
            ca_validity: Duration::from_secs(ca),
        }
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// Through the Secrets and back, as every step is stored.
    fn stored(pki: &Pki) -> Pki {
        let secrets: Secrets = pki.to_secrets();
        Pki::from_secrets(&secrets).unwrap().unwrap()
    }

    #[test]
    fn a_fresh_start_creates_a_ca_and_a_serving_certificate_for_the_service() {
        let s = settings(90 * 86_400, 5 * 365 * 86_400);
        let r = reconcile(None, &s, now(), false).unwrap();
        assert_eq!(r.changes[0], Change::CaCreated);
        assert!(matches!(r.changes[1], Change::ServingIssued { .. }));
        let leaf = CertInfo::of_pem(&r.pki.serving.as_ref().unwrap().cert_pem, "t").unwrap();
        assert_eq!(leaf.dns_names, s.dns_names);
        // Nothing to do until two thirds of the serving certificate's life.
        let again = reconcile(Some(stored(&r.pki)), &s, now(), false).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert!(leaf.renew_at() > now() + 3600);
        assert!(again.next_check > now() + 3500 && again.next_check <= now() + 3600);
    }

    #[test]
    fn the_serving_certificate_is_renewed_at_two_thirds_of_its_life() {
        let s = settings(30, 3600);
        let start = now();
        let r = reconcile(None, &s, start, false).unwrap();
        let leaf = CertInfo::of_pem(&r.pki.serving.as_ref().unwrap().cert_pem, "t").unwrap();
        let renew = leaf.renew_at();
        assert!(renew > start && renew <= start + 20, "{renew} vs {start}");
        let before = reconcile(Some(stored(&r.pki)), &s, renew - 1, false).unwrap();
        assert!(before.changes.is_empty());
        let at = reconcile(Some(stored(&before.pki)), &s, renew, false).unwrap();
        assert!(
            matches!(&at.changes[..], [Change::ServingIssued { reason }] if reason.contains("two thirds"))
        );
    }

    #[test]
    fn a_ca_rotation_publishes_first_signs_second_retires_after_the_overlap() {
        let s = settings(20, 3600);
        let t = now();
        let first = reconcile(None, &s, t, false).unwrap().pki;
        let old_ca = first.ca.pem.cert_pem.clone();
        let old_leaf = first.serving.as_ref().unwrap().cert_pem.clone();

        // 1. Introduce: the bundle gains the new CA; the serving certificate is unchanged.
        let r = reconcile(Some(stored(&first)), &s, t, true).unwrap();
        assert_eq!(r.changes, [Change::CaIntroduced]);
        assert_eq!(
            r.next_check, t,
            "promotion is due as soon as the bundle is out"
        );
        let introduced = stored(&r.pki);
        assert_eq!(introduced.bundle().matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(introduced.serving.as_ref().unwrap().cert_pem, old_leaf);
        let new_ca = introduced.next.as_ref().unwrap().pem.cert_pem.clone();

        // 2. Promote: the new CA signs; the chain carries it cross-signed by the old one.
        let r = reconcile(Some(introduced), &s, t + 1, false).unwrap();
        assert_eq!(r.changes[0], Change::CaPromoted);
        let promoted = stored(&r.pki);
        assert_eq!(promoted.ca.pem.cert_pem, new_ca);
        let chain = &promoted.serving.as_ref().unwrap().cert_pem;
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(signed_by(chain, &new_ca));
        let cross = &promoted.previous.as_ref().unwrap().cross_pem;
        assert!(
            signed_by(cross, &old_ca),
            "the cross-signed CA is signed by the old CA"
        );
        assert_eq!(
            CertInfo::of_pem(cross, "x").unwrap().public_key,
            CertInfo::of_pem(&new_ca, "x").unwrap().public_key
        );
        assert_eq!(promoted.bundle().matches("BEGIN CERTIFICATE").count(), 2);
        // What a TLS client decides: the old bundle, the new CA alone, and both, all verify.
        for trusted in [&old_ca, &new_ca, &promoted.bundle()] {
            verify_as_client(chain, trusted).unwrap();
        }
        let until = promoted.previous.as_ref().unwrap().until;
        assert_eq!(until, t + 1 + 20);

        // The old CA stays until the overlap ends (the serving certificate itself may be
        // renewed meanwhile); then it leaves bundle and chain.
        let r = reconcile(Some(promoted), &s, until - 1, false).unwrap();
        assert!(!r.changes.contains(&Change::CaRetired), "{:?}", r.changes);
        assert_eq!(r.pki.bundle().matches("BEGIN CERTIFICATE").count(), 2);
        let r = reconcile(Some(stored(&r.pki)), &s, until, false).unwrap();
        assert_eq!(r.changes[0], Change::CaRetired);
        let retired = stored(&r.pki);
        assert_eq!(retired.bundle().trim_end(), new_ca.trim_end());
        let chain = &retired.serving.as_ref().unwrap().cert_pem;
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 1);
        verify_as_client(chain, &new_ca).unwrap();
        assert!(
            verify_as_client(chain, &old_ca).is_err(),
            "the overlap is over"
        );
    }

    /// Verifies a served chain for `zen-watcher.zen-system.svc` the way a rustls client does.
    fn verify_as_client(chain_pem: &str, trusted_pem: &str) -> Result<(), rustls::Error> {
        use rustls::{
            client::{WebPkiServerVerifier, danger::ServerCertVerifier},
            pki_types::{ServerName, UnixTime},
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in crate::tls::certs_from_pem(trusted_pem, "roots").unwrap() {
            roots.add(ca).unwrap();
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .unwrap();
        let chain = crate::tls::certs_from_pem(chain_pem, "chain").unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from("zen-watcher.zen-system.svc").unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_ca_past_two_thirds_of_its_life_starts_a_rotation() {
        let s = settings(10, 30);
        let t = now();
        let first = reconcile(None, &s, t, false).unwrap().pki;
        let ca = CertInfo::of_pem(&first.ca.pem.cert_pem, "t").unwrap();
        let r = reconcile(Some(stored(&first)), &s, ca.renew_at(), false).unwrap();
        assert!(r.changes.contains(&Change::CaIntroduced), "{:?}", r.changes);
    }

    #[test]
    fn a_broken_serving_certificate_is_reissued_but_a_broken_ca_is_an_error() {
        let s = settings(3600, 86_400);
        let pki = reconcile(None, &s, now(), false).unwrap().pki;
        let mut secrets = pki.to_secrets();
        secrets
            .tls
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), "garbage".into());
        let r = reconcile(Pki::from_secrets(&secrets).unwrap(), &s, now(), false).unwrap();
        assert!(
            matches!(&r.changes[..], [Change::ServingIssued { reason }] if reason.contains("unusable")),
            "{:?}",
            r.changes
        );
        // Another CA's key with this CA's certificate.
        let other = Ca::generate("other", Duration::from_secs(3600)).unwrap();
        secrets
            .ca
            .as_mut()
            .unwrap()
            .insert("ca.key".into(), other.pem.key_pem.clone());
        let err = Pki::from_secrets(&secrets).unwrap_err().to_string();
        assert!(
            err.contains("zen-watcher-ca/ca.crt") && err.contains("key"),
            "{err}"
        );
    }
}
