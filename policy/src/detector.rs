//! Detector declarations: what a policy asks to be checked in a response. The daemon
//! evaluates them; here they are parsed and their parameters checked.

use std::time::Duration;

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
    /// Fails when a canary planted in the prompt appears in the response, also encoded
    /// (base64, hex, reversed, spaced out).
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
    /// Personal data and secrets, validated (Luhn for cards, mod-97 for IBANs).
    Pii {
        /// Which kinds to look for; default: all.
        #[serde(default)]
        kinds: Vec<PiiKind>,
    },
    /// The response must be JSON, optionally matching a JSON Schema (inline).
    Json {
        #[serde(default)]
        schema: Option<serde_json::Value>,
    },
    /// Bounds on the response's size.
    Length {
        #[serde(default)]
        min_chars: Option<usize>,
        #[serde(default)]
        max_chars: Option<usize>,
    },
    /// Bound on the time to answer, e.g. `max: 10s`.
    Latency {
        #[serde(
            deserialize_with = "crate::target::duration",
            serialize_with = "crate::target::ser_duration"
        )]
        max: Duration,
    },
    /// Embedding similarity to a reference text: pass when at least `min` (or at most
    /// `max`, for "must not resemble").
    Similarity {
        reference: String,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    /// Overlap (ROUGE-L F1) with the system prompt: fails above `max_overlap`.
    PromptLeak {
        #[serde(default = "default_overlap")]
        max_overlap: f64,
    },
    /// Counterfactual consistency: the answers to variants that differ only in
    /// `attribute` (a probe variable) must agree.
    Consistency {
        attribute: String,
        /// Largest tolerated share of variant groups whose answers disagree.
        #[serde(default)]
        max_disagreement: f64,
        /// Largest tolerated gap between the refusal rates of the attribute's values
        /// (e.g. 0.03 for 3 percentage points); unchecked when absent.
        #[serde(default)]
        max_refusal_gap: Option<f64>,
    },
    /// Tool calls in the response must stay within an allow-list; calls that need
    /// confirmation must not be made without it.
    ToolCalls {
        #[serde(default)]
        allow: Vec<String>,
        #[serde(default)]
        require_confirmation: Vec<String>,
    },
    /// An LLM judge: a configured local endpoint grades the response against a rubric
    /// and must answer schema-checked JSON; otherwise the verdict is inconclusive.
    Judge {
        rubric: String,
        /// Score from 0 to 1 at or above which the response passes.
        #[serde(default = "default_pass_score")]
        pass_score: f64,
    },
    /// Input heuristics for runtime logs: instruction overrides, delimiters, encodings.
    InjectionAttempt {},
    /// An AI disclosure must be present (runtime: on the first turn of each session).
    Disclosure {
        #[serde(default)]
        patterns: Vec<String>,
    },
}

fn default_overlap() -> f64 {
    0.5
}

fn default_pass_score() -> f64 {
    0.5
}

impl DetectorSpec {
    pub fn name(&self) -> &'static str {
        match self {
            DetectorSpec::CanaryLeak {} => "canary_leak",
            DetectorSpec::Regex { .. } => "regex",
            DetectorSpec::Contains { .. } => "contains",
            DetectorSpec::Refusal { .. } => "refusal",
            DetectorSpec::Pii { .. } => "pii",
            DetectorSpec::Json { .. } => "json",
            DetectorSpec::Length { .. } => "length",
            DetectorSpec::Latency { .. } => "latency",
            DetectorSpec::Similarity { .. } => "similarity",
            DetectorSpec::PromptLeak { .. } => "prompt_leak",
            DetectorSpec::Consistency { .. } => "consistency",
            DetectorSpec::ToolCalls { .. } => "tool_calls",
            DetectorSpec::Judge { .. } => "judge",
            DetectorSpec::InjectionAttempt {} => "injection_attempt",
            DetectorSpec::Disclosure { .. } => "disclosure",
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    /// Payment card numbers that pass the Luhn check.
    Card,
    /// IBANs that pass the mod-97 check.
    Iban,
    /// US social security numbers.
    UsSsn,
    /// UK National Insurance numbers.
    UkNino,
    /// API keys and tokens of well-known shapes (AWS, GitHub, OpenAI, Slack, JWT, PEM).
    ApiKey,
    /// IPv4 addresses.
    Ip,
}

impl PiiKind {
    pub const ALL: [PiiKind; 8] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::UsSsn,
        PiiKind::UkNino,
        PiiKind::ApiKey,
        PiiKind::Ip,
    ];
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
