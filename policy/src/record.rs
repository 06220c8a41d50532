//! Records people keep next to the policies: waivers (an accepted exception to a control)
//! and attestations (a statement closing a manual control). Both live in the policies
//! folder, under `waivers/` and `attestations/`, so they are reviewed like code.

use std::path::PathBuf;

use aura_proto::view::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// An accepted exception.
///
/// ```yaml
/// control: AURA-P07
/// targets: [support-bot]          # or ["*"] for every target
/// justification: Refusals on medical questions are intended for this product.
/// approver: jane.doe@example.com
/// expires: 2027-03-31             # the waiver stops applying after this day (UTC)
/// mode: waive                     # waive | monitor
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub control: Spanned<String>,
    pub targets: Vec<Spanned<String>>,
    pub justification: String,
    pub approver: String,
    #[serde(deserialize_with = "end_of_day")]
    pub expires: Timestamp,
    #[serde(default)]
    pub mode: WaiverMode,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaiverMode {
    /// The result is reported as `waived`; the underlying verdict is kept beside it and
    /// no alert is raised.
    #[default]
    Waive,
    /// The verdict stands, but no alert is raised (a known, accepted issue).
    Monitor,
}

impl Waiver {
    pub fn covers(&self, control: &str, target: &str) -> bool {
        self.control.value == control
            && self
                .targets
                .iter()
                .any(|t| t.value == "*" || t.value == target)
    }

    pub fn expired(&self, now: Timestamp) -> bool {
        now > self.expires
    }
}

/// A recorded attestation.
///
/// ```yaml
/// control: AURA-A01
/// targets: [support-bot]
/// by: jane.doe@example.com
/// at: 2026-10-01
/// explanation: Oversight drill run on 2026-09-28; minutes attached.
/// evidence:
///   - { path: evidence/drill-2026-09.pdf, sha256: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b }
/// expires: 2027-10-01             # optional; else the control's max_age from `at`
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub control: Spanned<String>,
    pub targets: Vec<Spanned<String>>,
    pub by: String,
    #[serde(deserialize_with = "start_of_day")]
    pub at: Timestamp,
    pub explanation: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default, deserialize_with = "opt_end_of_day")]
    pub expires: Option<Timestamp>,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Relative to the attestation file.
    pub path: PathBuf,
    pub sha256: String,
}

impl Attestation {
    pub fn covers(&self, control: &str, target: &str) -> bool {
        self.control.value == control
            && self
                .targets
                .iter()
                .any(|t| t.value == "*" || t.value == target)
    }
}

/// `YYYY-MM-DD` (UTC), or a full RFC 3339 time.
pub fn parse_date(s: &str, end_of_day: bool) -> Result<Timestamp, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a date; write YYYY-MM-DD, e.g. 2027-03-31");
    if s.len() > 10 {
        let t = humantime::parse_rfc3339_weak(s).map_err(|_| bad())?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| bad())?
            .as_millis() as u64;
        return Ok(Timestamp(ms));
    }
    let mut parts = s.split('-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d), None) => (
            y.parse::<i64>().map_err(|_| bad())?,
            m.parse::<u32>().map_err(|_| bad())?,
            d.parse::<u32>().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    let start = days as u64 * 86_400_000;
    Ok(Timestamp(if end_of_day {
        start + 86_399_999
    } else {
        start
    }))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn date_de<'de, D: Deserializer<'de>>(d: D, end: bool) -> Result<Timestamp, D::Error> {
    // YAML may give a date as a plain scalar; read it as text either way.
    let s = String::deserialize(d)?;
    parse_date(&s, end).map_err(serde::de::Error::custom)
}

fn end_of_day<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    date_de(d, true)
}

fn start_of_day<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    date_de(d, false)
}

fn opt_end_of_day<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_date(&s, true).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01", false).unwrap(), Timestamp(0));
        assert_eq!(
            parse_date("2026-09-21", false).unwrap().0,
            1_790_000_000_123 / 86_400_000 * 86_400_000
        );
        assert_eq!(
            parse_date("2024-02-29", true).unwrap().0 % 86_400_000,
            86_399_999
        );
        assert!(parse_date("2023-02-29", false).is_err());
        assert!(parse_date("31/12/2026", false).is_err());
    }
}
