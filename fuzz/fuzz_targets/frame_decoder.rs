//! Arbitrary bytes into the frame decoder and a connection's input path (see `src/decoder.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rsmux_fuzz::decoder::run(data));
