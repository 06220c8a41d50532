//! Loading a folder of policies or targets, and the checks that span a whole folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::control::{ActionSpec, Control, ControlKind};
use crate::crosswalk::{self, Crosswalks};
use crate::detector::{DetectorSpec, compile_regex};
use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::record::{Attestation, Waiver};
use crate::schedule;
use crate::target::{TargetKind, TargetSpec};
use crate::template;
use crate::yaml;

/// Sub-folders of a policies folder that hold other things than controls.
pub const FRAMEWORKS_DIR: &str = "frameworks";
pub const WAIVERS_DIR: &str = "waivers";
pub const ATTESTATIONS_DIR: &str = "attestations";
/// Most prompts one control may ask the daemon's LLM to write per run.
pub const MAX_GENERATED: u32 = 50;
const NON_CONTROL_DIRS: &[&str] = &[
    FRAMEWORKS_DIR,
    WAIVERS_DIR,
    ATTESTATIONS_DIR,
    "templates",
    "fixtures",
];

/// A validated set of controls with their records, as one unit: a reload swaps the whole
/// set or nothing.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub controls: Vec<Control>,
    pub waivers: Vec<Waiver>,
    pub attestations: Vec<Attestation>,
    pub crosswalks: Crosswalks,
    /// Every file the set was read from, sorted.
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

    /// The waiver that applies to a control on a target now, if any.
    pub fn waiver(
        &self,
        control: &str,
        target: &str,
        now: aura_proto::view::Timestamp,
    ) -> Option<&Waiver> {
        self.waivers
            .iter()
            .find(|w| w.covers(control, target) && !w.expired(now))
    }

    /// Checks that need the targets: waivers and attestations name known targets,
    /// `applies_to.tags` name tags some target has.
    pub fn check_against(&self, targets: &[TargetSpec]) -> Diagnostics {
        let mut diags = Diagnostics::default();
        let names: BTreeSet<&str> = targets.iter().map(|t| t.name()).collect();
        let tags: BTreeSet<&str> = targets
            .iter()
            .flat_map(|t| t.tags.iter().map(String::as_str))
            .collect();
        let mut check_target = |file: &Path, t: &Spanned<String>| {
            if t.value != "*" && !names.contains(t.value.as_str()) {
                let mut d =
                    Diagnostic::at(file, t.referenced, format!("unknown target `{}`", t.value));
                d = match suggest(&t.value, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!(
                        "configured targets: {}",
                        names.iter().copied().collect::<Vec<_>>().join(", ")
                    )),
                };
                diags.push(d);
            }
        };
        for w in &self.waivers {
            w.targets.iter().for_each(|t| check_target(&w.file, t));
        }
        for a in &self.attestations {
            a.targets.iter().for_each(|t| check_target(&a.file, t));
        }
        // A tag no target carries yet is fine (a control for agentic targets before the
        // first one is configured); one that looks like a misspelt tag is not.
        for c in &self.controls {
            for tag in &c.applies_to.tags {
                if tags.contains(tag.value.as_str()) {
                    continue;
                }
                if let Some(s) = suggest(&tag.value, tags.iter().copied()) {
                    diags.push(
                        Diagnostic::at(
                            &c.source,
                            tag.referenced,
                            format!(
                                "control `{}` applies to tag `{}`, which no target has",
                                c.id(),
                                tag.value
                            ),
                        )
                        .with_help(format!("did you mean `{s}`?")),
                    );
                }
            }
        }
        diags
    }
}

/// Loads and validates every control under `dir` (or in the one file `dir` names), with
/// the crosswalks, waivers and attestations beside them. Any problem fails the load.
pub fn load_policies(dir: &Path) -> Result<PolicySet, Diagnostics> {
    let mut diags = Diagnostics::default();
    let files = match yaml_files(dir, NON_CONTROL_DIRS) {
        Ok(f) => f,
        Err(d) => {
            diags.push(d);
            return diags.into_result(PolicySet::default());
        }
    };
    let root = policies_root(dir);
    let crosswalks = crosswalk::load(&root.join(FRAMEWORKS_DIR), &mut diags);
    let mut set = PolicySet {
        crosswalks,
        ..PolicySet::default()
    };
    for file in &files {
        match yaml::read_one_or_many::<Control>(file) {
            Ok(list) => {
                for mut c in list {
                    c.source = file.clone();
                    set.controls.push(c);
                }
            }
            Err(d) => diags.push(d),
        }
    }
    set.waivers = load_records(&root.join(WAIVERS_DIR), &mut diags, |w: &mut Waiver, f| {
        w.file = f
    });
    set.attestations = load_records(
        &root.join(ATTESTATIONS_DIR),
        &mut diags,
        |a: &mut Attestation, f| a.file = f,
    );
    for c in &set.controls {
        check_control(c, &set.crosswalks, &mut diags);
    }
    check_unique(
        set.controls.iter().map(|c| (&c.id, c.source.as_path())),
        "control id",
        &mut diags,
    );
    check_records(&set, &mut diags);
    set.files = files;
    set.files.extend(set.waivers.iter().map(|w| w.file.clone()));
    set.files
        .extend(set.attestations.iter().map(|a| a.file.clone()));
    set.files.sort();
    set.files.dedup();
    diags.into_result(set)
}

/// The folder that holds `frameworks/`: `dir` itself, or for a file or sub-folder the
/// nearest ancestor that has one.
fn policies_root(dir: &Path) -> PathBuf {
    let start = if dir.is_file() {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    start
        .ancestors()
        .take(4)
        .find(|a| a.join(FRAMEWORKS_DIR).is_dir())
        .unwrap_or(start)
        .to_path_buf()
}

fn load_records<T: serde::de::DeserializeOwned>(
    dir: &Path,
    diags: &mut Diagnostics,
    set_file: impl Fn(&mut T, PathBuf),
) -> Vec<T> {
    if !dir.is_dir() {
        return Vec::new();
    }
    let files = match yaml_files(dir, &[]) {
        Ok(f) => f,
        Err(d) => {
            diags.push(d);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for file in files {
        match yaml::read_one_or_many::<T>(&file) {
            Ok(list) => {
                for mut r in list {
                    set_file(&mut r, file.clone());
                    out.push(r);
                }
            }
            Err(d) => diags.push(d),
        }
    }
    out
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
/// `.x.yaml.swp`, `#x.yaml#`) are not.
pub fn is_yaml_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn check_unique<'a>(
    items: impl Iterator<Item = (&'a Spanned<String>, &'a Path)>,
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

fn check_control(c: &Control, crosswalks: &Crosswalks, diags: &mut Diagnostics) {
    let file = c.source.as_path();
    let id = c.id();
    let at_id = |msg: String| Diagnostic::at(file, c.id.referenced, msg);
    if id.trim().is_empty() {
        diags.push(at_id("the control id is empty".into()));
    }
    if !(0.0..=1.0).contains(&c.threshold.max_attack_success_rate) {
        diags.push(
            at_id(format!(
                "control `{id}`: threshold.max_attack_success_rate is {}, outside 0.0 to 1.0",
                c.threshold.max_attack_success_rate
            ))
            .with_help("write a share, e.g. 0.05 for 5%"),
        );
    }
    if let Some(s) = &c.schedule
        && let Err(e) = schedule::validate(&s.value)
    {
        diags.push(Diagnostic::at(
            file,
            s.referenced,
            format!("control `{id}`: {e}"),
        ));
    }
    check_frameworks(c, crosswalks, diags);
    check_sections(c, diags);
    for d in &c.detectors {
        check_detector(c, d, diags);
    }
    if let Some(r) = &c.remediation {
        for a in &r.actions {
            check_action(c, a, diags);
        }
    }
    if c.kind.value == ControlKind::Probe {
        check_probe(c, diags);
    }
}

fn check_frameworks(c: &Control, crosswalks: &Crosswalks, diags: &mut Diagnostics) {
    let mut missing_reported = BTreeSet::new();
    for (fw, clause) in c.frameworks.refs() {
        match crosswalks.get(fw) {
            None => {
                if missing_reported.insert(fw) {
                    diags.push(
                        Diagnostic::at(
                            &c.source,
                            clause.referenced,
                            format!(
                                "control `{}` cites {fw}, but there is no crosswalk for it",
                                c.id()
                            ),
                        )
                        .with_help(format!(
                            "add {FRAMEWORKS_DIR}/{fw}.yaml listing its clauses"
                        )),
                    );
                }
            }
            Some(cw) if !cw.knows(&clause.value) => {
                let mut d = Diagnostic::at(
                    &c.source,
                    clause.referenced,
                    format!(
                        "unknown {fw} clause `{}` in control `{}`",
                        clause.value,
                        c.id()
                    ),
                );
                d = match suggest(&clause.value, cw.ids()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("the clauses are listed in {}", cw.file.display())),
                };
                diags.push(d);
            }
            Some(_) => {}
        }
    }
}

/// Each kind has its own section; the others must be absent.
fn check_sections(c: &Control, diags: &mut Diagnostics) {
    let kind = c.kind.value;
    let present = [
        (
            ControlKind::Probe,
            "probe",
            c.probe.as_ref().map(|s| s.referenced),
        ),
        (
            ControlKind::Document,
            "document",
            c.document.as_ref().map(|s| s.referenced),
        ),
        (
            ControlKind::Runtime,
            "runtime",
            c.runtime.as_ref().map(|s| s.referenced),
        ),
        (
            ControlKind::Attestation,
            "attestation",
            c.attestation.as_ref().map(|s| s.referenced),
        ),
    ];
    for (k, name, loc) in present {
        match loc {
            None if k == kind => diags.push(
                Diagnostic::at(
                    &c.source,
                    c.kind.referenced,
                    format!(
                        "control `{}` is of kind {name} but has no `{name}:` section",
                        c.id()
                    ),
                )
                .with_help(format!("add a `{name}:` section")),
            ),
            Some(loc) if k != kind => diags.push(
                Diagnostic::at(
                    &c.source,
                    loc,
                    format!(
                        "control `{}` is of kind {} but has a `{name}:` section",
                        c.id(),
                        kind.name()
                    ),
                )
                .with_help(format!("remove it, or set `kind: {name}`")),
            ),
            _ => {}
        }
    }
    let needs_detectors = matches!(kind, ControlKind::Probe | ControlKind::Runtime);
    if needs_detectors && c.detectors.is_empty() {
        diags.push(
            Diagnostic::at(
                &c.source,
                c.id.referenced,
                format!("control `{}` has no detectors", c.id()),
            )
            .with_help("add `detectors:` with at least one entry, e.g. `- type: refusal`"),
        );
    }
    if !needs_detectors && let Some(d) = c.detectors.first() {
        diags.push(
            Diagnostic::at(
                &c.source,
                d.referenced,
                format!(
                    "control `{}` is of kind {}, which does not use detectors",
                    c.id(),
                    kind.name()
                ),
            )
            .with_help(
                "remove `detectors:`; document and attestation controls have their own checks",
            ),
        );
    }
    if let Some(rt) = &c.runtime
        && !(0.0..=1.0).contains(&rt.value.max_rate)
    {
        diags.push(Diagnostic::at(
            &c.source,
            rt.referenced,
            format!(
                "control `{}`: runtime.max_rate is {}, outside 0.0 to 1.0",
                c.id(),
                rt.value.max_rate
            ),
        ));
    }
    if let Some(rt) = &c.runtime {
        let have: Vec<&str> = c.detectors.iter().map(|d| d.value.name()).collect();
        for name in &rt.value.zero_tolerance {
            if !have.contains(&name.as_str()) {
                let mut d = Diagnostic::at(
                    &c.source,
                    rt.referenced,
                    format!(
                        "control `{}`: runtime.zero_tolerance names `{name}`, which is not one of its detectors ({})",
                        c.id(),
                        have.join(", ")
                    ),
                );
                if let Some(s) = suggest(name, have.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                diags.push(d);
            }
        }
    }
    if let Some(rt) = &c.runtime
        && let Some(i) = &rt.value.integrity
    {
        let at = |msg: &str, help: &str| {
            Diagnostic::at(
                &c.source,
                rt.referenced,
                format!("control `{}`: {msg}", c.id()),
            )
            .with_help(help.to_string())
        };
        if i.required.is_empty() && i.max_gap.is_none() && i.retention.is_none() {
            diags.push(at(
                "runtime.integrity checks nothing",
                "set `required`, `max_gap` or `retention`, or remove `integrity`",
            ));
        }
        if i.max_gap.is_some_and(|g| g.is_zero()) || i.retention.is_some_and(|r| r.is_zero()) {
            diags.push(at(
                "runtime.integrity durations must be longer than zero",
                "write e.g. `max_gap: 6h` or `retention: 183d`",
            ));
        }
    }
    if let Some(doc) = &c.document {
        if doc.value.files.is_empty() {
            diags.push(
                Diagnostic::at(
                    &c.source,
                    doc.referenced,
                    format!("control `{}`: document.files is empty", c.id()),
                )
                .with_help("name the files to check, e.g. `files: [model-card.md]`"),
            );
        }
        for con in &doc.value.constraints {
            if con.min.is_none()
                && con.max.is_none()
                && con.equals.is_none()
                && con.contains_all.is_empty()
                && con.max_age.is_none()
            {
                diags.push(
                    Diagnostic::at(
                        &c.source,
                        doc.referenced,
                        format!(
                            "control `{}`: the constraint on `{}` checks nothing",
                            c.id(),
                            con.field
                        ),
                    )
                    .with_help("give it `min`, `max`, `equals`, `contains_all` or `max_age`"),
                );
            }
        }
    }
}

fn check_detector(c: &Control, d: &Spanned<DetectorSpec>, diags: &mut Diagnostics) {
    let file = c.source.as_path();
    let at = |msg: String| Diagnostic::at(file, d.referenced, msg);
    let regexes = |patterns: &[String], ci: bool, diags: &mut Diagnostics| {
        for p in patterns {
            if let Err(e) = compile_regex(p, ci) {
                diags.push(Diagnostic::at(
                    file,
                    d.referenced,
                    format!("invalid regex `{p}`: {e}"),
                ));
            }
        }
    };
    let share = |name: &str, v: f64, diags: &mut Diagnostics| {
        if !(0.0..=1.0).contains(&v) {
            diags.push(Diagnostic::at(
                file,
                d.referenced,
                format!("{name} is {v}, outside 0.0 to 1.0"),
            ));
        }
    };
    match &d.value {
        DetectorSpec::Regex {
            patterns,
            case_insensitive,
            ..
        } => {
            if patterns.is_empty() {
                diags.push(
                    at("regex detector has no `patterns`".into())
                        .with_help("add `patterns:` with at least one regular expression"),
                );
            }
            regexes(patterns, *case_insensitive, diags);
        }
        DetectorSpec::Disclosure { patterns } => regexes(patterns, true, diags),
        DetectorSpec::Contains { values, .. } if values.is_empty() => {
            diags.push(
                at("contains detector has no `values`".into())
                    .with_help("add `values:` with at least one string"),
            );
        }
        DetectorSpec::CanaryLeak {}
            if c.probe.as_ref().is_none_or(|p| p.value.canaries.is_empty()) =>
        {
            diags.push(
                at("canary_leak detector, but no canaries".into())
                    .with_help("declare `probe.canaries: [name]` and use `{{canary.name}}`"),
            );
        }
        DetectorSpec::Length {
            min_chars: None,
            max_chars: None,
        } => {
            diags.push(
                at("length detector without `min_chars` or `max_chars`".into())
                    .with_help("add at least one bound"),
            );
        }
        DetectorSpec::Similarity {
            min,
            max,
            reference,
        } => {
            if min.is_none() && max.is_none() {
                diags.push(
                    at("similarity detector without `min` or `max`".into())
                        .with_help("add e.g. `min: 0.8`"),
                );
            }
            if reference.trim().is_empty() {
                diags.push(at("similarity detector with an empty `reference`".into()));
            }
            for v in min.iter().chain(max.iter()) {
                share("similarity bound", *v, diags);
            }
        }
        DetectorSpec::PromptLeak { max_overlap } => share("max_overlap", *max_overlap, diags),
        DetectorSpec::Judge { rubric, pass_score } => {
            if rubric.trim().is_empty() {
                diags.push(
                    at("judge detector with an empty `rubric`".into())
                        .with_help("say what a passing answer does"),
                );
            }
            share("pass_score", *pass_score, diags);
        }
        DetectorSpec::Consistency {
            attribute,
            max_disagreement,
            max_refusal_gap,
        } => {
            share("max_disagreement", *max_disagreement, diags);
            if let Some(gap) = max_refusal_gap {
                share("max_refusal_gap", *gap, diags);
            }
            let values = c
                .probe
                .as_ref()
                .and_then(|p| p.value.variables.get(attribute));
            if values.is_none_or(|v| v.len() < 2) {
                diags.push(
                    at(format!("consistency detector on `{attribute}`, which is not a probe variable with two or more values"))
                        .with_help(format!("declare `probe.variables.{attribute}: [value-a, value-b]` and use `{{{{{attribute}}}}}` in the prompts")),
                );
            }
        }
        DetectorSpec::ToolCalls {
            allow,
            require_confirmation,
        } if allow.is_empty() && require_confirmation.is_empty() => {
            diags.push(at(
                "tool_calls detector without `allow` or `require_confirmation`".into(),
            ));
        }
        _ => {}
    }
}

fn check_action(c: &Control, a: &Spanned<ActionSpec>, diags: &mut Diagnostics) {
    let at = |msg: String| Diagnostic::at(&c.source, a.referenced, msg);
    match &a.value {
        ActionSpec::Patch { set, append, file } if set.is_empty() && append.is_none() => {
            diags.push(
                at(format!("patch of `{file}` changes nothing"))
                    .with_help("give it `set:` keys or `append:` text"),
            );
        }
        ActionSpec::Command { argv, .. } if argv.is_empty() => {
            diags.push(at("command action with an empty `argv`".into()));
        }
        ActionSpec::Webhook { url } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                diags.push(at(format!(
                    "webhook URL `{url}` is not http:// or https://"
                )));
            }
            let lower = url.to_lowercase();
            let after_scheme = lower.split_once("://").map(|(_, r)| r).unwrap_or("");
            let authority = after_scheme.split('/').next().unwrap_or("");
            if authority.contains('@')
                || ["token=", "key=", "secret=", "password=", "sig="]
                    .iter()
                    .any(|k| lower.contains(k))
            {
                diags.push(
                    at("the webhook URL carries a credential inline".into())
                        .with_help("keep secrets out of policy files; configure the webhook's credential in the daemon's environment"),
                );
            }
        }
        _ => {}
    }
}

fn check_probe(c: &Control, diags: &mut Diagnostics) {
    let Some(p) = &c.probe else { return };
    let (file, id) = (c.source.as_path(), c.id());
    let at = |msg: String| Diagnostic::at(file, p.referenced, msg);
    let p = &p.value;
    if p.prompts.is_empty() && p.conversations.is_empty() && p.zero_tolerance.is_empty() {
        diags.push(
            at(format!("control `{id}`: the probe has no prompts"))
                .with_help("add `prompts:` with at least one prompt"),
        );
    }
    if p.repeats == 0 {
        diags.push(at(format!(
            "control `{id}`: probe.repeats must be at least 1"
        )));
    }
    if let Some(g) = &p.generate
        && !(1..=MAX_GENERATED).contains(&g.value.count)
    {
        diags.push(
            Diagnostic::at(
                file,
                g.referenced,
                format!(
                    "control `{id}`: probe.generate.count is {}, it must be 1 to {MAX_GENERATED}",
                    g.value.count
                ),
            )
            .with_help(format!("set `count:` between 1 and {MAX_GENERATED}")),
        );
    }
    for (i, conv) in p.conversations.iter().enumerate() {
        if conv
            .last()
            .is_none_or(|t| t.role != crate::control::TurnRole::User)
        {
            diags.push(at(format!(
                "control `{id}`: conversation {} must end with a user turn",
                i + 1
            )));
        }
    }
    for (name, values) in &p.variables {
        if values.is_empty() {
            diags.push(at(format!(
                "control `{id}`: variable `{name}` has no values"
            )));
        }
    }
    let canaries: BTreeSet<&str> = p.canaries.iter().map(|s| s.value.as_str()).collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let probe_loc = c.probe.as_ref().map(|p| p.referenced);
    let texts = p
        .system_prompt
        .iter()
        .chain(p.prompts.iter())
        .chain(p.zero_tolerance.iter())
        .map(|s| (s.value.as_str(), Some(s.referenced)))
        .chain(
            p.conversations
                .iter()
                .flatten()
                .map(|t| (t.content.as_str(), None)),
        );
    for (text, loc) in texts {
        let at =
            |msg: String| Diagnostic::at(file, loc.or(probe_loc).unwrap_or(c.id.referenced), msg);
        match template::placeholders(text) {
            Err(e) => diags.push(at(format!("control `{id}`: {e}"))),
            Ok(names) => {
                for n in names {
                    if let Some(canary) = n.strip_prefix("canary.") {
                        if !canaries.contains(canary) {
                            diags.push(
                                at(format!("control `{id}` uses `{{{{{n}}}}}` but declares no canary `{canary}`"))
                                    .with_help(format!("add `{canary}` to `probe.canaries`")),
                            );
                        }
                        used.insert(canary.to_string());
                    } else if n != "target.system_prompt" && !p.variables.contains_key(n) {
                        diags.push(
                            at(format!("control `{id}` uses `{{{{{n}}}}}`, which is not a declared variable"))
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

/// Waivers and attestations must name known controls.
fn check_records(set: &PolicySet, diags: &mut Diagnostics) {
    let ids: BTreeSet<&str> = set.controls.iter().map(|c| c.id()).collect();
    let check = |file: &Path, control: &Spanned<String>, what: &str, diags: &mut Diagnostics| {
        if !ids.contains(control.value.as_str()) {
            let mut d = Diagnostic::at(
                file,
                control.referenced,
                format!("{what} for unknown control `{}`", control.value),
            );
            if let Some(s) = suggest(&control.value, ids.iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            diags.push(d);
        }
    };
    for w in &set.waivers {
        check(&w.file, &w.control, "waiver", diags);
        if w.justification.trim().is_empty() || w.approver.trim().is_empty() {
            diags.push(Diagnostic::at(
                &w.file,
                w.control.referenced,
                "a waiver needs a justification and an approver",
            ));
        }
    }
    for a in &set.attestations {
        check(&a.file, &a.control, "attestation", diags);
        for e in &a.evidence {
            if e.sha256.len() != 64 || !e.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                diags.push(
                    Diagnostic::at(
                        &a.file,
                        a.control.referenced,
                        format!(
                            "evidence {}: sha256 must be 64 hex digits",
                            e.path.display()
                        ),
                    )
                    .with_help(format!("compute it with `sha256sum {}`", e.path.display())),
                );
            }
        }
        if let Some(c) = set.control(&a.control.value)
            && c.kind.value != ControlKind::Attestation
        {
            diags.push(Diagnostic::at(
                &a.file,
                a.control.referenced,
                format!(
                    "control `{}` is of kind {}, not attestation",
                    c.id(),
                    c.kind.value.name()
                ),
            ));
        }
    }
}

fn check_target(t: &TargetSpec, diags: &mut Diagnostics) {
    let file = t.source.as_path();
    let name = t.name();
    let at = |msg: String| Diagnostic::at(file, t.name.referenced, msg);
    if name.trim().is_empty() {
        diags.push(at("the target name is empty".into()));
    }
    if !t.pass_env.is_empty() && t.kind != TargetKind::Command {
        diags.push(at(format!(
            "target `{name}`: pass_env is for command targets, not {}",
            t.kind.name()
        )));
    }
    for var in &t.pass_env {
        let valid = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            diags.push(
                at(format!(
                    "target `{name}`: pass_env entry `{var}` is not a variable name"
                ))
                .with_help("list names only, e.g. `pass_env: [MODEL_DIR]`; values come from the daemon's environment"),
            );
        }
    }
    if t.concurrency == 0 {
        diags.push(at(format!(
            "target `{name}`: concurrency must be at least 1"
        )));
    }
    if t.rpm == Some(0) || t.tpm == Some(0) {
        diags.push(at(format!(
            "target `{name}`: rpm and tpm must be at least 1 (omit them for no limit)"
        )));
    }
    if t.system_prompt.is_some() && t.system_prompt_file.is_some() {
        diags.push(
            at(format!(
                "target `{name}` sets both system_prompt and system_prompt_file"
            ))
            .with_help("keep one of them"),
        );
    }
    for (what, path) in [
        ("system_prompt_file", &t.system_prompt_file),
        ("ca_file", &t.ca_file),
    ] {
        if let Some(p) = path
            && !t.resolve(p).is_file()
        {
            diags.push(at(format!(
                "target `{name}`: {what} {} does not exist",
                t.resolve(p).display()
            )));
        }
    }
    let need_endpoint = matches!(
        t.kind,
        TargetKind::Openai | TargetKind::Anthropic | TargetKind::Http
    );
    match (&t.endpoint, need_endpoint) {
        (None, true) => diags.push(
            at(format!(
                "target `{name}` ({}) has no endpoint",
                t.kind.name()
            ))
            .with_help("add e.g. `endpoint: http://127.0.0.1:8080`"),
        ),
        (Some(e), true) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            diags.push(at(format!(
                "target `{name}`: endpoint `{e}` is not an http:// or https:// URL"
            )));
        }
        _ => {}
    }
    if matches!(t.kind, TargetKind::Openai | TargetKind::Anthropic) && t.model.is_none() {
        diags.push(
            at(format!("target `{name}` ({}) has no model", t.kind.name()))
                .with_help("add `model:` with the name the server knows the model by"),
        );
    }
    match t.kind {
        TargetKind::Http => {
            if t.request_template.is_none() || t.response_pointer.is_none() {
                diags.push(
                    at(format!("target `{name}` (http) needs `request_template` and `response_pointer`"))
                        .with_help("e.g. `request_template: {input: \"{{prompt}}\"}` and `response_pointer: /output`"),
                );
            }
            if let Some(p) = &t.response_pointer
                && !p.is_empty()
                && !p.starts_with('/')
            {
                diags.push(at(format!(
                    "target `{name}`: response_pointer `{p}` must start with `/` (a JSON pointer)"
                )));
            }
        }
        TargetKind::Command if t.command.is_empty() => {
            diags.push(
                at(format!("target `{name}` (command) has no `command`"))
                    .with_help("e.g. `command: [/usr/local/bin/my-model, --quiet]`"),
            );
        }
        TargetKind::Transcripts | TargetKind::Documents => match &t.path {
            None => diags.push(at(format!(
                "target `{name}` ({}) has no `path`",
                t.kind.name()
            ))),
            Some(p) if !t.resolve(p).exists() => {
                diags.push(at(format!(
                    "target `{name}`: path {} does not exist",
                    t.resolve(p).display()
                )));
            }
            _ => {}
        },
        _ => {}
    }
}
