//! What every echo server here shares: the command line (`<binary> [port]`),
//! a current-thread tokio runtime, and an accept loop on 127.0.0.1 that spawns
//! one task per connection with TCP_NODELAY set.
//!
//! Each binary prints `<name> listening on ws://127.0.0.1:<port>/` once it
//! accepts connections (port 0 picks a free port).

use std::future::Future;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};

/// The largest message and frame every server accepts: 64 MiB, so that the
/// 1 MiB scenario (and anything up to 64 MiB) passes every peer's limits.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Runs `handle` for every accepted connection on a current-thread runtime.
pub fn serve<F, Fut>(name: &str, handle: F) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("port: {e}"))
        })?,
        None => 0,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("{name} listening on ws://{}/", listener.local_addr()?);
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors or a connection reset before
                // accept: keep serving the others.
                Err(e) => {
                    eprintln!("{name}: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(handle(tcp));
        }
    })
}

/// [`serve`] for the libraries that upgrade through hyper: every accepted
/// connection is served by hyper's HTTP/1.1 server, with upgrades, and each
/// request goes to `upgrade`.
pub fn serve_hyper<F, Fut, E>(name: &str, upgrade: F) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<Response<Empty<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve(name, move |tcp| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(
                hyper_util::rt::TokioIo::new(tcp),
                hyper::service::service_fn(upgrade),
            )
            .with_upgrades()
            .await;
    })
}
