//! Document controls: files of a `documents` target (Markdown with YAML front matter,
//! YAML, JSON) checked for required fields and headings, freshness, the model version,
//! value constraints, and checks that look beyond the document.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aura_policy::control::{CrossCheck, DocumentSpec, FieldConstraint};
use aura_policy::record::parse_date;
use aura_policy::{PolicySet, TargetSpec};
use aura_proto::view::{Timestamp, Verdict};
use serde_json::Value;

use super::Checked;

/// What cross checks need from the rest of the daemon.
pub struct World<'a> {
    pub policies: &'a PolicySet,
    pub targets: Vec<&'a TargetSpec>,
    /// Control ids with an open high or critical failure.
    pub open_findings: Vec<String>,
    pub now: Timestamp,
}

/// A parsed document.
pub struct Doc {
    pub path: PathBuf,
    pub fields: Value,
    pub headings: Vec<String>,
    pub text: String,
    pub modified: Option<SystemTime>,
}

pub fn evaluate(spec: &DocumentSpec, target: &TargetSpec, world: &World<'_>) -> Checked {
    let Some(dir) = target.path.as_ref().map(|p| target.resolve(p)) else {
        return Checked::new(Verdict::Error, "the documents target has no path");
    };
    let files = match matching(&dir, &spec.files) {
        Ok(f) => f,
        Err(e) => {
            return Checked::new(
                Verdict::Error,
                format!("cannot read {}: {e}", dir.display()),
            );
        }
    };
    if files.is_empty() {
        return Checked::new(
            Verdict::Fail,
            format!(
                "no file matching {} in {}",
                spec.files.join(", "),
                dir.display()
            ),
        );
    }
    let mut problems = Vec::new();
    let mut counts = aura_proto::view::VerdictCounts::default();
    for f in &files {
        let doc = match parse(f) {
            Ok(d) => d,
            Err(e) => {
                counts.add(Verdict::Fail);
                problems.push(format!("{}: {e}", name(f)));
                continue;
            }
        };
        let before = problems.len();
        check(spec, target, world, &doc, &mut problems);
        counts.add(if problems.len() > before {
            Verdict::Fail
        } else {
            Verdict::Pass
        });
    }
    let mut out = if problems.is_empty() {
        Checked::new(
            Verdict::Pass,
            format!("{} document(s) complete and current", files.len()),
        )
    } else {
        Checked::new(Verdict::Fail, problems.join("; "))
    };
    out.counts = counts;
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check(
    spec: &DocumentSpec,
    target: &TargetSpec,
    world: &World<'_>,
    doc: &Doc,
    problems: &mut Vec<String>,
) {
    let n = name(&doc.path);
    for path in &spec.required_fields {
        for (field, v) in path.resolve(&doc.fields) {
            if !present(v) {
                problems.push(format!("{n}: `{field}` is missing or empty"));
            }
        }
    }
    for h in &spec.required_headings {
        if !doc
            .headings
            .iter()
            .any(|d| d.eq_ignore_ascii_case(h.trim()))
        {
            problems.push(format!("{n}: no heading \"{h}\""));
        }
    }
    if let Some(max) = spec.max_age {
        match updated(doc) {
            Some(t) => {
                let age = Duration::from_millis(world.now.0.saturating_sub(t.0));
                if age > max {
                    problems.push(format!(
                        "{n}: last updated {} days ago, more than {}",
                        age.as_secs() / 86_400,
                        humantime::format_duration(max)
                    ));
                }
            }
            None => problems.push(format!(
                "{n}: no date to judge freshness (add `updated: YYYY-MM-DD`)"
            )),
        }
    }
    if let Some(field) = &spec.version_field {
        let declared = target.model_version.as_deref();
        let written = lookup(&doc.fields, field).map(scalar);
        match (declared, written) {
            (None, _) => problems.push(format!(
                "{n}: the target declares no model_version to compare `{field}` with"
            )),
            (Some(d), Some(w)) if d == w => {}
            (Some(d), w) => problems.push(format!(
                "{n}: `{field}` is {} but the deployed model version is {d}",
                w.unwrap_or_else(|| "missing".into())
            )),
        }
    }
    for c in &spec.constraints {
        for (field, v) in c.field.resolve(&doc.fields) {
            constrain(c, &n, &field, v, world.now, problems);
        }
    }
    for x in &spec.cross_checks {
        match x {
            CrossCheck::FindingsReferenced => {
                for id in &world.open_findings {
                    let waived = world
                        .policies
                        .waiver(id, target.name(), world.now)
                        .is_some();
                    if !doc.text.contains(id.as_str()) && !waived {
                        problems.push(format!(
                            "{n}: open finding {id} is not referenced by any risk entry or waiver"
                        ));
                    }
                }
            }
            CrossCheck::MetricsMapToRuntimeControls => {
                let runtime: Vec<&str> = world
                    .policies
                    .controls
                    .iter()
                    .filter(|c| c.kind.value == aura_policy::ControlKind::Runtime)
                    .map(|c| c.id())
                    .collect();
                let metrics = lookup(&doc.fields, "metrics")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if metrics.is_empty() {
                    problems.push(format!("{n}: lists no `metrics`"));
                }
                for m in metrics {
                    let control = m.get("control").map(scalar).unwrap_or_default();
                    if !runtime.contains(&control.as_str()) {
                        let metric = m.get("name").map(scalar).unwrap_or_else(|| scalar(&m));
                        problems.push(format!(
                            "{n}: metric `{metric}` maps to no active runtime control"
                        ));
                    }
                }
            }
            CrossCheck::InventoryComplete => {
                for t in &world.targets {
                    let mut missing = Vec::new();
                    let fields = [
                        ("owner", t.owner.is_some()),
                        (
                            "provider",
                            t.provider.is_some() || t.kind == aura_policy::TargetKind::Demo,
                        ),
                        (
                            "model",
                            t.model.is_some()
                                || !t.kind.answers_prompts()
                                || t.kind == aura_policy::TargetKind::Demo,
                        ),
                        ("model_version", t.model_version.is_some()),
                        ("license", t.license.is_some()),
                        ("data_location", t.data_location.is_some()),
                    ];
                    for (f, ok) in fields {
                        if !ok {
                            missing.push(f);
                        }
                    }
                    if !missing.is_empty() {
                        problems.push(format!(
                            "inventory: target `{}` lacks {}",
                            t.name(),
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
    }
}

/// One constraint on one value (`field` names it, e.g. `risks[RISK-002].review_date`).
fn constrain(
    c: &FieldConstraint,
    n: &str,
    field: &str,
    v: Option<&Value>,
    now: Timestamp,
    problems: &mut Vec<String>,
) {
    let num = v.and_then(|v| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    if let Some(min) = c.min
        && num.is_none_or(|x| x < min)
    {
        problems.push(format!("{n}: `{field}` must be at least {min}"));
    }
    if let Some(max) = c.max
        && num.is_none_or(|x| x > max)
    {
        problems.push(format!("{n}: `{field}` must be at most {max}"));
    }
    if let Some(eq) = &c.equals
        && v != Some(eq)
    {
        problems.push(format!("{n}: `{field}` must be {eq}"));
    }
    if !c.contains_all.is_empty() {
        let have: Vec<String> = v
            .and_then(Value::as_array)
            .map(|a| a.iter().map(scalar).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = c
            .contains_all
            .iter()
            .filter(|x| !have.contains(x))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{n}: `{field}` lacks {}", missing.join(", ")));
        }
    }
    if let Some(max) = c.max_age {
        match v.map(scalar).map(|d| parse_date(&d, false)) {
            Some(Ok(t)) => {
                let age = Duration::from_millis(now.0.saturating_sub(t.0));
                if age > max {
                    problems.push(format!(
                        "{n}: `{field}` is {} days old, more than {}",
                        age.as_secs() / 86_400,
                        humantime::format_duration(max)
                    ));
                }
            }
            Some(Err(e)) => problems.push(format!("{n}: `{field}`: {e}")),
            None => problems.push(format!("{n}: `{field}` is missing (a date, YYYY-MM-DD)")),
        }
    }
}

fn updated(doc: &Doc) -> Option<Timestamp> {
    for key in ["updated", "last_updated", "last_reviewed", "date"] {
        if let Some(v) = lookup(&doc.fields, key)
            && let Ok(t) = parse_date(&scalar(v), false)
        {
            return Some(t);
        }
    }
    let m = doc.modified?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(Timestamp(m.as_millis() as u64))
}

/// A value at a dotted path.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Files in `dir` whose names match any of `patterns` (`*` and `?` wildcards).
fn matching(dir: &Path, patterns: &[String]) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| patterns.iter().any(|pat| glob(pat, &name(p))))
        .collect();
    out.sort();
    Ok(out)
}

fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Reads a Markdown (front matter), YAML or JSON document.
pub fn parse(path: &Path) -> Result<Doc, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > aura_policy::MAX_FILE_BYTES * 4 {
        return Err("the document is larger than 4 MiB".into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (fields, body) = match ext.as_str() {
        "json" => (
            serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?,
            "",
        ),
        "yaml" | "yml" => (yaml(&text)?, ""),
        _ => match front_matter(&text) {
            Some((fm, body)) => (yaml(fm)?, body),
            None => (Value::Object(Default::default()), text.as_str()),
        },
    };
    let headings = body
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect();
    Ok(Doc {
        path: path.to_path_buf(),
        fields,
        headings,
        text: text.clone(),
        modified: meta.modified().ok(),
    })
}

fn yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| format!("not valid YAML: {}", e.without_snippet()))
}

fn front_matter(text: &str) -> Option<(&str, &str)> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let end = rest.find("\n---")?;
    let after = &rest[end + 4..];
    Some((
        &rest[..end],
        after.split_once('\n').map(|(_, b)| b).unwrap_or(""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_lookup() {
        assert!(glob("model-card*.md", "model-card-v2.md"));
        assert!(!glob("model-card*.md", "card.md"));
        let v: Value = serde_json::json!({"a": {"b": [1]}});
        assert!(present(lookup(&v, "a.b")));
        assert!(!present(lookup(&v, "a.c")));
    }
}
