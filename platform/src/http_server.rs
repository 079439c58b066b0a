//! The HTTP server every edge runs its warp routes on (ingest, the admin API, the consumers'
//! health endpoints), with the bounds warp's own server does not set:
//!
//! - a cap on open connections ([`Limits::connections_max`]); the next connection waits to be
//!   accepted instead of taking memory and file descriptors without end;
//! - a header-read timeout: a client that sends its request headers a byte at a time
//!   (slowloris) is dropped after [`Limits::header_read_timeout`];
//! - an idle timeout: a kept-alive connection with no request for [`Limits::idle_timeout`]
//!   is closed, so idle clients cannot hold the cap;
//! - security headers on every answer: `X-Content-Type-Options: nosniff`, `Cache-Control:
//!   no-store` unless the route set its own (answers hold keys, orders and reports), and on
//!   HTML a Content-Security-Policy that allows nothing but inline styles and images, unless
//!   the route set a policy of its own;
//! - the client's address for the routes ([`client_addr`]), as `warp::addr::remote` gives it
//!   under warp's own server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::Filter;
use warp::http::{HeaderValue, header};

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections_max: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The peer address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
struct ClientAddr(SocketAddr);

/// The address of the client (the TCP peer: behind a proxy, the proxy).
pub fn client_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|a: Option<ClientAddr>| a.map(|a| a.0))
}

/// What HTML answers may load: their own inline styles and inline images, nothing else.
const HTML_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

fn secure(response: &mut warp::reply::Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    // A page that runs its own (hashed) script or may be framed says so in its own policy.
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// Serves `filter` (whose rejections are already answered: it never fails) on `listener`
/// until `shutdown` resolves, then lets the requests in flight finish (at most 10 s).
pub async fn serve<F>(
    filter: F,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    serve_tls(filter, listener, shutdown, limits, None).await
}

/// [`serve`], over TLS when `tls` is given: the handshake must finish within the header-read
/// timeout.
pub async fn serve_tls<F>(
    filter: F,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let service = warp::service(filter);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (service, acceptor, graceful) = (service.clone(), acceptor.clone(), graceful.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection(stream, peer, service, limits, &graceful).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls)) => connection(tls, peer, service, limits, &graceful).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake took too long"),
                    }
                }
            }
            drop(permit);
        });
    }
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => {
            if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("requests still in flight after 10 s of shutdown");
            }
        }
        // A handshake still running holds it: nothing to wait for but that.
        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
    }
}

/// Serves one connection (plain or TLS) to its end.
async fn connection<S, Svc>(
    stream: S,
    peer: SocketAddr,
    service: Svc,
    limits: Limits,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: Service<
            hyper::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    let handler =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            let mut service = service.clone();
            async move {
                let mut response = match service.call(request).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                secure(&mut response);
                Ok::<_, Infallible>(response)
            }
        });
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = graceful.watch(
        builder
            .serve_connection_with_upgrades(io, handler)
            .into_owned(),
    );
    if let Err(e) = connection.await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// A stream that fails with `TimedOut` once nothing was read or written for `idle`: a kept-alive
/// connection nobody uses is closed.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                self.touch();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
