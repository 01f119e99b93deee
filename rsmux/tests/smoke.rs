use rsmux::{Config, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn echo_over_duplex() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Session::client(a, Config::default()).unwrap();
    let server = Session::server(b, Config::default()).unwrap();
    let srv = tokio::spawn(async move {
        let mut s = server.accept_stream().await.unwrap();
        let mut buf = vec![0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
        s.shutdown().await.unwrap();
        server
    });
    let mut s = client.open_stream().await.unwrap();
    assert_eq!(s.id(), 3);
    s.write_all(b"hello world").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"hello world");
    let _server = srv.await.unwrap();
    client.close().await.unwrap();
}
