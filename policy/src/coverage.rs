//! Which controls cover which framework clauses, and which clauses nothing covers.
//!
//! A clause counts as covered by a control that references it or one of its
//! sub-clauses (`AML.T0051` by `AML.T0051.000`, `Art 10` by `Art 10(2)(f)`).

use serde::Serialize;

use crate::set::PolicySet;

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkCoverage {
    pub framework: String,
    pub title: String,
    pub clauses: Vec<ClauseCoverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClauseCoverage {
    pub id: String,
    pub title: String,
    /// Control ids, in policy order.
    pub controls: Vec<String>,
}

impl FrameworkCoverage {
    pub fn uncovered(&self) -> impl Iterator<Item = &ClauseCoverage> {
        self.clauses.iter().filter(|c| c.controls.is_empty())
    }
}

/// Whether `reference` is `clause` or one of its sub-clauses.
pub fn within(reference: &str, clause: &str) -> bool {
    reference == clause
        || reference
            .strip_prefix(clause)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| matches!(c, '.' | '(' | ' ' | '§' | '-'))
}

/// Coverage of every framework with a crosswalk, or only of `only`.
pub fn coverage(set: &PolicySet, only: Option<&str>) -> Vec<FrameworkCoverage> {
    set.crosswalks
        .0
        .values()
        .filter(|cw| only.is_none_or(|f| f == cw.framework.value))
        .map(|cw| FrameworkCoverage {
            framework: cw.framework.value.clone(),
            title: cw.title.clone(),
            clauses: cw
                .clauses
                .iter()
                .map(|clause| ClauseCoverage {
                    id: clause.id.value.clone(),
                    title: clause.title.clone(),
                    controls: set
                        .controls
                        .iter()
                        .filter(|c| {
                            c.frameworks.refs().any(|(fw, r)| {
                                fw == cw.framework.value && within(&r.value, &clause.id.value)
                            })
                        })
                        .map(|c| c.id().to_string())
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn sub_clauses_count_for_their_parent() {
        assert!(within("AML.T0051.000", "AML.T0051"));
        assert!(within("Art 10(2)(f)", "Art 10"));
        assert!(within("LLM01", "LLM01"));
        assert!(!within("Art 100", "Art 10"));
        assert!(!within("MEASURE 2.10", "MEASURE 2.1"));
    }
}
