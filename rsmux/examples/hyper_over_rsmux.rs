//! HTTP/1.1 with hyper 1.x over rsmux streams: one smux session on one TCP connection, an
//! HTTP server on every stream the server side accepts, and clients on streams the client
//! side opens, several at once, each sending a few requests over its stream (keep-alive).
//!
//! ```sh
//! cargo run --example hyper_over_rsmux      # runs both sides on loopback and exits
//! ```
//!
//! A `Stream` is tokio `AsyncRead + AsyncWrite`, so hyper-util's `TokioIo` is all the glue
//! hyper needs.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Method, Request, Response};
use hyper_util::rt::TokioIo;
use rsmux::{Config, Session};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Client streams opened at once; each sends `REQUESTS_PER_STREAM` requests.
const STREAMS: usize = 3;
const REQUESTS_PER_STREAM: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let done = run().await?;
    println!("{done} requests answered byte for byte over one smux session");
    Ok(())
}

/// Runs server and client on loopback; returns the number of requests checked.
pub async fn run() -> Result<usize, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        serve(Session::server(tcp, Config::default())?).await
    });

    let session = Session::client(TcpStream::connect(addr).await?, Config::default())?;
    let mut clients = Vec::new();
    for s in 0..STREAMS {
        let stream = session.open_stream().await?;
        clients.push(tokio::spawn(client(stream, s)));
    }
    let mut done = 0;
    for c in clients {
        done += c.await??;
    }
    // The server closes the session once its connections are done.
    server.await??;
    session.closed().await;
    Ok(done)
}

/// The server side: an HTTP/1.1 connection on each of the first `STREAMS` streams; once all
/// of them ended (each client closed its stream), closes the session.
async fn serve(session: Session) -> Result<(), Error> {
    let mut connections = Vec::new();
    for _ in 0..STREAMS {
        let stream = session.accept_stream().await?;
        connections.push(tokio::spawn(
            http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle)),
        ));
    }
    for c in connections {
        c.await??;
    }
    session.close().await?;
    Ok(())
}

/// `GET /hello` greets; `POST /echo` sends the body back; anything else is a 404.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/hello") => Response::new(Full::new(Bytes::from_static(b"hello, smux"))),
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
                r
            }
        },
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(response)
}

/// One client connection on `stream`: a greeting, then echoes of bodies of several sizes,
/// each checked byte for byte. Returns the number of requests made.
async fn client(stream: rsmux::Stream, seed: usize) -> Result<usize, Error> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);

    let hello = Request::get("/hello")
        .header("host", "rsmux")
        .body(Full::default())?;
    let body = sender
        .send_request(hello)
        .await?
        .into_body()
        .collect()
        .await?;
    if body.to_bytes() != "hello, smux" {
        return Err("wrong greeting".into());
    }
    for i in 1..REQUESTS_PER_STREAM {
        let sent = pattern(seed * 31 + i, 100_000 * i + seed);
        let request = Request::post("/echo")
            .header("host", "rsmux")
            .body(Full::new(Bytes::from(sent.clone())))?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            return Err(format!("/echo answered {}", response.status()).into());
        }
        let got = response.into_body().collect().await?.to_bytes();
        if got != sent {
            return Err(format!("echo of {} bytes came back changed", sent.len()).into());
        }
    }
    // Dropping the sender ends the HTTP connection; the stream closes with it.
    drop(sender);
    connection.await??;
    Ok(REQUESTS_PER_STREAM)
}

/// Deterministic bytes that differ per seed.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + seed * 13 + i / 251) as u8)
        .collect()
}
