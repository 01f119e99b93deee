//! The MSRV (`rust-version` in the root Cargo.toml, 1.85) is also the MSRV of every locked
//! dependency: no package in Cargo.lock declares a newer `rust-version`, except those in
//! [`EXCEPTIONS`], each with its reason. (The MSRV is 1.85 because rsmux needs tokio 1.54:
//! older tokio corrupts its timer wheel with far timers, tokio-rs/tokio#8334, which a session
//! with keepalive or deadlines far away arms.) Only the stable toolchain exists where this
//! runs, so this cannot compile with 1.85; it checks what the dependencies claim (see
//! `.ci/run`'s MSRV step for what is and is not proved).

use std::process::Command;

use rsmux_test_support::workspace_root;
use serde_json::Value;

/// Locked packages allowed to need a newer Rust than the MSRV: name, exact version, why. An
/// exception names one version, so an update is checked again; one no longer needed fails.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// `1.83`, `1.83.0` -> (1, 83, 0).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust-version {v:?}"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn version_parses_short_and_long_forms() {
    assert_eq!(version("1.83"), (1, 83, 0));
    assert_eq!(version("1.85.1"), (1, 85, 1));
    assert!(version("1.85") > version("1.83.9"));
}

#[test]
fn every_locked_package_supports_the_msrv() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata --locked failed (is Cargo.lock up to date?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let rust_version = |p: &Value| p["rust_version"].as_str().map(version);
    let msrv = packages
        .iter()
        .filter(|p| members.contains(&p["id"].as_str().unwrap_or("")))
        .map(|p| rust_version(p).expect("every workspace member has rust-version"))
        .max()
        .expect("workspace members");
    assert_eq!(msrv, (1, 85, 0), "the MSRV this check was written for");
    let excepted = |p: &Value| {
        EXCEPTIONS
            .iter()
            .any(|(name, version, _)| p["name"] == *name && p["version"] == *version)
    };
    for (name, version, why) in EXCEPTIONS {
        let needed = packages.iter().any(|p| {
            p["name"] == *name
                && p["version"] == *version
                && rust_version(p).is_some_and(|v| v > msrv)
        });
        assert!(
            needed,
            "exception {name} {version} ({why}) is no longer needed: remove it"
        );
    }
    let too_new: Vec<String> = packages
        .iter()
        .filter(|p| rust_version(p).is_some_and(|v| v > msrv) && !excepted(p))
        .map(|p| {
            format!(
                "{} {} (rust-version {})",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["rust_version"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(
        packages.len() > 50,
        "only {} packages: not the whole lock",
        packages.len()
    );
    assert!(
        too_new.is_empty(),
        "locked packages need a newer Rust than the MSRV {msrv:?}: {too_new:?}; pick older \
         versions with `cargo update -p NAME --precise VERSION` (the resolver setting in \
         .cargo/config.toml prefers them)"
    );
}
