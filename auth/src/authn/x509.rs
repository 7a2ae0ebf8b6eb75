//! Client certificates: the chain must verify against the client CA for client
//! authentication; the user is the subject's CN and each O a group, as kube-apiserver reads
//! them. The TLS layer may have verified the chain against a wider pool (several CAs share
//! one listener), so it is verified again here against this authenticator's own CA.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::{
    pki_types::{CertificateDer, UnixTime},
    server::danger::ClientCertVerifier,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use zen_certs::tls::ClientCa;
use zen_serving::ConnectionInfo;

use super::{Authenticator, AuthnError, AuthnFuture};
use crate::UserInfo;

/// How long a verified chain is trusted before it is verified again.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Chains remembered at once; the cache is emptied when full.
const CACHE_ENTRIES: usize = 4096;

/// The user a verified chain names (none without a CN), and until when that holds.
type Verdict = (Option<UserInfo>, Instant, u64);

pub struct ClientCertAuthenticator {
    verifier: Arc<ClientCa>,
    /// Verified chains by digest: a signature check per request would cost more than the
    /// request (keep-alive connections send thousands).
    cache: Mutex<HashMap<[u8; 32], Verdict>>,
}

impl ClientCertAuthenticator {
    /// An authenticator for certificates issued by the CAs of `client_ca`, following it
    /// when its CAs are replaced.
    pub fn new(client_ca: Arc<ClientCa>) -> Self {
        Self {
            verifier: client_ca,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// An authenticator for certificates issued by any CA in the PEM bundle `ca_pem`.
    pub fn from_pem(ca_pem: &str) -> Result<Self, AuthnError> {
        let client_ca =
            ClientCa::new(ca_pem, false).map_err(|e| AuthnError::ClientCa(e.to_string()))?;
        Ok(Self::new(client_ca))
    }

    fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<Option<UserInfo>, AuthnError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Ok(None);
        };
        let mut digest = Sha256::new();
        for cert in chain {
            digest.update((cert.len() as u64).to_be_bytes());
            digest.update(cert.as_ref());
        }
        let key: [u8; 32] = digest.finalize().into();
        let now = Instant::now();
        let generation = self.verifier.generation();
        if let Ok(cache) = self.cache.lock()
            && let Some((user, until, verified_with)) = cache.get(&key)
            && *until > now
            && *verified_with == generation
        {
            return Ok(user.clone());
        }
        let (_, parsed) =
            X509Certificate::from_der(leaf.as_ref()).map_err(|e| AuthnError::Certificate {
                subject: String::new(),
                reason: format!("unparsable certificate: {e}"),
            })?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| AuthnError::Certificate {
                subject: parsed.subject().to_string(),
                reason: e.to_string(),
            })?;
        let user = user_of(&parsed);
        // Never trust a cached verdict past the certificate's end.
        let left = parsed
            .validity()
            .time_to_expiration()
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (user.clone(), now + CACHE_TTL.min(left), generation));
        }
        Ok(user)
    }
}

/// CN is the user, each O a group; no CN, no user (the next method is tried).
fn user_of(cert: &X509Certificate<'_>) -> Option<UserInfo> {
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(UserInfo {
        name,
        groups,
        ..UserInfo::default()
    })
}

impl Authenticator for ClientCertAuthenticator {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a> {
        let chain = req
            .extensions
            .get::<ConnectionInfo>()
            .and_then(|c| c.peer_certificates.clone());
        Box::pin(async move {
            match chain {
                Some(chain) => self.verify(&chain),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zen_certs::issue::Ca;

    use super::*;
    use crate::authn::Authentication;

    const DAY: Duration = Duration::from_secs(86_400);

    fn request(chain: Option<Vec<CertificateDer<'static>>>) -> http::request::Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.extensions.insert(ConnectionInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            peer_certificates: chain.map(Arc::new),
            server_name: None,
        });
        parts
    }

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        zen_certs::tls::certs_from_pem(pem, "test").unwrap()
    }

    #[tokio::test]
    async fn cn_is_the_user_and_o_the_groups() {
        let ca = Ca::generate("client-ca", DAY).unwrap();
        let authn = Authentication::new(
            vec![Arc::new(
                ClientCertAuthenticator::from_pem(&ca.pem.cert_pem).unwrap(),
            )],
            false,
        );
        let alice = ca.issue_client("alice", Some("devs"), DAY).unwrap();
        let req = request(Some(chain(&alice.cert_pem)));
        for _ in 0..2 {
            // The second answer comes from the cache and must be the same.
            let user = authn.authenticate(&req).await.unwrap();
            assert_eq!(user.name, "alice");
            assert_eq!(user.groups, ["devs", "system:authenticated"]);
        }
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_is_refused_and_no_certificate_is_anonymous() {
        let ca = Ca::generate("client-ca", DAY).unwrap();
        let other = Ca::generate("other-ca", DAY).unwrap();
        let method: Arc<dyn Authenticator> =
            Arc::new(ClientCertAuthenticator::from_pem(&ca.pem.cert_pem).unwrap());
        let mallory = other
            .issue_client("admin", Some("system:masters"), DAY)
            .unwrap();
        let strict = Authentication::new(vec![method.clone()], false);
        let err = strict
            .authenticate(&request(Some(chain(&mallory.cert_pem))))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthnError::Certificate { .. }), "{err}");
        // Bad credentials fail even where anonymous requests are allowed.
        let lenient = Authentication::new(vec![method], true);
        assert!(
            lenient
                .authenticate(&request(Some(chain(&mallory.cert_pem))))
                .await
                .is_err()
        );
        assert!(matches!(
            strict.authenticate(&request(None)).await,
            Err(AuthnError::NoCredentials)
        ));
        let anon = lenient.authenticate(&request(None)).await.unwrap();
        assert_eq!(anon, UserInfo::anonymous());
    }

    #[tokio::test]
    async fn a_serving_certificate_is_not_a_client_certificate() {
        let ca = Ca::generate("client-ca", DAY).unwrap();
        let authn = ClientCertAuthenticator::from_pem(&ca.pem.cert_pem).unwrap();
        let server = ca.issue_serving(&["zen-watcher".into()], &[], DAY).unwrap();
        let err = authn
            .authenticate(&request(Some(chain(&server.cert_pem))))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("zen-watcher"), "{err}");
    }
}
