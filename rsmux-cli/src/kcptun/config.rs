//! kcptun's JSON config (`-c FILE`): an object whose keys are the long flag names
//! (`localaddr`, `remoteaddr`, `listen`, `target`, `key`, `crypt`, `mode`, `conn`, `mtu`,
//! `sndwnd`, `rcvwnd`, `datashard`, `parityshard`, `dscp`, `nocomp`, `acknodelay`, `nodelay`,
//! `interval`, `resend`, `nc`, `sockbuf`, `smuxver`, `smuxbuf`, `streambuf`, `keepalive`,
//! `autoexpire`, `scavengettl`, `quiet`, `tcp`, ...). As in kcptun, a key present in the file
//! overrides the flag; keys match without regard to case (Go's `encoding/json`), and keys the
//! other end or a newer kcptun uses are ignored with a warning.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Role, Settings};

/// Reads `path` and applies its keys over `settings`. Errors name the file and the key.
pub fn apply_file(settings: &mut Settings, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("-c {}: cannot read: {e}", path.display()))?;
    apply_str(settings, &text).map_err(|e| format!("-c {}: {e}", path.display()))
}

/// Applies the keys of the JSON object `text` over `settings`.
pub fn apply_str(s: &mut Settings, text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("expected a JSON object of kcptun settings".into());
    };
    apply(s, &map)
}

fn apply(s: &mut Settings, map: &Map<String, Value>) -> Result<(), String> {
    for (raw, v) in map {
        let key = raw.to_ascii_lowercase();
        let string = || {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("key {raw:?}: expected a string"))
        };
        let int = || {
            v.as_i64()
                .ok_or_else(|| format!("key {raw:?}: expected an integer"))
        };
        let boolean = || {
            v.as_bool()
                .ok_or_else(|| format!("key {raw:?}: expected true or false"))
        };
        match (key.as_str(), s.role) {
            ("localaddr", Role::Client) | ("listen", Role::Server) => s.local = string()?,
            ("remoteaddr", Role::Client) | ("target", Role::Server) => s.remote = string()?,
            ("conn", Role::Client) => s.conn = int()?,
            ("autoexpire", Role::Client) => s.autoexpire = int()?,
            ("scavengettl", Role::Client) => s.scavengettl = int()?,
            ("key", _) => s.key = string()?,
            ("crypt", _) => s.crypt = string()?,
            ("mode", _) => s.mode = string()?,
            ("mtu", _) => s.mtu = int()?,
            ("sndwnd", _) => s.sndwnd = int()?,
            ("rcvwnd", _) => s.rcvwnd = int()?,
            ("datashard", _) => s.datashard = int()?,
            ("parityshard", _) => s.parityshard = int()?,
            ("dscp", _) => s.dscp = int()?,
            ("nocomp", _) => s.nocomp = boolean()?,
            ("acknodelay", _) => s.acknodelay = boolean()?,
            ("nodelay", _) => s.nodelay = int()?,
            ("interval", _) => s.interval = int()?,
            ("resend", _) => s.resend = int()?,
            ("nc", _) => s.nc = int()?,
            ("sockbuf", _) => s.sockbuf = int()?,
            ("smuxver", _) => s.smuxver = int()?,
            ("smuxbuf", _) => s.smuxbuf = int()?,
            ("streambuf", _) => s.streambuf = int()?,
            ("keepalive", _) => s.keepalive = int()?,
            ("quiet", _) => s.quiet = boolean()?,
            ("tcp", _) => s.tcp = boolean()?,
            ("log" | "snmplog" | "snmpperiod" | "pprof", _) => {
                let set = match v {
                    Value::Null | Value::Bool(false) => false,
                    Value::String(t) => !t.is_empty(),
                    _ => key != "snmpperiod",
                };
                if set {
                    s.ignored.push(format!("{raw:?} in the config file"));
                }
            }
            _ => s
                .ignored
                .push(format!("unknown key {raw:?} in the config file")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kcptun::{ClientArgs, ServerArgs};
    use clap::Parser;

    #[derive(Parser)]
    struct C {
        #[command(flatten)]
        a: ClientArgs,
    }

    #[derive(Parser)]
    struct S {
        #[command(flatten)]
        a: ServerArgs,
    }

    fn client(args: &[&str]) -> Settings {
        let c = C::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
        Settings::client(&c.a).unwrap()
    }

    fn server(args: &[&str]) -> Settings {
        let s = S::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
        Settings::server(&s.a).unwrap()
    }

    #[test]
    fn defaults_are_kcptuns_per_role() {
        let c = client(&["--key", "k"]).resolve().unwrap();
        assert_eq!(c.local, "0.0.0.0:12948");
        assert_eq!(c.remote, "vps:29900");
        assert_eq!((c.kcp.snd_wnd, c.kcp.rcv_wnd), (128, 512));
        assert_eq!((c.kcp.data_shards, c.kcp.parity_shards), (10, 3));
        assert!(c.kcp.compression);
        assert_eq!(c.kcp.crypt, rsmux_kcp::CryptKind::Aes);
        assert_eq!(c.kcp.mode, rsmux_kcp::Mode::Fast);
        assert_eq!(c.smux.version, rsmux::Version::V1);
        assert_eq!(
            (c.smux.max_receive_buffer, c.smux.max_stream_buffer),
            (4 << 20, 2 << 20)
        );
        assert_eq!(c.conn, 1);
        let s = server(&["--key", "k"]).resolve().unwrap();
        assert_eq!(s.local, "0.0.0.0:29900");
        assert_eq!(s.remote, "127.0.0.1:12948");
        assert_eq!((s.kcp.snd_wnd, s.kcp.rcv_wnd), (1024, 1024));
    }

    #[test]
    fn json_overrides_flags_case_insensitively() {
        let mut s = client(&["--crypt", "aes", "--mtu", "1200", "--conn", "2"]);
        apply_str(
            &mut s,
            r#"{"Crypt":"salsa20","mode":"fast3","nocomp":true,"datashard":0,"parityshard":0,
                "smuxver":2,"localaddr":"127.0.0.1:1","target":"ignored:1","closewait":5}"#,
        )
        .unwrap();
        let r = s.resolve().unwrap();
        assert_eq!(r.kcp.crypt, rsmux_kcp::CryptKind::Salsa20);
        assert_eq!(r.kcp.mode, rsmux_kcp::Mode::Fast3);
        assert!(!r.kcp.compression);
        assert_eq!(r.kcp.mtu, 1200);
        assert_eq!(r.conn, 2);
        assert_eq!(r.smux.version, rsmux::Version::V2);
        assert_eq!(r.local, "127.0.0.1:1");
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        let mut bad = client(&[]);
        assert!(apply_str(&mut bad, r#"{"mtu":"big"}"#)
            .unwrap_err()
            .contains("\"mtu\""));
        assert!(apply_str(&mut bad, "[1]").is_err());
    }

    #[test]
    fn refusals_name_the_flag() {
        let err = |args: &[&str]| client(args).resolve().unwrap_err();
        assert!(err(&["--tcp"]).starts_with("--tcp"));
        assert!(err(&["--crypt", "aes-257"]).starts_with("--crypt"));
        assert!(err(&["--crypt", "rc4"]).starts_with("--crypt \"rc4\""));
        assert!(client(&["--crypt", "xtea"]).resolve().is_ok());
        assert!(err(&["--mode", "turbo"]).starts_with("--mode"));
        assert!(err(&["--mtu", "9000"]).contains("--mtu"));
        assert!(err(&["--ds", "0"]).contains("--datashard"));
        assert!(err(&["--conn", "0"]).starts_with("--conn"));
        assert!(err(&["--smuxver", "3"]).starts_with("--smuxver"));
        assert!(err(&["--keepalive", "0"]).starts_with("--keepalive"));
        assert!(err(&["--mode", "manual", "--interval", "1"]).contains("--interval"));
        let m = client(&[
            "--mode",
            "manual",
            "--nodelay",
            "1",
            "--interval",
            "20",
            "--nc",
            "1",
        ])
        .resolve()
        .unwrap();
        assert_eq!(m.kcp.mode.profile(), (true, 20, 0, true));
        let dscp = client(&["--dscp", "46"]).resolve().unwrap();
        assert_eq!(dscp.kcp.dscp, 46);
        assert!(dscp.warnings.is_empty(), "{:?}", dscp.warnings);
        for bad in ["64", "-1"] {
            let e = client(&["--dscp", bad]).resolve().unwrap_err();
            assert!(
                e.starts_with("--dscp") || e.starts_with("invalid --dscp"),
                "{e}"
            );
        }
        let t = client(&["--keepalive", "1", "--keepalive-timeout", "3"])
            .resolve()
            .unwrap();
        assert_eq!(t.smux.keep_alive_timeout, std::time::Duration::from_secs(3));
        let e = client(&["--keepalive", "5", "--keepalive-timeout", "3"])
            .resolve()
            .unwrap_err();
        assert!(e.starts_with("--keepalive"), "{e}");
    }
}
