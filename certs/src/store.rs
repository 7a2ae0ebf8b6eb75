//! Where the self-managed PKI is kept: Secrets in a cluster (`serve`), files in `dev`.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
};

use crate::{
    CertError,
    pki::{CA_SECRET, SecretData, Secrets, TLS_SECRET},
};

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CertError>> + Send + 'a>>;

/// The two Secrets' data, read and written whole.
pub trait CertStore: Send + Sync {
    fn load(&self) -> StoreFuture<'_, Secrets>;
    fn save<'a>(&'a self, secrets: &'a Secrets) -> StoreFuture<'a, ()>;
}

/// The Secrets as JSON files `zen-watcher-ca.json` and `zen-watcher-tls.json` in a private
/// directory, each replaced atomically (written aside, synced, renamed).
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: &Path) -> Result<Self, CertError> {
        create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, secret: &str) -> PathBuf {
        self.dir.join(format!("{secret}.json"))
    }

    fn read(&self, secret: &str) -> Result<Option<SecretData>, CertError> {
        let path = self.path(secret);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CertError::Invalid {
                path: path.display().to_string(),
                message: format!("not a JSON object of strings: {e}"),
            })
    }

    /// A PKI directory from before the Secrets layout: its `ca.crt`/`ca.key` and
    /// `tls.crt`/`tls.key`, so existing kubeconfigs keep working.
    fn read_legacy(&self) -> Result<Secrets, CertError> {
        let pair = |cert: &str, key: &str| -> Result<Option<SecretData>, CertError> {
            match (
                read_optional(&self.dir.join(cert))?,
                read_optional(&self.dir.join(key))?,
            ) {
                (Some(c), Some(k)) => Ok(Some(SecretData::from([
                    (cert.to_owned(), c),
                    (key.to_owned(), k),
                ]))),
                _ => Ok(None),
            }
        };
        Ok(Secrets {
            ca: pair("ca.crt", "ca.key")?,
            tls: pair("tls.crt", "tls.key")?,
        })
    }
}

impl CertStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Secrets> {
        Box::pin(async move {
            let ca = self.read(CA_SECRET)?;
            if ca.is_none() {
                return self.read_legacy();
            }
            Ok(Secrets {
                ca,
                tls: self.read(TLS_SECRET)?,
            })
        })
    }

    fn save<'a>(&'a self, secrets: &'a Secrets) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            for (name, data) in [(CA_SECRET, &secrets.ca), (TLS_SECRET, &secrets.tls)] {
                if let Some(data) = data {
                    let json = serde_json::to_string_pretty(data)
                        .map_err(|e| CertError::Issue(e.to_string()))?;
                    write_file(&self.path(name), json.as_bytes(), true)?;
                }
            }
            Ok(())
        })
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CertError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Replaces `path` atomically; `private` files are readable by the owner only.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(contents).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}
