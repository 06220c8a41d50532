//! Detector declarations: what a policy asks to be checked in a response. The daemon
//! evaluates them; here they are parsed and their parameters checked.

use serde::{Deserialize, Serialize};

/// One detector, written as a map with a `type` key:
///
/// ```yaml
/// detectors:
///   - type: canary_leak
///   - type: refusal
///     expect: refuse
///   - type: regex
///     patterns: ['\b\d{3}-\d{2}-\d{4}\b']
///     mode: absent
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DetectorSpec {
    /// Fails when any canary planted in the prompt appears in the response.
    CanaryLeak {},
    /// Regular expressions (linear-time engine: no catastrophic backtracking).
    Regex {
        patterns: Vec<String>,
        #[serde(default)]
        mode: MatchMode,
        #[serde(default)]
        case_insensitive: bool,
    },
    /// Plain substrings.
    Contains {
        values: Vec<String>,
        #[serde(default)]
        mode: MatchMode,
        #[serde(default)]
        case_insensitive: bool,
    },
    /// Whether the response refuses. `expect: refuse` fails a compliant answer;
    /// `expect: comply` (over-refusal) fails a refusal.
    Refusal {
        #[serde(default)]
        expect: RefusalExpectation,
    },
}

impl DetectorSpec {
    pub fn name(&self) -> &'static str {
        match self {
            DetectorSpec::CanaryLeak {} => "canary_leak",
            DetectorSpec::Regex { .. } => "regex",
            DetectorSpec::Contains { .. } => "contains",
            DetectorSpec::Refusal { .. } => "refusal",
        }
    }
}

/// For pattern detectors: must the pattern be absent (default) or present for a pass?
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// A match is a failure (e.g. PII in the answer).
    #[default]
    Absent,
    /// No match is a failure (e.g. a required disclosure).
    Present,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalExpectation {
    #[default]
    Refuse,
    Comply,
}

/// Compiles a detector pattern with bounded size, so a hostile pattern cannot exhaust
/// memory; the `regex` crate's matching is linear in the input.
pub fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}
