//! Who sent a delivery: the signature schemes of known senders, a generic HMAC scheme,
//! bearer tokens. Every comparison of secret material is constant-time.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use std::sync::Arc;

use rustls::{
    pki_types::{CertificateDer, UnixTime},
    server::danger::ClientCertVerifier,
};
use subtle::ConstantTimeEq;
use zen_certs::tls::ClientCa;
use zen_crds::ingestor::{HmacAlgorithm, HmacPreset, HmacSettings, SignatureEncoding};

/// Why a delivery was refused before it was read; the reason labels metrics and is told to
/// the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the delivery carries no signature")]
    MissingSignature,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signed timestamp is missing or malformed")]
    BadTimestamp,
    #[error("the signed timestamp is outside the tolerance window")]
    StaleTimestamp,
    #[error("this delivery id was already received")]
    Replayed,
    #[error("the delivery was sent without a client certificate")]
    MissingCertificate,
    #[error("the client certificate is not issued by a trusted CA of this endpoint")]
    BadCertificate,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing_signature",
            Rejection::BadSignature => "bad_signature",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::Replayed => "replayed",
            Rejection::MissingCertificate => "missing_certificate",
            Rejection::BadCertificate => "bad_certificate",
        }
    }
}

/// How a signature is carried and computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Scheme {
    /// Anyone may deliver.
    None,
    /// A client certificate issued by a CA of the secret (a PEM bundle).
    Mtls,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// The secret itself in a header (GitLab's `X-Gitlab-Token`).
    Token { header: String },
    /// An HMAC of the body in a header, hex or base64, after an optional prefix
    /// (GitHub's `X-Hub-Signature-256: sha256=...`, or any sender's generic scheme).
    BodyHmac {
        header: String,
        prefix: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
    },
    /// Standard Webhooks: HMAC-SHA256 of `{id}.{timestamp}.{body}` with the base64 key after
    /// `whsec_`, in `webhook-signature` as space-separated `v1,<base64>`.
    StandardWebhooks,
    /// Stripe: HMAC-SHA256 of `{t}.{body}`, hex, in `Stripe-Signature: t=...,v1=...`.
    Stripe,
}

impl Scheme {
    /// The scheme an Ingestor's `hmac` settings describe.
    pub fn hmac(settings: &HmacSettings) -> Self {
        let algorithm = settings.algorithm.unwrap_or(HmacAlgorithm::Sha256);
        let encoding = settings.encoding.unwrap_or(SignatureEncoding::Hex);
        match settings.preset {
            Some(HmacPreset::Github) => Scheme::BodyHmac {
                header: "x-hub-signature-256".into(),
                prefix: "sha256=".into(),
                algorithm: HmacAlgorithm::Sha256,
                encoding: SignatureEncoding::Hex,
            },
            Some(HmacPreset::Gitlab) => Scheme::Token {
                header: "x-gitlab-token".into(),
            },
            Some(HmacPreset::StandardWebhooks) => Scheme::StandardWebhooks,
            Some(HmacPreset::Stripe) => Scheme::Stripe,
            Some(HmacPreset::Generic) | None => Scheme::BodyHmac {
                header: settings
                    .header
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                prefix: settings.prefix.clone().unwrap_or_default(),
                algorithm,
                encoding,
            },
        }
    }

    /// The header a preset carries its delivery id in, if any.
    pub fn delivery_id_header(preset: Option<HmacPreset>) -> Option<&'static str> {
        match preset {
            Some(HmacPreset::Github) => Some("x-github-delivery"),
            Some(HmacPreset::StandardWebhooks) => Some("webhook-id"),
            _ => None,
        }
    }
}

/// A scheme with the secrets that verify it: the current one first, then older ones still
/// accepted while a rotation settles.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub scheme: Scheme,
    pub secrets: Vec<Vec<u8>>,
    /// For mtls, the secrets as client-CA verifiers, built once.
    client_cas: Vec<Arc<ClientCa>>,
}

/// What a verified delivery proved beyond its origin.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed delivery time (Unix seconds), where the scheme signs one.
    pub timestamp: Option<i64>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn mac(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

fn decode(encoding: SignatureEncoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => decode_hex(text.trim()),
        SignatureEncoding::Base64 => STANDARD.decode(text.trim()).ok(),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Constant-time equality; lengths are not secret.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Verifier {
    /// A verifier; for mtls every secret must be a PEM bundle of CA certificates.
    pub fn new(scheme: Scheme, secrets: Vec<Vec<u8>>) -> Result<Self, String> {
        let client_cas = match scheme {
            Scheme::Mtls => secrets
                .iter()
                .map(|pem| {
                    ClientCa::new(&String::from_utf8_lossy(pem), true)
                        .map_err(|e| format!("the client CA bundle is unusable: {e}"))
                })
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        Ok(Self {
            scheme,
            secrets,
            client_cas,
        })
    }

    /// Checks a delivery. `tolerance` bounds the age (and future skew) of signed timestamps;
    /// `peer` is the client's certificate chain, leaf first, as the TLS layer received it.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<&[CertificateDer<'static>]>,
        now: i64,
        tolerance: i64,
    ) -> Result<Verified, Rejection> {
        let any = |check: &dyn Fn(&[u8]) -> bool| self.secrets.iter().any(|s| check(s));
        match &self.scheme {
            Scheme::None => Ok(Verified::default()),
            Scheme::Mtls => {
                let (leaf, intermediates) = peer
                    .and_then(<[_]>::split_first)
                    .ok_or(Rejection::MissingCertificate)?;
                let trusted = self.client_cas.iter().any(|ca| {
                    ca.verify_client_cert(leaf, intermediates, UnixTime::now())
                        .is_ok()
                });
                if trusted {
                    Ok(Verified::default())
                } else {
                    Err(Rejection::BadCertificate)
                }
            }
            Scheme::Bearer => {
                let token = header(headers, "authorization")
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .ok_or(Rejection::MissingSignature)?;
                if any(&|s| same(s, token.trim().as_bytes())) {
                    Ok(Verified::default())
                } else {
                    Err(Rejection::BadSignature)
                }
            }
            Scheme::Token { header: name } => {
                let token = header(headers, name).ok_or(Rejection::MissingSignature)?;
                if any(&|s| same(s, token.as_bytes())) {
                    Ok(Verified::default())
                } else {
                    Err(Rejection::BadSignature)
                }
            }
            Scheme::BodyHmac {
                header: name,
                prefix,
                algorithm,
                encoding,
            } => {
                let value = header(headers, name).ok_or(Rejection::MissingSignature)?;
                let given = value
                    .strip_prefix(prefix.as_str())
                    .and_then(|v| decode(*encoding, v))
                    .ok_or(Rejection::BadSignature)?;
                if any(&|s| same(&mac(*algorithm, s, &[body]), &given)) {
                    Ok(Verified::default())
                } else {
                    Err(Rejection::BadSignature)
                }
            }
            Scheme::StandardWebhooks => {
                let id = header(headers, "webhook-id").ok_or(Rejection::MissingSignature)?;
                let ts_text =
                    header(headers, "webhook-timestamp").ok_or(Rejection::MissingSignature)?;
                let signatures =
                    header(headers, "webhook-signature").ok_or(Rejection::MissingSignature)?;
                let ts = fresh(ts_text, now, tolerance)?;
                let given: Vec<Vec<u8>> = signatures
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| STANDARD.decode(s).ok())
                    .collect();
                let ok = any(&|secret| {
                    let key = standard_webhooks_key(secret);
                    let want = mac(
                        HmacAlgorithm::Sha256,
                        &key,
                        &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
                    );
                    given.iter().any(|g| same(&want, g))
                });
                if ok {
                    Ok(Verified {
                        timestamp: Some(ts),
                    })
                } else {
                    Err(Rejection::BadSignature)
                }
            }
            Scheme::Stripe => {
                let value =
                    header(headers, "stripe-signature").ok_or(Rejection::MissingSignature)?;
                let mut t = None;
                let mut given = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v),
                        Some(("v1", v)) => given.extend(decode_hex(v)),
                        _ => {}
                    }
                }
                let t_text = t.ok_or(Rejection::BadTimestamp)?;
                let ts = fresh(t_text, now, tolerance)?;
                let ok = any(&|secret| {
                    let want = mac(
                        HmacAlgorithm::Sha256,
                        secret,
                        &[t_text.as_bytes(), b".", body],
                    );
                    given.iter().any(|g| same(&want, g))
                });
                if ok {
                    Ok(Verified {
                        timestamp: Some(ts),
                    })
                } else {
                    Err(Rejection::BadSignature)
                }
            }
        }
    }
}

/// A Standard Webhooks secret is `whsec_` and the base64 of the key.
fn standard_webhooks_key(secret: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(secret);
    let b64 = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
    STANDARD.decode(b64).unwrap_or_else(|_| secret.to_vec())
}

/// The timestamp, if it is within `tolerance` seconds of `now` either way.
fn fresh(text: &str, now: i64, tolerance: i64) -> Result<i64, Rejection> {
    let ts: i64 = text.trim().parse().map_err(|_| Rejection::BadTimestamp)?;
    if (now - ts).abs() > tolerance {
        return Err(Rejection::StaleTimestamp);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn preset(p: HmacPreset, secret: &str) -> Verifier {
        Verifier::new(
            Scheme::hmac(&HmacSettings {
                preset: Some(p),
                header: None,
                prefix: None,
                algorithm: None,
                encoding: None,
            }),
            vec![secret.as_bytes().to_vec()],
        )
        .unwrap()
    }

    /// GitHub's documented test values ("Validating webhook deliveries").
    #[test]
    fn github_test_vector() {
        let v = preset(HmacPreset::Github, "It's a Secret to Everybody");
        let good = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert!(v.verify(&good, b"Hello, World!", None, 0, 300).is_ok());
        assert_eq!(
            v.verify(&good, b"Hello, World?", None, 0, 300),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), b"Hello, World!", None, 0, 300),
            Err(Rejection::MissingSignature)
        );
    }

    /// The Standard Webhooks specification's example.
    #[test]
    fn standard_webhooks_test_vector() {
        let v = preset(
            HmacPreset::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            v.verify(&h, body, None, 1614265330, 300),
            Ok(Verified {
                timestamp: Some(1614265330)
            })
        );
        assert_eq!(
            v.verify(&h, body, None, 1614265330 + 301, 300),
            Err(Rejection::StaleTimestamp)
        );
    }

    #[test]
    fn stripe_signs_timestamp_and_body() {
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let t = "1700000000";
        let sig = mac(
            HmacAlgorithm::Sha256,
            secret.as_bytes(),
            &[t.as_bytes(), b".", body],
        );
        let hex = crate::pipeline::hex(&sig);
        let v = preset(HmacPreset::Stripe, secret);
        let h = headers(&[("stripe-signature", &format!("t={t},v1=00ff,v1={hex}"))]);
        assert!(v.verify(&h, body, None, 1_700_000_010, 300).is_ok());
        let h = headers(&[("stripe-signature", &format!("t=1700000001,v1={hex}"))]);
        assert_eq!(
            v.verify(&h, body, None, 1_700_000_010, 300),
            Err(Rejection::BadSignature),
            "the timestamp is part of what is signed"
        );
    }

    #[test]
    fn gitlab_token_bearer_and_rotation() {
        let mut v = preset(HmacPreset::Gitlab, "new-token");
        v.secrets.push(b"old-token".to_vec());
        for token in ["new-token", "old-token"] {
            assert!(
                v.verify(&headers(&[("x-gitlab-token", token)]), b"{}", None, 0, 0)
                    .is_ok()
            );
        }
        assert_eq!(
            v.verify(&headers(&[("x-gitlab-token", "other")]), b"{}", None, 0, 0),
            Err(Rejection::BadSignature)
        );
        let bearer = Verifier::new(Scheme::Bearer, vec![b"t0k3n".to_vec()]).unwrap();
        assert!(
            bearer
                .verify(
                    &headers(&[("authorization", "Bearer t0k3n")]),
                    b"",
                    None,
                    0,
                    0
                )
                .is_ok()
        );
        assert_eq!(
            bearer.verify(
                &headers(&[("authorization", "Bearer nope")]),
                b"",
                None,
                0,
                0
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn generic_sha1_base64() {
        let v = Verifier::new(
            Scheme::hmac(&HmacSettings {
                preset: None,
                header: Some("X-Signature".into()),
                prefix: None,
                algorithm: Some(HmacAlgorithm::Sha1),
                encoding: Some(SignatureEncoding::Base64),
            }),
            vec![b"key".to_vec()],
        )
        .unwrap();
        let sig = STANDARD.encode(mac(HmacAlgorithm::Sha1, b"key", &[b"payload"]));
        assert!(
            v.verify(&headers(&[("x-signature", &sig)]), b"payload", None, 0, 0)
                .is_ok()
        );
    }
}
