//! Who is calling: the user a request authenticates as, found the way kube-apiserver finds
//! it. Authorization (issue 6) builds on the [`UserInfo`] this crate puts on requests.

pub mod authn;
pub mod authz;
mod cache;
mod user;

pub use user::UserInfo;
