//! Files that hold secrets: the default directory they live in, creating them readable by
//! their owner only, and warning about ones that others can read.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use tracing::warn;

/// Where `rsmux tunnel server --tls` keeps its certificate, key and secret when no
/// `--tls-dir` is given: `$XDG_CONFIG_HOME/rsmux`, else `$HOME/.config/rsmux`.
pub fn default_dir() -> Result<PathBuf, String> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = nonempty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(xdg).join("rsmux"));
    }
    if let Some(home) = nonempty("HOME") {
        return Ok(PathBuf::from(home).join(".config").join("rsmux"));
    }
    Err("--tls-dir is needed: neither XDG_CONFIG_HOME nor HOME is set".into())
}

/// Creates `dir` and its parents; a directory created here is accessible to its owner only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes a new file readable and writable by its owner only (0600). Fails if `path` exists,
/// so nothing already there is ever overwritten.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads a file that holds a secret (a private key, the shared secret), warning when its
/// permissions let others than its owner read it.
pub fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let bytes = fs::read(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warn!(
                    "{} is readable by others (mode {mode:o}); it holds a secret: chmod 600 it",
                    path.display()
                );
            }
        }
    }
    Ok(bytes)
}

/// `true` if `path` exists (a broken symlink counts as existing, so it is not overwritten).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
