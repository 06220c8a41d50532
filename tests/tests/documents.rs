//! The document templates in policies/templates pass the document controls of the
//! default pack (AURA-D01 to AURA-D08) through a real audit of a `documents` target;
//! a copy that does not match the deployed version, or lacks a file, fails the controls
//! that check it.

use std::path::{Path, PathBuf};

use aura_proto::view::{Timestamp, Verdict};
use aura_proto::wire::StartAudit;
use aura_tests::audit;
use aura_tests::{Setup, TestDaemon, repo_policies};

/// A copy of the templates (without the README). Their dates of review (`updated`, each
/// risk's `review_date`, `last_drill`, each system's `last_review`) are set to today, so the freshness limits (90
/// days for the risk register) test the copy, not the day the templates were last
/// edited; everything else is as shipped.
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
            .map(|l| {
                let body = l.trim_start();
                let indent = &l[..l.len() - body.len()];
                [
                    "updated: ",
                    "review_date: ",
                    "last_drill: ",
                    "last_review: ",
                ]
                .iter()
                .find_map(|key| {
                    let rest = body.strip_prefix(key)?;
                    (rest.len() >= 10 && rest.as_bytes()[4] == b'-')
                        .then(|| format!("{indent}{key}{today}{}", &rest[10..]))
                })
                .unwrap_or_else(|| l.to_string())
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
    // A register whose second risk lost its owner and whose third was last reviewed
    // long ago, a procedure whose last drill is two years old, and an inventory entry
    // without its model hash.
    let neglected = templates_copy(&dir.path().join("neglected-docs"));
    let register = std::fs::read_to_string(neglected.join("risk-register.yaml")).unwrap();
    let mut risk = 0;
    let edited: Vec<String> = register
        .lines()
        .filter_map(|l| {
            if l.starts_with("  - id: RISK-") {
                risk += 1;
            }
            match (risk, l.trim_start()) {
                (2, t) if t.starts_with("owner: ") && l.starts_with("    ") => None,
                (3, t) if t.starts_with("review_date: ") => {
                    Some("    review_date: 2024-01-15".to_string())
                }
                _ => Some(l.to_string()),
            }
        })
        .collect();
    std::fs::write(neglected.join("risk-register.yaml"), edited.join("\n")).unwrap();
    let procedure = neglected.join("oversight-procedure.md");
    let text = std::fs::read_to_string(&procedure).unwrap();
    let drill = text
        .lines()
        .find(|l| l.starts_with("last_drill: "))
        .unwrap();
    std::fs::write(&procedure, text.replace(drill, "last_drill: 2024-06-01")).unwrap();
    let inventory = neglected.join("ai-inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let hash = text.lines().find(|l| l.contains("model_hash: ")).unwrap();
    std::fs::write(&inventory, text.replace(&format!("{hash}\n"), "")).unwrap();
    let setup = Setup {
        targets: vec![
            docs_target("support-bot-docs", &good, "1.0.0"),
            // The model was upgraded; the documents were not, and one is missing.
            docs_target("upgraded-bot-docs", &stale, "2.0.0"),
            docs_target("neglected-bot-docs", &neglected, "1.0.0"),
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

    let run = audit::start(&d, StartAudit::target("neglected-bot-docs", None)).await;
    let detail = audit::finished(&d, run, std::time::Duration::from_secs(30)).await;
    let d03 = audit::control(&detail, "AURA-D03");
    assert_eq!(d03.verdict, Verdict::Fail, "{}", d03.detail);
    for expected in [
        "`risks[RISK-002].owner` is missing or empty",
        "`risks[RISK-003].review_date` is ",
    ] {
        assert!(
            d03.detail.contains(expected),
            "{expected:?} in {}",
            d03.detail
        );
    }
    let d06 = audit::control(&detail, "AURA-D06");
    assert_eq!(d06.verdict, Verdict::Fail, "{}", d06.detail);
    assert!(d06.detail.contains("`last_drill` is "), "{}", d06.detail);
    let d08 = audit::control(&detail, "AURA-D08");
    assert_eq!(d08.verdict, Verdict::Fail, "{}", d08.detail);
    assert!(
        d08.detail
            .contains("`systems[Example Support Assistant].model_hash` is missing"),
        "{}",
        d08.detail
    );
    assert_eq!(audit::verdict(&detail, "AURA-D01"), Verdict::Pass);
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
