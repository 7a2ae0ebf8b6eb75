//! What a request asks for, read from its method and path the way kube-apiserver's
//! `RequestInfoFactory` does. Routing, authorization (SubjectAccessReview attributes) and
//! metrics all use the same reading.

use zen_crds::{API_GROUP, VERSION};

/// A request for a resource of `zen.watcher.io/v1alpha1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    /// Empty for requests across all namespaces.
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Every kind of request the secure port distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfo {
    /// A resource request, with its Kubernetes verb.
    Resource(ResourceRequest),
    /// A path that is not a resource (discovery, OpenAPI, health, version, admission);
    /// `verb` is the lower-cased HTTP method as kube-apiserver reports it.
    NonResource { path: String, verb: String },
}

impl RequestInfo {
    /// Reads `method`, `path` and whether the query asks for a watch.
    pub fn parse(method: &http::Method, path: &str, watch_param: bool) -> RequestInfo {
        let non_resource = || RequestInfo::NonResource {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
        };
        let prefix = format!("/apis/{API_GROUP}/{VERSION}/");
        let Some(rest) = path.strip_prefix(&prefix) else {
            return non_resource();
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        if parts.last() == Some(&"") {
            parts.pop();
        }
        // The deprecated `/watch/` path prefix means a watch of whatever follows.
        let mut watch = watch_param;
        if parts.first() == Some(&"watch") {
            parts.remove(0);
            watch = true;
        }
        if parts.iter().any(|p| p.is_empty()) {
            return non_resource();
        }
        let (namespace, rest): (Option<String>, &[&str]) = match parts.as_slice() {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            rest => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
            _ => return non_resource(),
        };
        let verb = match (method.as_str(), name.is_some()) {
            ("GET" | "HEAD", false) if watch => "watch",
            ("GET" | "HEAD", true) if watch => "watch",
            ("GET" | "HEAD", false) => "list",
            ("GET" | "HEAD", true) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", false) => "deletecollection",
            ("DELETE", true) => "delete",
            _ => return non_resource(),
        };
        RequestInfo::Resource(ResourceRequest {
            verb,
            namespace,
            resource: resource.to_owned(),
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn res(
        verb: &'static str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> RequestInfo {
        RequestInfo::Resource(ResourceRequest {
            verb,
            namespace: ns.map(str::to_owned),
            resource: "observations".to_owned(),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        })
    }

    #[test]
    fn verbs_follow_kube_apiserver() {
        let base = "/apis/zen.watcher.io/v1alpha1";
        let cases = [
            (
                Method::GET,
                format!("{base}/observations"),
                false,
                res("list", None, None, None),
            ),
            (
                Method::GET,
                format!("{base}/observations"),
                true,
                res("watch", None, None, None),
            ),
            (
                Method::GET,
                format!("{base}/namespaces/default/observations"),
                false,
                res("list", Some("default"), None, None),
            ),
            (
                Method::GET,
                format!("{base}/namespaces/default/observations/foo"),
                false,
                res("get", Some("default"), Some("foo"), None),
            ),
            (
                Method::GET,
                format!("{base}/namespaces/default/observations/foo"),
                true,
                res("watch", Some("default"), Some("foo"), None),
            ),
            (
                Method::GET,
                format!("{base}/watch/namespaces/default/observations"),
                false,
                res("watch", Some("default"), None, None),
            ),
            (
                Method::POST,
                format!("{base}/namespaces/default/observations"),
                false,
                res("create", Some("default"), None, None),
            ),
            (
                Method::PUT,
                format!("{base}/namespaces/default/observations/foo"),
                false,
                res("update", Some("default"), Some("foo"), None),
            ),
            (
                Method::PATCH,
                format!("{base}/namespaces/default/observations/foo/status"),
                false,
                res("patch", Some("default"), Some("foo"), Some("status")),
            ),
            (
                Method::DELETE,
                format!("{base}/namespaces/default/observations/foo"),
                false,
                res("delete", Some("default"), Some("foo"), None),
            ),
            (
                Method::DELETE,
                format!("{base}/namespaces/default/observations"),
                false,
                res("deletecollection", Some("default"), None, None),
            ),
        ];
        for (method, path, watch, want) in cases {
            assert_eq!(
                RequestInfo::parse(&method, &path, watch),
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn other_paths_are_non_resource() {
        for path in [
            "/apis",
            "/apis/zen.watcher.io/v1alpha1",
            "/healthz",
            "/openapi/v2",
            "/apis/zen.watcher.io/v1alpha1//x",
        ] {
            assert!(
                matches!(
                    RequestInfo::parse(&Method::GET, path, false),
                    RequestInfo::NonResource { .. }
                ),
                "{path}"
            );
        }
        assert_eq!(
            RequestInfo::parse(&Method::GET, "/apis", false),
            RequestInfo::NonResource {
                path: "/apis".into(),
                verb: "get".into()
            }
        );
    }
}
