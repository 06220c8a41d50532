//! JSON validity and a practical subset of JSON Schema: `type`, `enum`, `const`,
//! `required`, `properties`, `additionalProperties: false`, `items`, `minItems`,
//! `maxItems`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`. Unknown
//! keywords are ignored (as JSON Schema does), never treated as passing checks they
//! would have failed.

use serde_json::Value;

/// The first violation, as a path and a reason.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, "$")
}

fn check(v: &Value, s: &Value, path: &str) -> Result<(), String> {
    let Some(s) = s.as_object() else {
        return Ok(());
    };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
            return Err(format!("{path} should be {}", types.join(" or ")));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return Err(format!("{path} is not one of the allowed values"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{path} should be {c}"));
    }
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(req)) = s.get("required") {
                for r in req.iter().filter_map(Value::as_str) {
                    if !o.contains_key(r) {
                        return Err(format!("{path} lacks required key `{r}`"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, child) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => check(child, sub, &format!("{path}.{k}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{path} has unexpected key `{k}`"));
                    }
                    None => {}
                }
            }
        }
        Value::Array(a) => {
            let n = a.len() as u64;
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n < m)
            {
                return Err(format!("{path} has too few items"));
            }
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
            {
                return Err(format!("{path} has too many items"));
            }
            if let Some(items) = s.get("items") {
                for (i, item) in a.iter().enumerate() {
                    check(item, items, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::String(st) => {
            let n = st.chars().count() as u64;
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n < m)
            {
                return Err(format!("{path} is too short"));
            }
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
            {
                return Err(format!("{path} is too long"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                let re = aura_policy::detector::compile_regex(p, false)
                    .map_err(|e| format!("schema pattern: {e}"))?;
                if !re.is_match(st) {
                    return Err(format!("{path} does not match /{p}/"));
                }
            }
        }
        Value::Number(num) => {
            let x = num.as_f64().unwrap_or(f64::NAN);
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x < m)
            {
                return Err(format!("{path} is below the minimum"));
            }
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m)
            {
                return Err(format!("{path} is above the maximum"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// The JSON document in a response: the whole text, or a fenced ```json block in it.
pub fn extract(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Ok(v);
    }
    if let Some(start) = t.find("```") {
        let after = &t[start + 3..];
        let after = after.strip_prefix("json").unwrap_or(after);
        if let Some(end) = after.find("```") {
            return serde_json::from_str(after[..end].trim()).map_err(|e| e.to_string());
        }
    }
    serde_json::from_str::<Value>(t).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_of_json_schema() {
        let schema = json!({"type": "object", "required": ["score"], "additionalProperties": false,
            "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}, "reason": {"type": "string", "maxLength": 5}}});
        assert!(validate(&json!({"score": 0.5}), &schema).is_ok());
        assert!(
            validate(&json!({"score": 2}), &schema)
                .unwrap_err()
                .contains("maximum")
        );
        assert!(
            validate(&json!({"reason": "x"}), &schema)
                .unwrap_err()
                .contains("score")
        );
        assert!(
            validate(&json!({"score": 1, "extra": 1}), &schema)
                .unwrap_err()
                .contains("unexpected")
        );
        assert!(validate(&json!({"score": 1, "reason": "too long"}), &schema).is_err());
        assert_eq!(
            extract("Here:\n```json\n{\"a\": 1}\n```").unwrap(),
            json!({"a": 1})
        );
        assert!(extract("not json").is_err());
    }
}
