/// What a store operation can fail with. The API layer maps each to a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("the object has been modified (current revision {current})")]
    Conflict { current: u64 },
    #[error("revision {requested} is older than the oldest kept ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("revision {requested} is newer than the store's ({current})")]
    FutureRevision { requested: u64, current: u64 },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}
