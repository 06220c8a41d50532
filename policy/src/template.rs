//! `{{name}}` placeholders in prompts and system prompts.
//!
//! Names: a variable (`{{topic}}`), a canary (`{{canary.NAME}}`), or the target's own
//! system prompt (`{{target.system_prompt}}`). No logic, no escapes beyond `{{{{` for a
//! literal `{{`: templates are written by policy authors and must stay readable.

/// The placeholder names in `text`, in order, with repeats.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    walk(text, |piece| {
        if let Piece::Name(n) = piece {
            out.push(n);
        }
    })?;
    Ok(out)
}

/// Replaces every placeholder with `lookup(name)`; an unknown name is an error naming it.
pub fn render(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut missing = None;
    walk(text, |piece| match piece {
        Piece::Text(t) => out.push_str(t),
        Piece::Name(n) => match lookup(n) {
            Some(v) => out.push_str(&v),
            None => {
                missing.get_or_insert_with(|| n.to_string());
            }
        },
    })?;
    match missing {
        Some(n) => Err(format!("unknown placeholder `{{{{{n}}}}}`")),
        None => Ok(out),
    }
}

enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

fn walk<'a>(text: &'a str, mut f: impl FnMut(Piece<'a>)) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if rest[start..].starts_with("{{{{") {
            f(Piece::Text(&rest[..start + 2]));
            rest = &rest[start + 4..];
            continue;
        }
        f(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed by `}}`".to_string())?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!(
                "`{{{{{}}}}}` is not a placeholder name (letters, digits, `_`, `-`, `.`)",
                &after[..end]
            ));
        }
        f(Piece::Name(name));
        rest = &after[end + 2..];
    }
    f(Piece::Text(rest));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_reports_unknown_names() {
        let r = render("a {{x}} b {{ canary.c }}", |n| Some(n.to_uppercase())).unwrap();
        assert_eq!(r, "a X b CANARY.C");
        let e = render("{{nope}}", |_| None).unwrap_err();
        assert!(e.contains("nope"));
        assert_eq!(render("{{{{x", |_| None).unwrap(), "{{x");
        assert!(placeholders("{{ unclosed").is_err());
        assert!(placeholders("{{a b}}").is_err());
    }
}
