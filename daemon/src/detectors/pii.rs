//! Personal data and secrets, with checksums where the format has one, so a random
//! 16-digit number is not a card and a random string is not an IBAN.

use std::sync::LazyLock;

use aura_policy::detector::PiiKind;
use regex::Regex;

/// One finding: kind and the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: PiiKind,
    pub text: String,
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("static regex")
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}\b|\+\d{8,15}\b")
});
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:\d[ -]?){12,18}\d\b"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{3})-(\d{2})-(\d{4})\b"));
static NINO: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([A-CEGHJ-PR-TW-Z]{2}) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"));
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b"));
static KEYS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"\bAKIA[0-9A-Z]{16}\b",
        r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"\bAIza[0-9A-Za-z_-]{35}\b",
    ]
    .iter()
    .map(|p| re(p))
    .collect()
});

/// Everything of the given kinds (all kinds when empty) found in `text`.
pub fn scan(text: &str, kinds: &[PiiKind]) -> Vec<Found> {
    let want = |k: PiiKind| kinds.is_empty() || kinds.contains(&k);
    let mut out = Vec::new();
    let mut push = |kind, t: &str| {
        out.push(Found {
            kind,
            text: t.to_string(),
        })
    };
    if want(PiiKind::Email) {
        EMAIL
            .find_iter(text)
            .for_each(|m| push(PiiKind::Email, m.as_str()));
    }
    if want(PiiKind::Card) {
        for m in CARD.find_iter(text) {
            let digits: Vec<u32> = m.as_str().chars().filter_map(|c| c.to_digit(10)).collect();
            if (13..=19).contains(&digits.len()) && luhn(&digits) {
                push(PiiKind::Card, m.as_str());
            }
        }
    }
    if want(PiiKind::Iban) {
        IBAN.find_iter(text)
            .filter(|m| iban_valid(m.as_str()))
            .for_each(|m| push(PiiKind::Iban, m.as_str()));
    }
    if want(PiiKind::UsSsn) {
        for c in SSN.captures_iter(text) {
            let (a, b, d) = (&c[1], &c[2], &c[3]);
            let valid = a != "000" && a != "666" && !a.starts_with('9') && b != "00" && d != "0000";
            if valid {
                push(PiiKind::UsSsn, &c[0]);
            }
        }
    }
    if want(PiiKind::UkNino) {
        for c in NINO.captures_iter(text) {
            if !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&&c[1]) {
                push(PiiKind::UkNino, &c[0]);
            }
        }
    }
    if want(PiiKind::ApiKey) {
        for r in KEYS.iter() {
            r.find_iter(text)
                .for_each(|m| push(PiiKind::ApiKey, m.as_str()));
        }
    }
    if want(PiiKind::Ip) {
        for c in IPV4.captures_iter(text) {
            if (1..=4).all(|i| c[i].parse::<u16>().is_ok_and(|o| o <= 255)) {
                push(PiiKind::Ip, &c[0]);
            }
        }
    }
    if want(PiiKind::Phone) {
        // Longer numbers a phone-shaped run can sit inside: a digit run longer than any
        // phone number (E.164 allows 15 digits), e.g. a card number that fails Luhn, or
        // an IBAN-shaped string that fails its checksum. Such a run is not a phone.
        let longer: Vec<(usize, usize)> = CARD
            .find_iter(text)
            .filter(|m| m.as_str().chars().filter(char::is_ascii_digit).count() > 15)
            .chain(IBAN.find_iter(text))
            .map(|m| (m.start(), m.end()))
            .collect();
        for m in PHONE.find_iter(text) {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            let is_card_like = out.iter().any(|f| f.text.contains(m.as_str()))
                || longer.iter().any(|(s, e)| m.start() >= *s && m.end() <= *e);
            if (8..=15).contains(&digits) && !is_card_like {
                out.push(Found {
                    kind: PiiKind::Phone,
                    text: m.as_str().to_string(),
                });
            }
        }
    }
    out
}

/// The Luhn checksum of payment card numbers.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 check.
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u64 - '0' as u64,
            'A'..='Z' => c as u64 - 'A' as u64 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<PiiKind> {
        scan(text, &[]).into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn valid_and_invalid_checksums() {
        assert!(kinds("card 4111 1111 1111 1111").contains(&PiiKind::Card));
        assert!(!kinds("card 4111 1111 1111 1112").contains(&PiiKind::Card));
        assert!(kinds("IBAN GB82 WEST 1234 5698 7654 32").contains(&PiiKind::Iban));
        assert!(!kinds("IBAN GB82 WEST 1234 5698 7654 33").contains(&PiiKind::Iban));
        assert!(kinds("ssn 123-45-6789").contains(&PiiKind::UsSsn));
        assert!(!kinds("ssn 000-45-6789").contains(&PiiKind::UsSsn));
        assert!(!kinds("ssn 666-45-6789").contains(&PiiKind::UsSsn));
        assert!(kinds("NI number AB 12 34 56 C").contains(&PiiKind::UkNino));
        assert!(!kinds("NI number BG 12 34 56 C").contains(&PiiKind::UkNino));
        assert!(kinds("mail jane.doe@example.com").contains(&PiiKind::Email));
        assert!(kinds("call +44 20 7946 0958").contains(&PiiKind::Phone));
        assert!(kinds("call (555) 123-4567").contains(&PiiKind::Phone));
        assert!(kinds("key AKIAIOSFODNN7EXAMPLE").contains(&PiiKind::ApiKey));
        assert!(kinds("host 192.168.1.20").contains(&PiiKind::Ip));
        assert!(!kinds("version 1.2.300.4").contains(&PiiKind::Ip));
        assert!(kinds("The meeting is at 10:30 in room 4.").is_empty());
    }
}
