//! Arbitrary operation sequences on one connection, checked against a model (see
//! `src/session.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rsmux_fuzz::session::run(data));
