//! Bearer tokens, reviewed by kube-apiserver (`TokenReview`), as delegated authentication
//! does it. Answers are cached briefly (ten seconds, like kube-apiserver's webhook token
//! cache) by a digest of the token.

use std::time::Duration;

use serde_json::{Value, json};
use zen_kube::Client;

use super::{Authenticator, AuthnError, AuthnFuture};
use crate::{UserInfo, cache::Cache};

const TTL: Duration = Duration::from_secs(10);
const ENTRIES: usize = 4096;

pub struct TokenReviewAuthenticator {
    client: Client,
    audiences: Vec<String>,
    cache: Cache<Result<UserInfo, String>>,
}

impl TokenReviewAuthenticator {
    pub fn new(client: Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: Cache::new(TTL, ENTRIES),
        }
    }

    async fn review(&self, token: &str) -> Result<UserInfo, AuthnError> {
        let key = Cache::<()>::key(&[token.as_bytes()]);
        if let Some(answer) = self.cache.get(&key) {
            return answer.map_err(AuthnError::Token);
        }
        let mut spec = json!({"token": token});
        if !self.audiences.is_empty() {
            spec["audiences"] = json!(self.audiences);
        }
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        // Unavailability is not an answer: not cached.
        let answer = self
            .client
            .create("/apis/authentication.k8s.io/v1/tokenreviews", &review)
            .await
            .map_err(|e| AuthnError::Unavailable(e.to_string()))?;
        let result = user_of_review(&answer);
        self.cache.put(key, result.clone());
        result.map_err(AuthnError::Token)
    }
}

/// The user a TokenReview answer authenticates, or why not.
pub fn user_of_review(review: &Value) -> Result<UserInfo, String> {
    let status = &review["status"];
    if status["authenticated"] != true {
        return Err(status["error"]
            .as_str()
            .filter(|e| !e.is_empty())
            .unwrap_or("the token was not authenticated")
            .to_owned());
    }
    let user = &status["user"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(UserInfo {
        name: user["username"].as_str().unwrap_or_default().to_owned(),
        uid: user["uid"].as_str().unwrap_or_default().to_owned(),
        groups: strings(&user["groups"]),
        extra: user["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    })
}

impl Authenticator for TokenReviewAuthenticator {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a> {
        Box::pin(async move {
            let Some(token) = req
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
            else {
                return Ok(None);
            };
            self.review(token).await.map(Some)
        })
    }
}
