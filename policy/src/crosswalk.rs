//! Framework crosswalks: for each framework, its clause ids and titles, as data files in
//! `policies/frameworks/`. A control's reference to a clause not listed there is a
//! validation error, so a renumbered framework is a data change, not a code change.
//!
//! ```yaml
//! framework: owasp-llm-2025
//! title: OWASP Top 10 for LLM Applications 2025
//! source: https://genai.owasp.org/llm-top-10/
//! clauses:
//!   - { id: LLM01, title: Prompt Injection }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::yaml;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crosswalk {
    pub framework: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub clauses: Vec<Clause>,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    pub id: Spanned<String>,
    pub title: String,
}

impl Crosswalk {
    pub fn knows(&self, id: &str) -> bool {
        self.clauses.iter().any(|c| c.id.value == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.clauses.iter().map(|c| c.id.value.as_str())
    }
}

/// All crosswalks, by framework key.
#[derive(Debug, Clone, Default)]
pub struct Crosswalks(pub BTreeMap<String, Crosswalk>);

impl Crosswalks {
    pub fn get(&self, framework: &str) -> Option<&Crosswalk> {
        self.0.get(framework)
    }
}

/// Reads every `*.yaml` in `dir`. A missing folder gives no crosswalks (and every
/// reference is then reported as uncheckable by the policy checks).
pub fn load(dir: &Path, diags: &mut Diagnostics) -> Crosswalks {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Crosswalks::default();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| crate::set::is_yaml_name(&n.to_string_lossy()))
        })
        .collect();
    files.sort();
    for file in files {
        match yaml::read_one_or_many::<Crosswalk>(&file) {
            Ok(list) => {
                for mut c in list {
                    c.file = file.clone();
                    let mut seen = BTreeMap::new();
                    for clause in &c.clauses {
                        if let Some(first) =
                            seen.insert(clause.id.value.clone(), clause.id.referenced.line())
                        {
                            diags.push(
                                Diagnostic::at(
                                    &file,
                                    clause.id.referenced,
                                    format!("clause `{}` is listed twice", clause.id.value),
                                )
                                .with_help(format!("it is already listed at line {first}")),
                            );
                        }
                    }
                    if let Some(prev) = out.insert(c.framework.value.clone(), c) {
                        diags.push(Diagnostic::file(
                            &file,
                            format!(
                                "framework `{}` is also defined in {}",
                                prev.framework.value,
                                prev.file.display()
                            ),
                        ));
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    Crosswalks(out)
}
