//! Every kind of mistake a policy author can make gets a message naming the file, the
//! line and the problem, and where possible the fix. Hostile inputs are refused in
//! bounded time and memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aura_policy::{Diagnostics, load_policies, load_targets};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn errors(path: &Path) -> Diagnostics {
    load_policies(path).expect_err("expected validation errors")
}

/// Asserts one diagnostic for `file` at `line` whose message contains `message` and,
/// if given, whose help contains `help`.
fn expect(case: &str, line: u64, message: &str, help: Option<&str>) {
    let path = fixtures().join("invalid").join(case);
    let diags = errors(&path);
    let found = diags
        .iter()
        .find(|d| d.message.contains(message))
        .unwrap_or_else(|| panic!("{case}: no diagnostic containing {message:?} in:\n{diags}"));
    assert_eq!(found.file, path, "{case}: {found}");
    assert_eq!(found.line, line, "{case}: {found}");
    assert!(found.column > 0, "{case}: {found}");
    if let Some(h) = help {
        let got = found.help.as_deref().unwrap_or("");
        assert!(got.contains(h), "{case}: help {got:?} lacks {h:?}");
    }
    // The rendered form names file, line and column.
    let shown = found.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}:", path.display())),
        "{shown}"
    );
}

#[test]
fn the_valid_fixtures_load() {
    let set = load_policies(&fixtures().join("valid")).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(set.controls.len(), 4);
}

/// The example targets users copy from must themselves be valid, one of every kind
/// that talks to a model or reads files.
#[test]
fn the_shipped_target_examples_are_valid() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/targets/examples.yaml.disabled");
    let targets = load_targets(&file).unwrap_or_else(|d| panic!("{d}"));
    let kinds: std::collections::BTreeSet<&str> = targets.iter().map(|t| t.kind.name()).collect();
    for kind in [
        "openai",
        "anthropic",
        "http",
        "command",
        "transcripts",
        "documents",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} example in {}",
            file.display()
        );
    }
}

#[test]
fn unknown_detector_suggests_the_right_name() {
    expect(
        "unknown-detector.yaml",
        7,
        "unknown variant `refusl`",
        Some("did you mean `refusal`?"),
    );
}

#[test]
fn unknown_key_suggests_the_right_key() {
    expect(
        "unknown-key.yaml",
        2,
        "unknown field `titel`",
        Some("did you mean `title`?"),
    );
}

#[test]
fn bad_severity_lists_the_choices() {
    expect(
        "bad-severity.yaml",
        3,
        "unknown variant `severe`",
        Some("critical"),
    );
}

#[test]
fn unknown_framework_clause() {
    expect(
        "unknown-clause.yaml",
        6,
        "unknown owasp-llm-2025 clause `LLM11`",
        Some("LLM01"),
    );
}

#[test]
fn invalid_cron_seconds_out_of_range() {
    expect("bad-cron.yaml", 5, "not a valid cron schedule", None);
}

#[test]
fn invalid_regex() {
    expect("bad-regex.yaml", 7, "invalid regex `(unclosed`", None);
}

#[test]
fn canary_declared_but_unused() {
    expect(
        "unused-canary.yaml",
        7,
        "canary `secret` is declared but never used",
        Some("{{canary.secret}}"),
    );
}

#[test]
fn detector_missing_a_parameter() {
    expect(
        "missing-parameter.yaml",
        7,
        "missing field `patterns`",
        None,
    );
}

#[test]
fn section_of_another_kind() {
    expect(
        "wrong-section.yaml",
        6,
        "is of kind probe but has a `document:` section",
        Some("remove it"),
    );
}

#[test]
fn undeclared_variable() {
    expect(
        "undeclared-variable.yaml",
        6,
        "`{{topic}}`, which is not a declared variable",
        Some("probe.variables"),
    );
}

#[test]
fn threshold_out_of_range() {
    expect("bad-threshold.yaml", 1, "outside 0.0 to 1.0", Some("0.05"));
}

#[test]
fn log_integrity_that_checks_nothing() {
    expect(
        "integrity-empty.yaml",
        6,
        "runtime.integrity checks nothing",
        Some("`max_gap`"),
    );
}

#[test]
fn malformed_field_path() {
    expect(
        "bad-field-path.yaml",
        9,
        "`risks[0].owner` is not a field path",
        None,
    );
}

#[test]
fn zero_tolerance_names_a_detector_the_control_lacks() {
    expect(
        "zero-tolerance-unknown.yaml",
        6,
        "runtime.zero_tolerance names `regx`, which is not one of its detectors (injection_attempt, regex)",
        Some("did you mean `regex`?"),
    );
}

#[test]
fn log_integrity_with_a_zero_gap() {
    expect(
        "integrity-zero-gap.yaml",
        6,
        "runtime.integrity durations must be longer than zero",
        Some("`max_gap: 6h`"),
    );
}

#[test]
fn refusal_gap_out_of_range() {
    expect(
        "refusal-gap-range.yaml",
        9,
        "max_refusal_gap is 3, outside 0.0 to 1.0",
        None,
    );
}

#[test]
fn webhook_with_an_inline_credential() {
    expect(
        "webhook-credential.yaml",
        10,
        "carries a credential inline",
        None,
    );
}

#[test]
fn conversation_must_end_with_the_user() {
    expect(
        "conversation-ends-with-assistant.yaml",
        6,
        "must end with a user turn",
        None,
    );
}

#[test]
fn consistency_needs_a_variable_with_variants() {
    expect(
        "consistency-without-variable.yaml",
        9,
        "consistency detector on `name`",
        Some("value-a, value-b"),
    );
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let dir = fixtures().join("duplicate");
    let diags = errors(&dir);
    let d = diags
        .iter()
        .find(|d| d.message.contains("duplicate control id `FX-DUP`"))
        .expect("duplicate reported");
    assert_eq!(d.file, dir.join("b.yaml"));
    assert_eq!(d.line, 2);
    assert!(d.help.as_deref().unwrap().contains("a.yaml:1"), "{d}");
}

#[test]
fn a_secret_written_inline_is_rejected() {
    let path = fixtures().join("targets-invalid/inline-secret.yaml");
    let diags = load_targets(&path).expect_err("rejected");
    let d = diags.iter().next().unwrap();
    assert!(
        d.message.contains("must not be written into the file"),
        "{d}"
    );
    assert_eq!(d.line, 5);
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let started = Instant::now();
    let diags = errors(&fixtures().join("invalid/alias-bomb.yaml"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!diags.is_empty());
}

#[test]
fn hostile_files_are_refused_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    // 50 MB: refused by size before reading.
    let big = dir.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(50 * 1024 * 1024).unwrap();
    let d = errors(&big);
    assert!(
        d.iter()
            .any(|d| d.message.contains("limit is 1048576 bytes")),
        "{d}"
    );

    // Invalid UTF-8 on line 3.
    let bad = dir.path().join("utf8.yaml");
    std::fs::write(&bad, b"id: X\ntitle: t\nseverity: \xff\xfe\n").unwrap();
    let d = errors(&bad);
    let first = d.iter().next().unwrap();
    assert!(first.message.contains("not valid UTF-8"), "{first}");
    assert_eq!(first.line, 3);

    // Nesting 10,000 deep.
    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!("id: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
    )
    .unwrap();
    let started = Instant::now();
    let d = errors(&deep);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!d.is_empty());
}

#[test]
fn generated_prompt_count_out_of_range() {
    expect(
        "generate-count.yaml",
        8,
        "probe.generate.count is 500, it must be 1 to 50",
        Some("between 1 and 50"),
    );
}

#[test]
fn pass_env_is_for_command_targets_and_takes_names_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.yaml"),
        "name: api\nkind: openai\nendpoint: http://127.0.0.1:8080\nmodel: m\npass_env: [HOME]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bot.yaml"),
        "name: bot\nkind: command\ncommand: [/bin/true]\npass_env: [MODEL_DIR, \"KEY=abc\"]\n",
    )
    .unwrap();
    let diags = load_targets(dir.path()).expect_err("rejected");
    let shown = diags.to_string();
    assert!(
        shown.contains("target `api`: pass_env is for command targets, not openai"),
        "{shown}"
    );
    let bad = diags
        .iter()
        .find(|d| {
            d.message
                .contains("pass_env entry `KEY=abc` is not a variable name")
        })
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(bad.file.ends_with("bot.yaml"));
    assert!(bad.help.as_deref().unwrap_or("").contains("names only"));
    assert_eq!(diags.len(), 2, "MODEL_DIR is fine: {shown}");
}
