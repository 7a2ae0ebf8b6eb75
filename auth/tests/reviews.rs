//! TokenReview and SubjectAccessReview against a kube-apiserver stand-in over TLS and
//! HTTP/2 that answers with the replies recorded from a real kube-apiserver 1.28.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http_body_util::BodyExt;
use serde_json::{Value, json};
use zen_auth::{
    UserInfo,
    authn::{Authentication, AuthnError, TokenReviewAuthenticator},
    authz::{Attributes, Authorizer, Decision, SubjectAccessReviewer, review_of},
};
use zen_certs::{issue::Ca, tls};
use zen_kube::{Auth, Client, ClusterConfig};

const RECORDINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/kube-apiserver-1.28/authn"
);

fn recording(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{RECORDINGS}/{name}")).unwrap()).unwrap()
}

/// A request the stand-in received: path, Authorization header, JSON body.
type Seen = (String, Option<String>, Value);

struct Replay {
    client: Client,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves the recorded answers: the recorded token is authenticated as recorded, any other
/// is not; a SubjectAccessReview gets the recorded answer for its verb (list: allowed,
/// anything else: denied).
async fn replay() -> Replay {
    let ca = Ca::generate("replay-ca", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue_serving(&["localhost".into()], &[], Duration::from_secs(3600))
        .unwrap();
    let config = tls::server_config(
        tls::ServingCert::new(tls::certified_key(&leaf.cert_pem, &leaf.key_pem, "replay").unwrap()),
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let token_review = recording("tokenreview-serviceaccount-pod-bound.json");
    let allowed = recording("subjectaccessreview-allowed.json")["response"]["body"].clone();
    let denied = recording("subjectaccessreview-denied.json")["response"]["body"].clone();
    let (c, s) = (calls.clone(), seen.clone());
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (calls, seen) = (c.clone(), s.clone());
        let (token_review, allowed, denied) =
            (token_review.clone(), allowed.clone(), denied.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value =
                serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
                    .unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push((path.clone(), auth, body.clone()));
            let answer = match path.as_str() {
                "/apis/authentication.k8s.io/v1/tokenreviews" => {
                    if body["spec"]["token"]
                        == token_review["request"]["stdinToKubectl"]["spec"]["token"]
                    {
                        token_review["response"]["body"].clone()
                    } else {
                        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                               "status": {"authenticated": false, "error": "invalid bearer token"}})
                    }
                }
                "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                    if body["spec"]["resourceAttributes"]["verb"] == "list" {
                        allowed
                    } else {
                        denied
                    }
                }
                _ => json!({"kind": "Status", "code": 404}),
            };
            let mut resp = http::Response::new(zen_serving::full(answer.to_string()));
            *resp.status_mut() = http::StatusCode::CREATED;
            Ok::<_, Infallible>(resp)
        }
    });
    tokio::spawn(zen_serving::serve_tls(
        listener,
        Arc::new(config),
        service,
        zen_serving::ServerOptions::default(),
        std::future::pending(),
    ));
    let client = Client::new(ClusterConfig {
        server: format!("https://127.0.0.1:{port}"),
        ca_pem: ca.pem.cert_pem.clone(),
        tls_server_name: Some("localhost".into()),
        auth: Auth::Token("zen-watcher-sa-token".into()),
        namespace: None,
    })
    .unwrap();
    Replay {
        client,
        calls,
        seen,
    }
}

fn bearer(token: &str) -> http::request::Parts {
    let (parts, ()) = http::Request::get("/apis/zen.watcher.io/v1alpha1/observations")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_service_account_token_is_reviewed_once_then_cached() {
    let r = replay().await;
    let authn = Authentication::new(
        vec![Arc::new(TokenReviewAuthenticator::new(
            r.client.clone(),
            vec![],
        ))],
        false,
    );
    let token = recording("tokenreview-serviceaccount-pod-bound.json")["request"]["stdinToKubectl"]
        ["spec"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let user = authn.authenticate(&bearer(&token)).await.unwrap();
        assert_eq!(
            user.name,
            "system:serviceaccount:zen-system:zen-capture-reader"
        );
        assert!(
            user.groups
                .contains(&"system:serviceaccounts:zen-system".to_owned())
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            ["zen-watcher-0"]
        );
    }
    assert_eq!(r.calls.load(Ordering::SeqCst), 1, "answers are cached");
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].1.as_deref(),
        Some("Bearer zen-watcher-sa-token"),
        "the client authenticates itself"
    );
    assert_eq!(seen[0].2["kind"], "TokenReview");

    let err = authn.authenticate(&bearer("forged")).await.unwrap_err();
    assert!(
        matches!(err, AuthnError::Token(ref m) if m.contains("invalid bearer token")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_reviews_follow_the_recorded_answers() {
    let r = replay().await;
    let authz = SubjectAccessReviewer::new(r.client.clone());
    let alice = UserInfo {
        name: "alice".into(),
        groups: vec!["devs".into(), "system:authenticated".into()],
        ..UserInfo::default()
    };
    let attrs = |verb: &str| Attributes::Resource {
        verb: verb.into(),
        group: "zen.watcher.io".into(),
        version: "v1alpha1".into(),
        resource: "observations".into(),
        subresource: None,
        namespace: Some("default".into()),
        name: None,
    };
    // The review sent is the one recorded (kubectl create of the same SubjectAccessReview).
    assert_eq!(
        review_of(&alice, &attrs("list")),
        recording("subjectaccessreview-allowed.json")["request"]["stdinToKubectl"]
    );
    assert_eq!(
        authz.authorize(&alice, &attrs("list")).await.unwrap(),
        Decision::Allow
    );
    assert_eq!(
        authz.authorize(&alice, &attrs("list")).await.unwrap(),
        Decision::Allow
    );
    assert!(matches!(
        authz.authorize(&alice, &attrs("delete")).await.unwrap(),
        Decision::Deny(_)
    ));
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        2,
        "one review per distinct question"
    );
    // system:masters is never asked about.
    let admin = UserInfo {
        name: "admin".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    };
    assert_eq!(
        authz.authorize(&admin, &attrs("delete")).await.unwrap(),
        Decision::Allow
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 2);
}
