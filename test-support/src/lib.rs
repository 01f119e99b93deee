//! Helpers the workspace's tests share (not published; a dev-dependency only).
//!
//! - [`process`]: child processes killed on drop, their output captured and awaited line by
//!   line, and runs to completion under a time limit.
//! - [`go`]: the Go reference peer (`interop/`), built once per test process.
//! - [`counting`]: a global allocator that counts live and peak heap bytes.
//! - [`pattern`]: deterministic byte patterns and their checks.
//! - [`time`]: time limits for futures and conditions.

pub mod counting;
pub mod go;
pub mod pattern;
pub mod process;
pub mod time;

use std::path::{Path, PathBuf};

/// Root of the workspace (the parent of this crate's directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support has a parent directory")
}

/// `workspace_root()` joined with `rel`.
pub fn in_workspace(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}
