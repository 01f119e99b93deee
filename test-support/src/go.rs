//! The Go reference peer (`interop/go/src/smuxpeer`), built by `interop/build.sh` against
//! Debian's xtaci/smux (the script installs Go and the package with apt when missing).

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

/// Path of the Go peer, built once per test process (`interop/build.sh` is a quick,
/// flock-protected no-op when the binary is up to date). Panics with the build output if the
/// build fails: interop is tested for real, it never skips.
pub fn peer_binary() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = BIN.get_or_init(|| {
        let script = crate::in_workspace("interop/build.sh");
        let out = crate::process::run(
            "bash",
            &[script.to_str().expect("UTF-8 path")],
            Duration::from_secs(600),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                script.display(),
                out.status
            ));
        }
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        if !path.is_file() {
            return Err(format!(
                "{} did not produce a binary (stdout: {stdout:?}, stderr: {stderr:?})",
                script.display()
            ));
        }
        Ok(path)
    });
    match res {
        Ok(p) => p,
        Err(msg) => panic!("building the Go smux peer failed, interop tests cannot run:\n{msg}"),
    }
}
