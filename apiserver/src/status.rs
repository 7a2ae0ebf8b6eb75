//! The API's errors and their one conversion to `metav1.Status`, worded as kube-apiserver
//! words them so kubectl prints what users already know.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use zen_crds::API_GROUP;
use zen_serving::{Body, full};

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: String,
    /// The error without its field, e.g. `Unsupported value: "x": supported values: ...`
    /// (kubectl prints `field: message`).
    pub message: String,
    /// Dotted field path, e.g. `spec.severity`.
    pub field: String,
}

/// Every way a request can fail. Handlers return these; [`ApiError::into_response`] is the
/// only place that turns them into HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{resource}.{API_GROUP} {name:?} not found")]
    NotFound { resource: String, name: String },
    #[error("{resource}.{API_GROUP} {name:?} already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource}.{API_GROUP} {name:?}: {detail}")]
    Conflict {
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{}", invalid_message(kind, name, causes))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
}

/// The detail of a Conflict on a stale resourceVersion.
pub const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn invalid_message(kind: &str, name: &str, causes: &[Cause]) -> String {
    let list: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    let joined = match list.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("{kind}.{API_GROUP} {name:?} is invalid: {joined}")
}

impl Cause {
    /// A cause from a full apimachinery field error text (`field: message`).
    pub fn from_field_error(reason: &str, field: &str, full_message: &str) -> Self {
        let message = full_message
            .strip_prefix(field)
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(full_message)
            .to_owned();
        Self {
            reason: reason.to_owned(),
            message,
            field: field.to_owned(),
        }
    }
}

impl ApiError {
    pub fn code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Expired(_) => StatusCode::GONE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `metav1.StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Unauthorized(_) => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Expired(_) => "Expired",
            Self::MethodNotAllowed(_) => "MethodNotAllowed",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Self::Invalid { .. } => "Invalid",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Internal(_) => "InternalError",
            Self::Unavailable(_) => "ServiceUnavailable",
            Self::Timeout(_) => "Timeout",
        }
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. } => {
                Some(json!({"name": name, "group": API_GROUP, "kind": resource}))
            }
            Self::Invalid { kind, name, causes } => Some(json!({
                "name": name,
                "group": API_GROUP,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.message, "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            Self::TooManyRequests {
                retry_after_seconds,
                ..
            } => Some(json!({"retryAfterSeconds": retry_after_seconds})),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.code();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::TooManyRequests {
            retry_after_seconds,
            ..
        } = &self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kube_apiserver() {
        let e = ApiError::NotFound {
            resource: "observations".into(),
            name: "foo".into(),
        };
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "observations.zen.watcher.io \"foo\" not found"
        );
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(
            s["details"],
            json!({"name": "foo", "group": "zen.watcher.io", "kind": "observations"})
        );
    }

    #[test]
    fn conflict_and_invalid() {
        let e = ApiError::Conflict {
            resource: "observations".into(),
            name: "foo".into(),
            detail: MODIFIED.into(),
        };
        assert_eq!(
            e.to_string(),
            "Operation cannot be fulfilled on observations.zen.watcher.io \"foo\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let cause = |f: &str| Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: f.into(),
        };
        let one = ApiError::Invalid {
            kind: "Observation".into(),
            name: "x".into(),
            causes: vec![cause("spec.source")],
        };
        assert_eq!(
            one.to_string(),
            "Observation.zen.watcher.io \"x\" is invalid: spec.source: Required value"
        );
        let two = ApiError::Invalid {
            kind: "Observation".into(),
            name: "x".into(),
            causes: vec![cause("spec.a"), cause("spec.b")],
        };
        assert_eq!(
            two.to_string(),
            "Observation.zen.watcher.io \"x\" is invalid: [spec.a: Required value, spec.b: Required value]"
        );
        assert_eq!(two.to_status()["details"]["causes"][1]["field"], "spec.b");
        assert_eq!(two.code(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
