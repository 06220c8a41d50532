//! Paths to fields of a document: keys joined by dots (`evaluation.results`), and `[]`
//! after a key for "every item of this list" (`risks[].owner`), so one rule can demand a
//! field of every risk in a register. Parsed when the policy loads, so a malformed path
//! is a validation error with its line, not a check that silently finds nothing.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    key: String,
    /// `key[]`: the value is a list, and the rest of the path applies to each item.
    each: bool,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not a field path ({why}); write e.g. `evaluation.results` or `risks[].owner`"
            )
        };
        if text.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (part, false),
            };
            if key.is_empty() {
                return Err(bad("a key is empty"));
            }
            if key.contains(['[', ']']) {
                return Err(bad("`[]` may only follow a key"));
            }
            segments.push(Segment {
                key: key.to_string(),
                each,
            });
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the path names in `root`, each with a label saying where it is
    /// (`risks[RISK-002].owner`: list items are named by their `id` or `name`, else
    /// counted from 1). A missing key, or a list that is missing or empty, yields its
    /// label with `None`, so a check reports it rather than passing vacuously.
    pub fn resolve<'a>(&self, root: &'a Value) -> Vec<(String, Option<&'a Value>)> {
        let mut out = Vec::new();
        walk(&self.segments, root, String::new(), &mut out);
        out
    }
}

fn walk<'a>(
    segments: &[Segment],
    value: &'a Value,
    label: String,
    out: &mut Vec<(String, Option<&'a Value>)>,
) {
    let Some((seg, rest)) = segments.split_first() else {
        out.push((label, Some(value)));
        return;
    };
    let label = if label.is_empty() {
        seg.key.clone()
    } else {
        format!("{label}.{}", seg.key)
    };
    let Some(next) = value.get(&seg.key) else {
        out.push((label, None));
        return;
    };
    if !seg.each {
        walk(rest, next, label, out);
        return;
    }
    match next.as_array() {
        Some(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let name = ["id", "name"]
                    .iter()
                    .find_map(|k| item.get(k).and_then(scalar_name))
                    .unwrap_or_else(|| (i + 1).to_string());
                walk(rest, item, format!("{label}[{name}]"), out);
            }
        }
        _ => out.push((label, None)),
    }
}

fn scalar_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl TryFrom<String> for FieldPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.text
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(path: &str, v: &Value) -> Vec<(String, Option<Value>)> {
        FieldPath::parse(path)
            .unwrap()
            .resolve(v)
            .into_iter()
            .map(|(l, v)| (l, v.cloned()))
            .collect()
    }

    #[test]
    fn dotted_keys_and_every_item_of_a_list() {
        let v = json!({
            "evaluation": {"results": [1]},
            "risks": [
                {"id": "RISK-001", "owner": "Ana"},
                {"id": "RISK-002"},
                {"owner": "Bo"},
            ],
            "empty": [],
        });
        assert_eq!(
            labels("evaluation.results", &v),
            [("evaluation.results".into(), Some(json!([1])))]
        );
        assert_eq!(
            labels("risks[].owner", &v),
            [
                ("risks[RISK-001].owner".into(), Some(json!("Ana"))),
                ("risks[RISK-002].owner".into(), None),
                ("risks[3].owner".into(), Some(json!("Bo"))),
            ]
        );
        // A missing or empty list is reported, never passed over.
        assert_eq!(labels("empty[].owner", &v), [("empty".into(), None)]);
        assert_eq!(labels("nothing[].owner", &v), [("nothing".into(), None)]);
        assert_eq!(labels("evaluation.x", &v), [("evaluation.x".into(), None)]);
    }

    #[test]
    fn malformed_paths_are_refused_with_an_example() {
        for bad in ["", "a..b", "risks[0].owner", "[].x", "a[]]"] {
            let err = FieldPath::parse(bad).unwrap_err();
            assert!(err.contains("risks[].owner"), "{bad:?}: {err}");
        }
    }
}
