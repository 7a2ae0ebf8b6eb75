//! `continue` tokens: where a paginated list stopped and at which revision, as an opaque
//! base64 string like kube-apiserver's (`{"v":"meta.k8s.io/v1","rv":N,"start":"key"}`).

use base64::{Engine, engine::general_purpose::URL_SAFE};
use serde::{Deserialize, Serialize};

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    #[serde(rename = "v")]
    pub version: String,
    #[serde(rename = "rv")]
    pub revision: u64,
    /// The flat key of the last item returned; the next page starts after it.
    #[serde(rename = "start")]
    pub after: String,
}

impl ContinueToken {
    pub fn new(revision: u64, after: String) -> Self {
        Self {
            version: "meta.k8s.io/v1".into(),
            revision,
            after,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(token: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
        let raw = URL_SAFE.decode(token).map_err(|_| bad())?;
        let t: Self = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if t.version != "meta.k8s.io/v1" {
            return Err(bad());
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let t = ContinueToken::new(42, "observations/default/a".into());
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert_eq!(
            ContinueToken::decode("!!").unwrap_err().code(),
            http::StatusCode::BAD_REQUEST
        );
        assert!(ContinueToken::decode(&URL_SAFE.encode(b"{}")).is_err());
    }
}
