//! Loading a folder of policies or targets, and the checks that span a whole folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::control::{Control, ControlKind};
use crate::detector::{DetectorSpec, compile_regex};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::target::{TargetKind, TargetSpec};
use crate::template;
use crate::yaml;

/// Sub-folders of a policies folder that hold other things than controls.
const NON_CONTROL_DIRS: &[&str] = &["frameworks", "templates", "waivers"];

/// A validated set of controls, as one unit: a reload swaps the whole set or nothing.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub controls: Vec<Control>,
    /// The files the controls came from, sorted.
    pub files: Vec<PathBuf>,
}

impl PolicySet {
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id() == id)
    }

    /// Controls chosen by `selector` (a policy file stem or a control id; `None` means
    /// all) that apply to `target`.
    pub fn select<'a>(
        &'a self,
        selector: Option<&'a str>,
        target: &'a TargetSpec,
    ) -> impl Iterator<Item = &'a Control> + 'a {
        self.controls.iter().filter(move |c| {
            selector.is_none_or(|s| c.policy_name() == s || c.id() == s) && c.applies_to(target)
        })
    }

    /// Whether any control answers to `selector`, whatever its target.
    pub fn knows(&self, selector: &str) -> bool {
        self.controls
            .iter()
            .any(|c| c.policy_name() == selector || c.id() == selector)
    }
}

/// Loads and validates every control under `dir` (or in the one file `dir` names). Any
/// problem fails the whole load.
pub fn load_policies(dir: &Path) -> Result<PolicySet, Diagnostics> {
    let mut diags = Diagnostics::default();
    let files = match yaml_files(dir, NON_CONTROL_DIRS) {
        Ok(f) => f,
        Err(d) => {
            diags.push(d);
            return diags.into_result(PolicySet::default());
        }
    };
    let mut controls = Vec::new();
    for file in &files {
        match yaml::read_one_or_many::<Control>(file) {
            Ok(list) => {
                for mut c in list {
                    c.source = file.clone();
                    check_control(&c, &mut diags);
                    controls.push(c);
                }
            }
            Err(d) => diags.push(d),
        }
    }
    check_unique(
        controls.iter().map(|c| (&c.id, c.source.as_path())),
        "control id",
        &mut diags,
    );
    diags.into_result(PolicySet { controls, files })
}

/// Loads and validates every target under `dir`.
pub fn load_targets(dir: &Path) -> Result<Vec<TargetSpec>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let files = match yaml_files(dir, &[]) {
        Ok(f) => f,
        Err(d) => {
            diags.push(d);
            return diags.into_result(Vec::new());
        }
    };
    let mut targets = Vec::new();
    for file in &files {
        match yaml::read_one_or_many::<TargetSpec>(file) {
            Ok(list) => {
                for mut t in list {
                    t.source = file.clone();
                    check_target(&t, &mut diags);
                    targets.push(t);
                }
            }
            Err(d) => diags.push(d),
        }
    }
    check_unique(
        targets.iter().map(|t| (&t.name, t.source.as_path())),
        "target name",
        &mut diags,
    );
    diags.into_result(targets)
}

/// `*.yaml` and `*.yml` files under `dir`, sorted, skipping hidden files, editor backups
/// and swap files, and the named sub-folders.
fn yaml_files(dir: &Path, skip_dirs: &[&str]) -> Result<Vec<PathBuf>, Diagnostic> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| Diagnostic::file(&d, format!("cannot read the folder: {e}")))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Diagnostic::file(&d, format!("cannot read the folder: {e}")))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('#') {
                continue;
            }
            let ty = entry
                .file_type()
                .map_err(|e| Diagnostic::file(&path, format!("cannot stat: {e}")))?;
            if ty.is_dir() {
                if !skip_dirs.contains(&name.as_str()) {
                    stack.push(path);
                }
            } else if is_yaml_name(&name) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a file name is a YAML file we load; editor backups (`x.yaml~`, `x.yaml.bak`,
/// `.x.yaml.swp`) are not.
pub fn is_yaml_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn check_unique<'a>(
    items: impl Iterator<Item = (&'a serde_saphyr::Spanned<String>, &'a Path)>,
    what: &str,
    diags: &mut Diagnostics,
) {
    let mut seen: BTreeMap<&str, (&Path, u64)> = BTreeMap::new();
    for (id, file) in items {
        let line = id.referenced.line();
        if let Some((first_file, first_line)) = seen.get(id.value.as_str()) {
            diags.push(
                Diagnostic::at(
                    file,
                    id.referenced,
                    format!("duplicate {what} `{}`", id.value),
                )
                .with_help(format!(
                    "it is already used at {}:{}; every {what} must be unique",
                    first_file.display(),
                    first_line
                )),
            );
        } else {
            seen.insert(&id.value, (file, line));
        }
    }
}

fn check_control(c: &Control, diags: &mut Diagnostics) {
    let file = c.source.as_path();
    let at_id = |msg: String| Diagnostic::at(file, c.id.referenced, msg);
    if c.id.value.trim().is_empty() {
        diags.push(at_id("the control id is empty".into()));
    }
    if !(0.0..=1.0).contains(&c.threshold.max_attack_success_rate) {
        diags.push(
            at_id(format!(
                "control `{}`: threshold.max_attack_success_rate is {}, outside 0.0 to 1.0",
                c.id.value, c.threshold.max_attack_success_rate
            ))
            .with_help("write a share, e.g. 0.05 for 5%"),
        );
    }
    if c.detectors.is_empty() {
        diags.push(
            at_id(format!("control `{}` has no detectors", c.id.value))
                .with_help("add `detectors:` with at least one entry, e.g. `- type: refusal`"),
        );
    }
    for d in &c.detectors {
        check_detector(c, d, diags);
    }
    match c.kind {
        ControlKind::Probe => check_probe(c, diags),
    }
}

fn check_detector(c: &Control, d: &serde_saphyr::Spanned<DetectorSpec>, diags: &mut Diagnostics) {
    let file = c.source.as_path();
    match &d.value {
        DetectorSpec::Regex {
            patterns,
            case_insensitive,
            ..
        } => {
            if patterns.is_empty() {
                diags.push(
                    Diagnostic::at(file, d.referenced, "regex detector has no `patterns`")
                        .with_help("add `patterns:` with at least one regular expression"),
                );
            }
            for p in patterns {
                if let Err(e) = compile_regex(p, *case_insensitive) {
                    diags.push(Diagnostic::at(
                        file,
                        d.referenced,
                        format!("invalid regex `{p}`: {e}"),
                    ));
                }
            }
        }
        DetectorSpec::Contains { values, .. } if values.is_empty() => {
            diags.push(
                Diagnostic::at(file, d.referenced, "contains detector has no `values`")
                    .with_help("add `values:` with at least one string"),
            );
        }
        DetectorSpec::CanaryLeak {} if c.probe.as_ref().is_none_or(|p| p.canaries.is_empty()) => {
            diags.push(
                Diagnostic::at(file, d.referenced, "canary_leak detector, but no canaries")
                    .with_help("declare `probe.canaries: [name]` and use `{{canary.name}}`"),
            );
        }
        _ => {}
    }
}

fn check_probe(c: &Control, diags: &mut Diagnostics) {
    let file = c.source.as_path();
    let Some(p) = &c.probe else {
        diags.push(
            Diagnostic::at(
                file,
                c.id.referenced,
                format!(
                    "control `{}` is a probe but has no `probe:` section",
                    c.id.value
                ),
            )
            .with_help("add `probe:` with `prompts:`"),
        );
        return;
    };
    if p.prompts.is_empty() {
        diags.push(
            Diagnostic::at(
                file,
                c.id.referenced,
                format!("control `{}`: the probe has no prompts", c.id.value),
            )
            .with_help("add `prompts:` with at least one prompt"),
        );
    }
    if p.repeats == 0 {
        diags.push(Diagnostic::at(
            file,
            c.id.referenced,
            format!("control `{}`: probe.repeats must be at least 1", c.id.value),
        ));
    }
    let canaries: BTreeSet<&str> = p.canaries.iter().map(|s| s.value.as_str()).collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let texts = p.system_prompt.iter().chain(p.prompts.iter());
    for text in texts {
        match template::placeholders(text) {
            Err(e) => diags.push(Diagnostic::at(
                file,
                c.id.referenced,
                format!("control `{}`: {e}", c.id.value),
            )),
            Ok(names) => {
                for n in names {
                    if let Some(canary) = n.strip_prefix("canary.") {
                        if !canaries.contains(canary) {
                            diags.push(
                                Diagnostic::at(file, c.id.referenced, format!(
                                    "control `{}` uses `{{{{{n}}}}}` but declares no canary `{canary}`",
                                    c.id.value
                                ))
                                .with_help(format!("add `{canary}` to `probe.canaries`")),
                            );
                        }
                        used.insert(canary.to_string());
                    } else if n != "target.system_prompt" && !p.variables.contains_key(n) {
                        diags.push(
                            Diagnostic::at(file, c.id.referenced, format!(
                                "control `{}` uses `{{{{{n}}}}}`, which is not a declared variable",
                                c.id.value
                            ))
                            .with_help(format!("add `{n}:` under `probe.variables`")),
                        );
                    }
                }
            }
        }
    }
    for canary in &p.canaries {
        if !used.contains(&canary.value) {
            diags.push(
                Diagnostic::at(
                    file,
                    canary.referenced,
                    format!("canary `{}` is declared but never used", canary.value),
                )
                .with_help(format!(
                    "plant it with `{{{{canary.{}}}}}` in the system prompt or a prompt",
                    canary.value
                )),
            );
        }
    }
}

fn check_target(t: &TargetSpec, diags: &mut Diagnostics) {
    let file = t.source.as_path();
    let at = |msg: String| Diagnostic::at(file, t.name.referenced, msg);
    if t.name.value.trim().is_empty() {
        diags.push(at("the target name is empty".into()));
    }
    if t.concurrency == 0 {
        diags.push(at(format!(
            "target `{}`: concurrency must be at least 1",
            t.name.value
        )));
    }
    if t.system_prompt.is_some() && t.system_prompt_file.is_some() {
        diags.push(
            at(format!(
                "target `{}` sets both system_prompt and system_prompt_file",
                t.name.value
            ))
            .with_help("keep one of them"),
        );
    }
    if let Some(path) = &t.system_prompt_file {
        let resolved = t.resolve(path);
        if !resolved.is_file() {
            diags.push(at(format!(
                "target `{}`: system_prompt_file {} does not exist",
                t.name.value,
                resolved.display()
            )));
        }
    }
    match t.kind {
        TargetKind::Openai => {
            match &t.endpoint {
                None => diags.push(
                    at(format!(
                        "target `{}` (openai) has no endpoint",
                        t.name.value
                    ))
                    .with_help("add e.g. `endpoint: http://127.0.0.1:8080`"),
                ),
                Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
                    diags.push(at(format!(
                        "target `{}`: endpoint `{e}` is not an http:// or https:// URL",
                        t.name.value
                    )))
                }
                Some(_) => {}
            }
            if t.model.is_none() {
                diags.push(
                    at(format!("target `{}` (openai) has no model", t.name.value))
                        .with_help("add `model:` with the name the server knows the model by"),
                );
            }
        }
        TargetKind::Demo => {}
    }
}
