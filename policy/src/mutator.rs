//! Mutators: transformations the Testing agent applies to probe prompts to generate
//! variants (obfuscations and wrappers attackers use). Declared here, applied by the
//! daemon.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutator {
    /// The prompt base64-encoded, with an instruction to decode and follow it.
    Base64,
    Rot13,
    Leetspeak,
    /// Latin letters replaced by look-alike Cyrillic and Greek ones.
    Homoglyphs,
    /// Zero-width characters between letters.
    ZeroWidth,
    /// The prompt hidden in Unicode tag characters (invisible).
    UnicodeTags,
    /// Wrapped in a role-play frame.
    RolePlay,
    /// Wrapped in a hypothetical or fictional frame.
    Hypothetical,
    /// Split into parts the model is asked to join.
    PayloadSplit,
    /// Spread over a multi-turn conversation that escalates.
    MultiTurn,
}

impl Mutator {
    pub const ALL: [Mutator; 10] = [
        Mutator::Base64,
        Mutator::Rot13,
        Mutator::Leetspeak,
        Mutator::Homoglyphs,
        Mutator::ZeroWidth,
        Mutator::UnicodeTags,
        Mutator::RolePlay,
        Mutator::Hypothetical,
        Mutator::PayloadSplit,
        Mutator::MultiTurn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutator::Base64 => "base64",
            Mutator::Rot13 => "rot13",
            Mutator::Leetspeak => "leetspeak",
            Mutator::Homoglyphs => "homoglyphs",
            Mutator::ZeroWidth => "zero_width",
            Mutator::UnicodeTags => "unicode_tags",
            Mutator::RolePlay => "role_play",
            Mutator::Hypothetical => "hypothetical",
            Mutator::PayloadSplit => "payload_split",
            Mutator::MultiTurn => "multi_turn",
        }
    }
}
