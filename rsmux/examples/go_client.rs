//! A client for a Go smux server (for example Go's `smux.Server` behind an echo handler, or
//! `rsmux echo`): opens a few streams at once, sends a line on each, prints the replies, and
//! reports the session's counters.
//!
//! ```sh
//! cargo run --example go_client -- 127.0.0.1:7000 2   # server address, smux version
//! ```

use rsmux::{Config, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let version: u8 = args.next().as_deref().unwrap_or("1").parse()?;
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    // The version must match the Go server's `Config.Version`: smux has no negotiation.
    let config = Config::default().with_version(rsmux::Version::try_from(version).unwrap());
    let session = Session::client(tcp, config)?;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut stream = session.open_stream().await?;
        tasks.push(tokio::spawn(async move {
            let line = format!("hello from stream {}", stream.id());
            stream.write_all(line.as_bytes()).await?;
            stream.shutdown().await?; // FIN: an echo server replies, then closes
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await?;
            Ok::<_, std::io::Error>((i, reply))
        }));
    }
    for task in tasks {
        let (i, reply) = task.await??;
        println!("{i}: {reply}");
    }
    println!("{:?}", session.stats());
    session.close().await?;
    Ok(())
}
