//! The self-managed PKI at run time: steps [`reconcile`] when something is due, stores the
//! result, swaps the serving certificate in memory and publishes the CA bundle.

use std::{sync::Arc, time::Duration};

use crate::{
    CertError,
    inspect::CertInfo,
    metrics::CertMetrics,
    pki::{Pki, Secrets},
    rotation::{Change, Settings, reconcile},
    store::{CertStore, StoreFuture},
    tls::{ServingCert, certified_key},
};

/// Makes a step's outcome known: the dev files and kubeconfig, or every caBundle in a
/// cluster. Runs after the step is stored and before the next step, so a new CA is
/// published before it signs anything.
pub trait Publisher: Send + Sync {
    fn publish<'a>(&'a self, pki: &'a Pki) -> StoreFuture<'a, ()>;
}

/// Steps are never further apart than this, so changes made by others are picked up.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// A failed step is retried after this, serving the last good certificate meanwhile.
const RETRY: Duration = Duration::from_secs(10);

/// Whether this replica may rotate (the holder of the coordination Lease); the others only
/// follow what the leader stores.
pub type Leader = Arc<dyn Fn() -> bool + Send + Sync>;

pub struct SelfManaged {
    leader: Option<Leader>,
    store: Arc<dyn CertStore>,
    settings: Settings,
    publisher: Arc<dyn Publisher>,
    serving: Arc<ServingCert>,
    metrics: Option<CertMetrics>,
    /// What was last applied and published.
    applied: Secrets,
    /// Rings when the stored certificates changed (a watch of the Secrets), so a step runs
    /// at once instead of at the next check.
    wake: Arc<tokio::sync::Notify>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What a follower does: serve what the leader stored, changing nothing; look again soon.
fn follow(pki: Option<Pki>) -> Result<crate::rotation::Reconciled, CertError> {
    let pki = pki.ok_or_else(|| CertError::Issue("the leader has not stored a CA yet".into()))?;
    if pki.serving.is_none() {
        return Err(CertError::Issue(
            "the leader has not stored a serving certificate yet".into(),
        ));
    }
    Ok(crate::rotation::Reconciled {
        pki,
        changes: Vec::new(),
        next_check: now() + 5,
    })
}

impl SelfManaged {
    /// Steps until nothing is due, so a server starts with a usable certificate; the
    /// returned resolver serves it. A CA that cannot be used is an error here.
    pub async fn start(
        store: Arc<dyn CertStore>,
        settings: Settings,
        publisher: Arc<dyn Publisher>,
        metrics: Option<CertMetrics>,
        leader: Option<Leader>,
    ) -> Result<(Self, Arc<ServingCert>), CertError> {
        let mut secrets = store.load().await?;
        // A follower waits for the leader's certificates rather than making its own.
        if let Some(is_leader) = &leader {
            for _ in 0..60 {
                if is_leader() || secrets.tls.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                secrets = store.load().await?;
            }
        }
        let first = match &leader {
            Some(is_leader) if !is_leader() => follow(Pki::from_secrets(&secrets)?)?,
            _ => reconcile(Pki::from_secrets(&secrets)?, &settings, now(), false)?,
        };
        let serving = match &first.pki.serving {
            Some(s) => certified_key(&s.cert_pem, &s.key_pem, "serving certificate")?,
            None => return Err(CertError::Issue("no serving certificate was issued".into())),
        };
        let serving = ServingCert::new(serving);
        let mut this = Self {
            leader,
            store,
            settings,
            publisher,
            serving: serving.clone(),
            metrics,
            applied: Secrets::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        this.finish(first, secrets).await?;
        // Promote a CA introduced at start (its bundle is published now); a few steps at
        // most, whatever the clock says.
        for _ in 0..4 {
            if this.step().await? > now() {
                break;
            }
        }
        Ok((this, serving))
    }

    /// What to ring when the stored certificates changed.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Runs forever.
    pub async fn run(mut self) {
        loop {
            let pause = match self.step().await {
                Ok(next) => {
                    Duration::from_secs(u64::try_from(next - now()).unwrap_or(0)).min(MAX_SLEEP)
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate rotation failed; serving the last good certificate");
                    RETRY
                }
            };
            // A step due "now" that changed nothing must not spin.
            tokio::time::sleep(Duration::from_millis(200)).await;
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One step; returns when the next one is due (now: at once, a CA awaits promotion).
    async fn step(&mut self) -> Result<i64, CertError> {
        let secrets = self.store.load().await?;
        let r = match &self.leader {
            Some(is_leader) if !is_leader() => follow(Pki::from_secrets(&secrets)?)?,
            _ => reconcile(Pki::from_secrets(&secrets)?, &self.settings, now(), false)?,
        };
        self.finish(r, secrets).await
    }

    async fn finish(
        &mut self,
        r: crate::rotation::Reconciled,
        loaded: Secrets,
    ) -> Result<i64, CertError> {
        let secrets = r.pki.to_secrets();
        let leading = self.leader.as_ref().is_none_or(|l| l());
        if secrets != loaded && leading {
            self.store.save(&secrets).await?;
        }
        for change in &r.changes {
            self.report(change, &r.pki);
        }
        if secrets != self.applied {
            if let Some(s) = &r.pki.serving {
                self.serving.set(certified_key(
                    &s.cert_pem,
                    &s.key_pem,
                    "serving certificate",
                )?);
            }
            if leading {
                self.publisher.publish(&r.pki).await?;
            }
            self.applied = secrets;
            if let Some(m) = &self.metrics {
                if let Ok(ca) = CertInfo::of_pem(&r.pki.ca.pem.cert_pem, "CA") {
                    m.expires("ca", ca.not_after);
                }
                if let Some(Ok(leaf)) = r
                    .pki
                    .serving
                    .as_ref()
                    .map(|s| CertInfo::of_pem(&s.cert_pem, "serving"))
                {
                    m.expires("serving", leaf.not_after);
                }
            }
        }
        if r.changes.contains(&Change::CaIntroduced) {
            return Ok(now());
        }
        Ok(r.next_check)
    }

    fn report(&self, change: &Change, pki: &Pki) {
        let ca = pki.ca.common_name();
        match change {
            Change::CaCreated => tracing::info!(ca, "created a CA"),
            Change::CaIntroduced => tracing::info!(
                next = pki.next.as_ref().map(|n| n.common_name()),
                "rotating the CA: the new CA joins the CA bundle before it signs"
            ),
            Change::CaPromoted => {
                tracing::info!(
                    ca,
                    until = pki.previous.as_ref().map(|p| crate::rfc3339(p.until)),
                    "rotated the CA: the new CA signs; the old one stays trusted until the overlap ends"
                );
                if let Some(m) = &self.metrics {
                    m.rotated("ca");
                }
            }
            Change::CaRetired => tracing::info!(ca, "the previous CA left the CA bundle"),
            Change::ServingIssued { reason } => {
                let leaf = pki
                    .serving
                    .as_ref()
                    .and_then(|s| CertInfo::of_pem(&s.cert_pem, "serving").ok());
                tracing::info!(
                    serial = leaf.as_ref().map(|l| l.serial.as_str()),
                    not_after = leaf.as_ref().map(|l| crate::rfc3339(l.not_after)),
                    %reason,
                    "issued a serving certificate"
                );
                if reason != crate::rotation::FIRST_ISSUE
                    && let Some(m) = &self.metrics
                {
                    m.rotated("serving");
                }
            }
        }
    }
}
