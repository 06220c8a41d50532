//! `aura policy validate` and `aura policy coverage`: work without a daemon.

use std::path::Path;
use std::process::ExitCode;

use aura_policy::coverage::coverage as compute;

use crate::exit;

pub fn validate(path: Option<&Path>, targets: Option<&Path>) -> ExitCode {
    let path = path.unwrap_or(Path::new("policies"));
    if !path.exists() {
        eprintln!("aura: {} does not exist", path.display());
        return exit::code(exit::USAGE);
    }
    let set = match aura_policy::load_policies(path) {
        Ok(set) => set,
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{} problem(s) found", diags.len());
            return exit::code(exit::USAGE);
        }
    };
    if let Some(tdir) = targets {
        let specs = match aura_policy::load_targets(tdir) {
            Ok(t) => t,
            Err(diags) => {
                eprintln!("{diags}");
                eprintln!("{} problem(s) found", diags.len());
                return exit::code(exit::USAGE);
            }
        };
        let cross = set.check_against(&specs);
        if !cross.is_empty() {
            eprintln!("{cross}");
            eprintln!("{} problem(s) found", cross.len());
            return exit::code(exit::USAGE);
        }
    }
    println!(
        "ok: {} control(s), {} waiver(s), {} attestation(s), {} framework crosswalk(s) under {}",
        set.controls.len(),
        set.waivers.len(),
        set.attestations.len(),
        set.crosswalks.0.len(),
        path.display()
    );
    exit::code(exit::OK)
}

pub fn coverage(path: Option<&Path>, framework: Option<&str>, json: bool) -> ExitCode {
    let path = path.unwrap_or(Path::new("policies"));
    let set = match aura_policy::load_policies(path) {
        Ok(s) => s,
        Err(diags) => {
            eprintln!("{diags}");
            return exit::code(exit::USAGE);
        }
    };
    if let Some(f) = framework
        && set.crosswalks.get(f).is_none()
    {
        let known: Vec<&str> = set.crosswalks.0.keys().map(String::as_str).collect();
        eprintln!(
            "aura: no crosswalk for `{f}`; known frameworks: {}",
            known.join(", ")
        );
        return exit::code(exit::USAGE);
    }
    let cov = compute(&set, framework);
    if json {
        return super::print_json(&cov);
    }
    for fw in &cov {
        let covered = fw.clauses.iter().filter(|c| !c.controls.is_empty()).count();
        println!(
            "{} — {}: {covered} of {} clauses covered",
            fw.framework,
            fw.title,
            fw.clauses.len()
        );
        for c in &fw.clauses {
            let by = if c.controls.is_empty() {
                "NOT COVERED".to_string()
            } else {
                c.controls.join(", ")
            };
            println!("  {:<16} {:<48} {by}", c.id, clip(&c.title, 48));
        }
        let gaps: Vec<&str> = fw.uncovered().map(|c| c.id.as_str()).collect();
        if !gaps.is_empty() {
            println!("  uncovered: {}", gaps.join(", "));
        }
        println!();
    }
    exit::code(exit::OK)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
