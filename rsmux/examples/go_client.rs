//! A client for a Go smux server (for example Go's `smux.Server` behind an echo handler, or
//! `rsmux echo`): opens a few streams at once, sends a line on each, prints the replies, and
//! reports the session's counters.
//!
//! ```sh
//! cargo run --example go_client -- 127.0.0.1:7000 2   # server address, smux version
//! ```

use rsmux::{Config, Session, Stats, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let version: u8 = args.next().as_deref().unwrap_or("1").parse()?;
    let (replies, stats) = run(&addr, Version::try_from(version)?).await?;
    for (i, reply) in replies.iter().enumerate() {
        println!("{i}: {reply}");
    }
    println!("{stats:?}");
    Ok(())
}

/// Sends `hello from stream ID` on four streams at once to the echo server at `addr` and
/// returns the replies, in the order the streams were opened, and the session's counters.
pub async fn run(addr: &str, version: Version) -> Result<(Vec<String>, Stats), Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    // The version must match the Go server's `Config.Version`: smux has no negotiation.
    let session = Session::client(tcp, Config::default().with_version(version))?;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut stream = session.open_stream().await?;
        tasks.push(tokio::spawn(async move {
            let line = format!("hello from stream {}", stream.id());
            stream.write_all(line.as_bytes()).await?;
            stream.shutdown().await?; // FIN: an echo server replies, then closes
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await??);
    }
    let stats = session.stats();
    session.close().await?;
    Ok((replies, stats))
}
