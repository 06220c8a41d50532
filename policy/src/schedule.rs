//! Cron schedules, in UTC. Standard 5-field cron (`minute hour day month weekday`) or 6
//! fields with seconds first, parsed as the daemon's scheduler (`tokio-cron-scheduler`)
//! parses them, so validation, catch-up after downtime and the firing itself agree.
//!
//! When both the day of the month and the weekday are restricted, a day must match both
//! (`0 9 1-7 * MON` is the first Monday of each month), unlike classic cron, which runs on
//! either.

use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Parses a schedule; the error says what is wrong.
pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expr}` has {fields} fields; write 5 (`minute hour day month weekday`, e.g. \
             `0 3 * * *`) or 6 with seconds first"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("`{expr}` is not a valid cron schedule: {e}"))
}

/// Checks a schedule; the error says what is wrong.
pub fn validate(expr: &str) -> Result<(), String> {
    parse(expr).map(|_| ())
}

/// The 6-field form the scheduler takes: a 5-field schedule runs at second 0.
pub fn six_fields(expr: &str) -> String {
    if expr.split_whitespace().count() == 5 {
        format!("0 {}", expr.trim())
    } else {
        expr.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_and_bad_ranges() {
        assert!(validate("0 3 * * *").is_ok());
        assert!(validate("30 0 3 * * *").is_ok());
        assert!(
            validate("61 0 3 * * *")
                .unwrap_err()
                .contains("not a valid")
        );
        assert!(validate("0 25 * * *").is_err());
        assert!(validate("* *").unwrap_err().contains("2 fields"));
        assert_eq!(six_fields("0 3 * * *"), "0 0 3 * * *");
    }

    #[test]
    fn both_day_fields_must_match() {
        // Thursday 26 November 2026: the last first-Monday-of-the-month was 2 November.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let prev = parse("0 9 1-7 * MON")
            .unwrap()
            .find_previous_occurrence(&now, true)
            .unwrap();
        assert_eq!(prev.to_rfc3339(), "2026-11-02T09:00:00+00:00");
    }
}
