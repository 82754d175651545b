//! The one reading of sizes and durations for the whole tree: profiles,
//! `phantom run` flags, the daemon's flags and config, REST bodies and MCP
//! arguments all call these, so `512MB` means the same bytes everywhere.
//!
//! A size is bytes (`1048576`) or a number with a unit, in any case:
//! `b`; `k`, `ki`, `kib`, `m`, `mi`, `mib`, `g`..., `t`... (powers of 1024,
//! as Podman's `--memory 512m`); `kb`, `mb`, `gb`, `tb` (powers of 1000, as
//! the SI prefixes say). `1.5GiB` works. A duration is a positive number of
//! `ms`, `s`, `m` or `h`; a bare number is seconds.

use std::time::Duration;

/// A size or duration that could not be read: the text and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{0:?} is not a size (like 512MiB, 1G or 1048576)")]
    NotASize(String),
    #[error(
        "{text:?}: unknown unit {unit:?} (B, K/KiB, M/MiB, G/GiB, T/TiB are powers of 1024; \
         KB, MB, GB, TB are powers of 1000)"
    )]
    SizeUnit { text: String, unit: String },
    #[error("{0:?}: a size of zero is not possible")]
    ZeroSize(String),
    #[error("{0:?} is not a duration (like 30s, 500ms, 5m or 1h)")]
    NotADuration(String),
    #[error("{text:?}: unknown unit {unit:?} (ms, s, m or h)")]
    DurationUnit { text: String, unit: String },
    #[error("{0:?}: a duration must be positive")]
    NotPositive(String),
}

/// Splits `12.5MiB` into `("12.5", "MiB")`.
fn split_number(t: &str) -> (&str, &str) {
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    (num, unit.trim())
}

/// A size in bytes (see the module doc); never zero.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let (num, unit) = split_number(t);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(UnitError::SizeUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    let bad = || UnitError::NotASize(text.into());
    let value = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| bad())?;
        let v = f * mult as f64;
        if !v.is_finite() || v >= u64::MAX as f64 {
            return Err(bad());
        }
        v.round() as u64
    } else {
        let n: u64 = num.parse().map_err(|_| bad())?;
        n.checked_mul(mult).ok_or_else(bad)?
    };
    if value == 0 {
        return Err(UnitError::ZeroSize(text.into()));
    }
    Ok(value)
}

/// A positive duration (see the module doc).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    let (num, unit) = split_number(t);
    let secs_per: f64 = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(UnitError::DurationUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration(text.into()))?;
    let secs = v * secs_per;
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e9) {
        return Err(UnitError::NotPositive(text.into()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_the_same_whatever_the_case() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("512MiB", 512 << 20),
            ("512m", 512 << 20),
            ("512M", 512 << 20),
            ("512Mi", 512 << 20),
            ("2g", 2 << 30),
            ("1.5K", 1536),
            ("1.5GiB", 3 << 29),
            ("512MB", 512_000_000),
            ("512mb", 512_000_000),
            ("4kB", 4000),
            ("1TiB", 1 << 40),
            (" 64 KiB ", 64 << 10),
            ("10b", 10),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_name_the_text() {
        assert!(matches!(
            parse_size("lots"),
            Err(UnitError::SizeUnit { .. })
        ));
        assert!(matches!(
            parse_size("12XB"),
            Err(UnitError::SizeUnit { .. })
        ));
        assert_eq!(parse_size("0"), Err(UnitError::ZeroSize("0".into())));
        assert!(matches!(parse_size("-1"), Err(UnitError::SizeUnit { .. })));
        assert!(matches!(parse_size(""), Err(UnitError::NotASize(_))));
        assert!(matches!(parse_size("1..2M"), Err(UnitError::NotASize(_))));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(UnitError::NotASize(_))
        ));
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .to_string()
            .contains("\"5 parsecs\""));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(matches!(
            parse_duration("0"),
            Err(UnitError::NotPositive(_))
        ));
        assert!(matches!(
            parse_duration("-1"),
            Err(UnitError::DurationUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5 days"),
            Err(UnitError::DurationUnit { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(UnitError::NotADuration(_))
        ));
        assert!(matches!(
            parse_duration("1e99h"),
            Err(UnitError::DurationUnit { .. })
        ));
    }
}
