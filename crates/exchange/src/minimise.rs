//! Minimisation and masking: of a provider's answer (a JSON object of fields), the consumer
//! sees only the fields allowed, and a personal or sensitive field masked by its style unless
//! the grant allows its full value.

use crate::catalog::{MaskStyle, Service};
use serde_json::{Map, Value};

/// Masks one value by style. Strings keep their masked form; anything else is redacted.
pub fn mask_value(style: MaskStyle, v: &Value) -> Value {
    let Value::String(s) = v else {
        return Value::String("***".into());
    };
    Value::String(match style {
        MaskStyle::IdNumber => resident::mask_id_number(s),
        MaskStyle::Name => resident::mask_name(s),
        MaskStyle::Phone => resident::mask_phone(s),
        MaskStyle::Address => resident::mask_address(s),
        MaskStyle::Redact => "***".into(),
    })
}

/// What the consumer receives: the provider's `answer` cut to `fields` (in that order; a field
/// the provider did not send is left out), each masked by its sensitivity unless listed in
/// `full_fields`. Returns the object and the names of the fields that were masked.
pub fn minimise(
    service: &Service,
    answer: &Map<String, Value>,
    fields: &[String],
    full_fields: &[String],
) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut masked = Vec::new();
    for name in fields {
        let (Some(spec), Some(v)) = (service.field(name), answer.get(name)) else {
            continue;
        };
        if spec.sensitivity.masked_by_default() && !full_fields.contains(name) && !v.is_null() {
            out.insert(name.clone(), mask_value(spec.mask, v));
            masked.push(name.clone());
        } else {
            out.insert(name.clone(), v.clone());
        }
    }
    (out, masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::tests::service;
    use serde_json::json;

    fn names(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_granted_fields_pass_and_personal_ones_are_masked() {
        let s = service(false);
        let answer = json!({
            "id_number": "410105199001011234",
            "name": "张三明",
            "count": 2,
            "points": 6,
            "secret_note": "not in the catalog",
        });
        let answer = answer.as_object().unwrap();
        let (out, masked) = minimise(&s, answer, &names(&["id_number", "name", "count"]), &[]);
        assert_eq!(
            Value::Object(out),
            json!({"id_number": "410***********1234", "name": "张*明", "count": 2})
        );
        assert_eq!(masked, names(&["id_number", "name"]));
        // The grant allows the full ID number.
        let (out, masked) = minimise(
            &s,
            answer,
            &names(&["id_number", "points"]),
            &names(&["id_number"]),
        );
        assert_eq!(
            Value::Object(out),
            json!({"id_number": "410105199001011234", "points": 6})
        );
        assert!(masked.is_empty());
        // A field outside the catalog never passes, even when asked for.
        let (out, _) = minimise(&s, answer, &names(&["secret_note"]), &[]);
        assert!(out.is_empty());
    }

    #[test]
    fn non_strings_are_redacted_when_masked() {
        assert_eq!(mask_value(MaskStyle::Redact, &json!(12345)), json!("***"));
        assert_eq!(mask_value(MaskStyle::IdNumber, &json!(1)), json!("***"));
        assert_eq!(
            mask_value(MaskStyle::Phone, &json!("13812345678")),
            json!("138****5678")
        );
    }
}
