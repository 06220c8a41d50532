//! The document templates in policies/templates pass the document controls of the
//! default pack (AURA-D01 to AURA-D08) through a real audit of a `documents` target;
//! a copy that does not match the deployed version, or lacks a file, fails the controls
//! that check it.

use std::path::{Path, PathBuf};

use aura_proto::view::{Timestamp, Verdict};
use aura_proto::wire::StartAudit;
use aura_tests::audit;
use aura_tests::{Setup, TestDaemon, repo_policies};

/// A copy of the templates (without the README). Their `updated` dates are set to today,
/// so the freshness limits (90 days for the risk register) test the copy, not the day
/// the templates were last edited; everything else is as shipped.
fn templates_copy(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let today = aurad::format_date(Timestamp::now());
    let mut copied = 0;
    for e in std::fs::read_dir(repo_policies().join("templates")).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().is_some_and(|n| n == "README.md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let refreshed: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix("updated: ") {
                Some(rest) if rest.len() >= 10 && rest.as_bytes()[4] == b'-' => {
                    format!("updated: {today}{}", &rest[10..])
                }
                _ => l.to_string(),
            })
            .collect();
        let mut out = refreshed.join("\n");
        if text.ends_with('\n') {
            out.push('\n');
        }
        std::fs::write(to.join(path.file_name().unwrap()), out).unwrap();
        copied += 1;
    }
    assert_eq!(copied, 8, "one template per document control");
    to.to_path_buf()
}

fn docs_target(name: &str, path: &Path, version: &str) -> (String, String) {
    (
        format!("{name}.yaml"),
        format!(
            "name: {name}\nkind: documents\npath: {}\nmodel_version: \"{version}\"\nrisk_tier: high\n\
             owner: ai-governance@example.com\nprovider: Example Corp\nlicense: Apache-2.0\n\
             data_location: on-premises\n",
            path.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_templates_pass_the_document_controls() {
    let dir = tempfile::tempdir().unwrap();
    let good = templates_copy(&dir.path().join("docs"));
    let stale = templates_copy(&dir.path().join("stale-docs"));
    std::fs::remove_file(stale.join("risk-register.yaml")).unwrap();
    let setup = Setup {
        targets: vec![
            docs_target("support-bot-docs", &good, "1.0.0"),
            // The model was upgraded; the documents were not, and one is missing.
            docs_target("upgraded-bot-docs", &stale, "2.0.0"),
        ],
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;

    let detail = audit::run_to_end(&d, "support-bot-docs", None).await;
    let mut ids: Vec<&str> = detail.controls.iter().map(|c| c.control.as_str()).collect();
    ids.sort();
    let want: Vec<String> = (1..=8).map(|i| format!("AURA-D0{i}")).collect();
    assert_eq!(ids, want, "exactly the document controls run");
    for c in &detail.controls {
        assert_eq!(c.verdict, Verdict::Pass, "{}: {}", c.control, c.detail);
    }

    let run = audit::start(&d, StartAudit::target("upgraded-bot-docs", None)).await;
    let detail = audit::finished(&d, run, std::time::Duration::from_secs(30)).await;
    for c in &detail.controls {
        let expect = match c.control.as_str() {
            "AURA-D01" | "AURA-D02" | "AURA-D03" => Verdict::Fail,
            _ => Verdict::Pass,
        };
        assert_eq!(c.verdict, expect, "{}: {}", c.control, c.detail);
    }
    let d01 = audit::control(&detail, "AURA-D01");
    assert!(
        d01.detail.contains("the deployed model version is 2.0.0"),
        "{}",
        d01.detail
    );
    let d03 = audit::control(&detail, "AURA-D03");
    assert!(
        d03.detail.contains("no file matching risk-register.yaml"),
        "{}",
        d03.detail
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_check_names_a_target_without_its_declarations() {
    let dir = tempfile::tempdir().unwrap();
    let good = templates_copy(&dir.path().join("docs"));
    let setup = Setup {
        targets: vec![
            docs_target("support-bot-docs", &good, "1.0.0"),
            (
                "bare.yaml".into(),
                "name: bare-llm\nkind: openai\nendpoint: http://127.0.0.1:9\nmodel: m\n".into(),
            ),
        ],
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let run = audit::start(
        &d,
        StartAudit {
            targets: vec!["support-bot-docs".into()],
            controls: vec!["AURA-D08".into()],
            ..StartAudit::default()
        },
    )
    .await;
    let detail = audit::finished(&d, run, std::time::Duration::from_secs(30)).await;
    let c = audit::control(&detail, "AURA-D08");
    assert_eq!(c.verdict, Verdict::Fail, "{c:#?}");
    assert!(
        c.detail.contains(
            "target `bare-llm` lacks owner, provider, model_version, license, data_location"
        ),
        "{}",
        c.detail
    );
}
