//! The `dhcp daemon` command line, parsed like Go's `flag` package parses
//! the reference daemon's (`-name value`, `-name=value`, `--name`, bare
//! boolean flags), with Go duration syntax (`10s`, `1m30s`, `500ms`).

use std::path::PathBuf;
use std::time::Duration;

use super::config::DEFAULT_SOCKET;
use super::daemon::DaemonConfig;
use super::keeper::Timing;
use super::store::DEFAULT_STATE_DIR;

/// Default `-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `-resendmax`.
pub const DEFAULT_RESEND_MAX: Duration = Duration::from_secs(62);

/// The usage text.
pub const USAGE: &str = "usage: dhcp daemon [-socketpath PATH] [-hostprefix PREFIX] [-pidfile PATH] \
[-statedir DIR] [-broadcast] [-timeout DURATION] [-resendmax DURATION]";

/// Parses a Go duration (`1h2m3.5s`, `250ms`, `0`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|i| *i > 0)?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses the arguments after `daemon`.
pub fn parse(args: &[String]) -> Result<DaemonConfig, String> {
    let mut c = DaemonConfig {
        socket_path: PathBuf::from(DEFAULT_SOCKET),
        host_prefix: String::new(),
        pid_file: None,
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        broadcast: false,
        timing: Timing {
            timeout: DEFAULT_TIMEOUT,
            resend_max: DEFAULT_RESEND_MAX,
        },
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!("unexpected argument {a:?}\n{USAGE}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        if name == "broadcast" {
            c.broadcast = match inline.as_deref() {
                None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
                Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
                Some(v) => return Err(format!("invalid boolean value {v:?} for -broadcast")),
            };
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: -{name}\n{USAGE}"))?,
        };
        let dur = |v: &str| {
            parse_duration(v)
                .ok_or_else(|| format!("invalid value {v:?} for flag -{name}: parse error"))
        };
        match name {
            "socketpath" if !value.is_empty() => c.socket_path = PathBuf::from(value),
            "socketpath" => {}
            "hostprefix" => c.host_prefix = value,
            "pidfile" => c.pid_file = (!value.is_empty()).then(|| PathBuf::from(value)),
            "statedir" => c.state_dir = PathBuf::from(value),
            "timeout" => c.timing.timeout = dur(&value)?,
            "resendmax" => c.timing.resend_max = dur(&value)?,
            _ => return Err(format!("flag provided but not defined: -{name}\n{USAGE}")),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn flags_like_go() {
        let c = parse(&args(
            "-socketpath /tmp/s.sock --timeout=3s -broadcast -resendmax 5s -statedir /tmp/st",
        ))
        .unwrap();
        assert_eq!(c.socket_path, PathBuf::from("/tmp/s.sock"));
        assert_eq!(c.timing.timeout, Duration::from_secs(3));
        assert_eq!(c.timing.resend_max, Duration::from_secs(5));
        assert!(c.broadcast);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
        let d = parse(&[]).unwrap();
        assert_eq!(d.socket_path, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(d.timing.timeout, DEFAULT_TIMEOUT);
        assert!(parse(&args("-nope 1")).is_err());
        assert!(parse(&args("-timeout")).is_err());
        assert!(parse(&args("-timeout 5")).is_err());
        assert!(parse(&args("stray")).is_err());
        assert!(!parse(&args("-broadcast=false")).unwrap().broadcast);
    }
}
