//! Cron schedules, in UTC. Standard 5-field cron (`minute hour day month weekday`) or 6
//! fields with seconds first; validated with the same parser the daemon's scheduler uses.

use croner::parser::{CronParser, Seconds};

/// Checks a schedule; the error says what is wrong.
pub fn validate(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expr}` has {fields} fields; write 5 (`minute hour day month weekday`, e.g. \
             `0 3 * * *`) or 6 with seconds first"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| format!("`{expr}` is not a valid cron schedule: {e}"))
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
}
