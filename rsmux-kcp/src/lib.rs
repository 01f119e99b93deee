//! KCP transport for rsmux, wire-compatible with kcptun.
pub mod crypt;
pub mod fec;
pub mod kcp;
