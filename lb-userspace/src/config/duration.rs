//! Durations as the config writes them: a whole number and a unit, `100ms`, `2s`, `5m`,
//! `1h` (SPEC.md).

use std::time::Duration;

/// Parses `text` as `<digits><unit>` with unit `ms`, `s`, `m` or `h`; the message says what
/// is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: write a whole number and a unit, like 900s, 2m or 100ms"
        ));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: the number is too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "invalid duration {text:?}: the unit is missing (ms, s, m or h)"
            ));
        }
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (ms, s, m or h)"
            ));
        }
    };
    let millis = value
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
    Ok(Duration::from_millis(millis))
}

/// `500ms`, `2s`: a duration as the config writes it (whole seconds when it is some).
pub fn duration_text(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("900s"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn text_reads_back() {
        for (millis, text) in [(500, "500ms"), (2000, "2s"), (1500, "1500ms"), (0, "0s")] {
            let duration = Duration::from_millis(millis);
            assert_eq!(duration_text(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, expected) in [
            ("900", "unit is missing"),
            ("s", "whole number and a unit"),
            ("1.5s", "unknown unit \".5s\""),
            ("10 s", "unknown unit \" s\""),
            ("5d", "unknown unit \"d\""),
            ("-1s", "whole number and a unit"),
            ("99999999999999999999s", "too large"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
