//! Fuzz harnesses for rsmux's sans-IO core, kept in a library so that the libFuzzer targets
//! (`fuzz_targets/`), the seed generator and the regression replays share one implementation.
//!
//! - [`decoder::run`]: frame header decoding and the connection's input path against a
//!   reference decoder written from the spec.
//! - [`session::run`]: one `Connection` driven by arbitrary peer bytes, application calls,
//!   time and transmit/drain steps, checked against a model after every step.
//!
//! Every check is an `assert!`: a violated invariant is a crash for libFuzzer.

pub mod decoder;
pub mod encode;
pub mod session;

#[cfg(test)]
mod tests;
