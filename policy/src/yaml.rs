//! Reading one YAML file into typed values, with bounded size and work, and turning
//! serde-saphyr's errors into [`Diagnostic`]s with a fix where we can give one.

use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::MAX_FILE_BYTES;
use crate::diagnostic::{Diagnostic, suggest};

/// Reads a file of one value or a list of values.
pub(crate) fn read_one_or_many<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, Diagnostic> {
    let text = read_text(path)?;
    parse_one_or_many(path, &text)
}

/// Reads a file as UTF-8 text, refusing files over [`MAX_FILE_BYTES`] without reading them.
pub(crate) fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let file = std::fs::File::open(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| Diagnostic::file(path, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path, meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file growing while we read is still bounded.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::file(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|b| **b == b'\n').count() as u64;
        let column = 1 + good.iter().rev().take_while(|b| **b != b'\n').count() as u64;
        Diagnostic::new(path, line, column, "the file is not valid UTF-8")
            .with_help("save the file as UTF-8")
    })
}

fn too_large(path: &Path, len: u64) -> Diagnostic {
    Diagnostic::file(
        path,
        format!("the file is {len} bytes; the limit is {MAX_FILE_BYTES} bytes (1 MiB)"),
    )
    .with_help("split it into several files")
}

pub(crate) fn parse_one_or_many<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<Vec<T>, Diagnostic> {
    let options = serde_saphyr::Options::default();
    let result = if root_is_sequence(text) {
        serde_saphyr::from_str_with_options::<Vec<T>>(text, options)
    } else {
        serde_saphyr::from_str_with_options::<T>(text, options).map(|v| vec![v])
    };
    result.map_err(|e| to_diagnostic(path, &e))
}

/// Whether the document's root is a list, judged by its first meaningful line.
fn root_is_sequence(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .find(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("---") && !l.starts_with('%')
        })
        .is_some_and(|l| l == "-" || l.starts_with("- ") || l.starts_with('['))
}

fn to_diagnostic(path: &Path, err: &serde_saphyr::Error) -> Diagnostic {
    let raw = err.without_snippet().to_string();
    let message = strip_location_suffix(strip_location_prefix(&raw)).to_string();
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut d = Diagnostic::new(path, line, column, message.clone());
    if let Some(help) = help_for(&message) {
        d = d.with_help(help);
    }
    d
}

/// serde-saphyr prefixes "line L column C: "; we print the place ourselves.
fn strip_location_prefix(msg: &str) -> &str {
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
    {
        let head = &rest[..idx];
        if head.split(' ').count() == 3 && head.contains("column") {
            return &rest[idx + 2..];
        }
    }
    msg
}

/// Errors re-raised from buffered content end in " at line L, column C"; same reason.
fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    }
}

/// Turns serde's "unknown variant `x`, expected one of a, b" into "did you mean `a`?".
fn help_for(message: &str) -> Option<String> {
    let (what, rest) = ["unknown variant `", "unknown field `"]
        .iter()
        .find_map(|p| message.find(p).map(|i| (*p, &message[i + p.len()..])))?;
    let end = rest.find('`')?;
    let wrong = &rest[..end];
    let list = rest.split_once("expected one of ").map(|(_, l)| l);
    let list = list.or_else(|| rest.split_once("expected ").map(|(_, l)| l))?;
    let candidates: Vec<&str> = list
        .split(", ")
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty())
        .collect();
    let noun = if what.contains("variant") {
        "value"
    } else {
        "key"
    };
    Some(match suggest(wrong, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("the {noun} must be one of: {}", candidates.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_suggests_the_closest_name() {
        let h = help_for("unknown variant `refusl`, expected one of refusal, regex");
        assert_eq!(h.as_deref(), Some("did you mean `refusal`?"));
        let h = help_for("unknown field `zzz`, expected one of `id`, `title`");
        assert_eq!(h.as_deref(), Some("the key must be one of: id, title"));
    }

    #[test]
    fn detects_list_documents() {
        assert!(root_is_sequence("# c\n\n- id: a\n"));
        assert!(!root_is_sequence("id: a\n"));
    }
}
