//! The `futures` I/O traits ([`futures_io::AsyncRead`], [`futures_io::AsyncWrite`]) for
//! [`Stream`] and its halves, with the `futures-io` feature, for code written against them
//! rather than against tokio's. Each call goes to the tokio impl; `poll_close` is tokio's
//! `poll_shutdown`: a FIN once everything written has left, as closing a TCP write side.
#![cfg(feature = "futures-io")]

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::ReadBuf;

use super::{OwnedReadHalf, OwnedWriteHalf, Stream};

/// `futures_io::AsyncRead` by way of the type's `tokio::io::AsyncRead`.
macro_rules! futures_read {
    ($ty:ty) => {
        impl ::futures_io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let mut buf = ReadBuf::new(buf);
                tokio::io::AsyncRead::poll_read(self, cx, &mut buf).map_ok(|()| buf.filled().len())
            }
        }
    };
}

/// `futures_io::AsyncWrite` by way of the type's `tokio::io::AsyncWrite`.
macro_rules! futures_write {
    ($ty:ty) => {
        impl ::futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(self, cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(self, cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(self, cx)
            }
        }
    };
}

futures_read!(Stream);
futures_write!(Stream);
futures_read!(OwnedReadHalf);
futures_write!(OwnedWriteHalf);
