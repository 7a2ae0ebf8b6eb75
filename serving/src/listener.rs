//! Accept loops for TLS and plain TCP.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use rustls::{ServerConfig, pki_types::CertificateDer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::Body;

/// What is known about the connection a request arrived on. Inserted into every request's
/// extensions; authentication reads the peer certificates from here.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    /// The client's certificate chain, leaf first, as verified by the TLS layer; `None` when
    /// the client presented none (or on plain TCP).
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The TLS server name the client asked for (SNI).
    pub server_name: Option<String>,
}

/// Limits of a listener.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request's headers to arrive (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// Streams per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// How long a graceful shutdown waits for open requests (watches end at once).
    pub drain_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_concurrent_streams: 250,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `service` over TLS on `listener` until `shutdown` completes, then drains.
pub async fn serve_tls<S, F>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    service: S,
    options: ServerOptions,
    shutdown: F,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let acceptor = TlsAcceptor::from(tls);
    serve(
        listener,
        service,
        options,
        shutdown,
        move |tcp, remote, opts| {
            let acceptor = acceptor.clone();
            async move {
                let tls = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return None;
                    }
                };
                let (_, session) = tls.get_ref();
                let info = ConnectionInfo {
                    remote,
                    peer_certificates: session
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
                    server_name: session.server_name().map(str::to_owned),
                };
                Some((TokioIo::new(tls), info))
            }
        },
    )
    .await
}

/// Serves `service` over plain TCP (the metrics port).
pub async fn serve_plain<S, F>(
    listener: TcpListener,
    service: S,
    options: ServerOptions,
    shutdown: F,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    serve(
        listener,
        service,
        options,
        shutdown,
        |tcp, remote, _| async move {
            let info = ConnectionInfo {
                remote,
                peer_certificates: None,
                server_name: None,
            };
            Some((TokioIo::new(tcp), info))
        },
    )
    .await
}

async fn serve<S, F, H, HF, IO>(
    listener: TcpListener,
    service: S,
    options: ServerOptions,
    shutdown: F,
    handshake: H,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
    H: Fn(tokio::net::TcpStream, SocketAddr, ServerOptions) -> HF + Clone + Send + 'static,
    HF: Future<Output = Option<(IO, ConnectionInfo)>> + Send + 'static,
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let handshake = handshake.clone();
        let service = service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let opts = options.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some((io, info)) = handshake(tcp, remote, opts).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(info.clone());
                service.clone().oneshot(req)
            });
            let conn = builder.serve_connection_with_upgrades(io, svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("graceful shutdown timed out; closing remaining connections");
        }
    }
}
