//! The default policy pack: it validates as a whole (with the bundled targets), every
//! OWASP LLM Top 10 2025 clause is covered, and the document templates pass the
//! document controls they exist for.

use std::path::Path;
use std::process::ExitCode;

use aura::cli::Cli;
use aura_policy::coverage::coverage;
use aura_policy::{load_policies, load_targets};
use aura_tests::repo_policies;
use clap::Parser;

#[test]
fn the_whole_default_pack_validates_with_the_bundled_targets() {
    let set = load_policies(&repo_policies()).unwrap_or_else(|d| panic!("{d}"));
    let pack: Vec<&str> = set
        .controls
        .iter()
        .map(|c| c.id())
        .filter(|id| {
            id.starts_with("AURA-P") || id.starts_with("AURA-D") || id.starts_with("AURA-R")
        })
        .collect();
    assert_eq!(pack.len(), 25, "{pack:?}");
    let targets =
        load_targets(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/targets")).unwrap();
    let cross = set.check_against(&targets);
    assert!(cross.is_empty(), "{cross}");
    // Probe controls ship at least 10 base prompts; injection and jailbreak at least 30.
    for c in &set.controls {
        if let Some(p) = &c.probe {
            let n = p.value.prompts.len() + p.value.conversations.len();
            let min = if ["AURA-P01", "AURA-P03"].contains(&c.id()) {
                30
            } else if c.id().starts_with("AURA-P") {
                10
            } else {
                1
            };
            assert!(n >= min, "{} has {n} base prompts, needs {min}", c.id());
        }
        if c.id().starts_with("AURA-") && !c.id().starts_with("AURA-B") {
            assert!(c.remediation.is_some(), "{} has no remediation", c.id());
            assert!(
                c.frameworks.refs().next().is_some(),
                "{} cites no framework",
                c.id()
            );
        }
    }
}

#[test]
fn owasp_llm_top_10_is_fully_covered() {
    let set = load_policies(&repo_policies()).unwrap();
    let cov = coverage(&set, Some("owasp-llm-2025"));
    assert_eq!(cov.len(), 1);
    let ids: Vec<&str> = cov[0].clauses.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        (1..=10)
            .map(|i| format!("LLM{i:02}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for c in &cov[0].clauses {
        assert!(
            !c.controls.is_empty(),
            "{} ({}) is covered by no control",
            c.id,
            c.title
        );
    }
}

#[tokio::test]
async fn coverage_command_prints_every_clause() {
    let pack = repo_policies();
    let argv = [
        "aura",
        "policy",
        "coverage",
        "--path",
        pack.to_str().unwrap(),
        "--framework",
        "owasp-llm-2025",
        "--json",
    ];
    assert_eq!(
        aura::cli::execute(Cli::try_parse_from(argv).unwrap()).await,
        ExitCode::SUCCESS
    );
    let bad = [
        "aura",
        "policy",
        "coverage",
        "--path",
        pack.to_str().unwrap(),
        "--framework",
        "owasp-2099",
    ];
    assert_ne!(
        aura::cli::execute(Cli::try_parse_from(bad).unwrap()).await,
        ExitCode::SUCCESS
    );
}
