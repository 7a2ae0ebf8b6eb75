//! A revisioned key-value store with watches, on the model of etcd: the storage trait of the
//! aggregated API and its embedded redb implementation (issue: aggregated API server). Nothing
//! is implemented yet.
