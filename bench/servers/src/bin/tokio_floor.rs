//! The floor of idle memory on tokio: a task per connection that only waits
//! for the socket to become readable (no protocol, no buffer). `volley bench
//! connect --raw-tcp` against it shows what the runtime and the socket
//! registration cost per connection, before any WebSocket state.

fn main() -> std::io::Result<()> {
    volley_bench_servers::serve("tokio-floor", |tcp| async move {
        let mut byte = [0u8; 64];
        loop {
            if tcp.readable().await.is_err() {
                return;
            }
            match tcp.try_read(&mut byte) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
}
