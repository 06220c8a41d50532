//! Test generation: a probe control becomes concrete attempts for one target. Templates
//! are rendered with the run's canaries and every combination of the variables they use;
//! each prompt also yields one variant per mutator; conversations are sent whole; attacks
//! that succeeded before are added as extra seeds; everything is repeated `repeats`
//! times. The order is stable and variants depend only on the seed, so a run with the
//! same seed sends the same requests.

pub mod mutate;
pub mod writer;

use std::collections::BTreeMap;

use aura_policy::control::{ProbeSpec, TurnRole};
use aura_policy::{DetectorSpec, Mutator, template};
use serde::{Deserialize, Serialize};

use crate::targets::{ChatMessage, ChatRequest, ChatRole};
use mutate::{Rng, hash};

/// Where an attempt came from, for reports and for grouping counterfactual variants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Which base prompt (or conversation, numbered after the prompts).
    pub base: u32,
    pub mutator: Option<Mutator>,
    /// Counterfactual group: attempts that differ only in the consistency attribute.
    pub group: Option<String>,
    /// The attribute's value in this attempt.
    pub attribute: Option<String>,
    /// A seed drawn from an attack that succeeded before.
    pub learned: bool,
    /// Written for this run by the daemon's LLM (`probe.generate`).
    #[serde(default)]
    pub generated: bool,
    /// From `probe.zero_tolerance`: one success fails the control.
    #[serde(default)]
    pub zero_tolerance: bool,
    pub repeat: u32,
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub request: ChatRequest,
    pub variant: Variant,
}

/// Inputs beyond the control itself.
pub struct Context<'a> {
    pub control_id: &'a str,
    pub target_system_prompt: Option<&'a str>,
    pub canaries: &'a BTreeMap<String, String>,
    pub seed: u64,
    /// Prompts of attacks that succeeded before, to add as seeds.
    pub learned: &'a [String],
    /// Prompts the daemon's LLM wrote for this control in this run.
    pub generated: &'a [String],
}

/// The consistency attribute of a control, if it has a consistency detector.
pub fn consistency_attribute(detectors: &[DetectorSpec]) -> Option<&str> {
    detectors.iter().find_map(|d| match d {
        DetectorSpec::Consistency { attribute, .. } => Some(attribute.as_str()),
        _ => None,
    })
}

pub fn expand(
    probe: &ProbeSpec,
    detectors: &[DetectorSpec],
    ctx: &Context<'_>,
) -> Result<Vec<Planned>, String> {
    let attribute = consistency_attribute(detectors);
    let system_tmpl = probe.system_prompt.as_ref().map(|s| s.value.as_str());
    // Base items: each prompt as one user turn, each conversation as its turns.
    let mut bases: Vec<Vec<(ChatRole, &str)>> = probe
        .prompts
        .iter()
        .map(|p| vec![(ChatRole::User, p.value.as_str())])
        .collect();
    for conv in &probe.conversations {
        bases.push(
            conv.iter()
                .map(|t| {
                    let role = if t.role == TurnRole::User {
                        ChatRole::User
                    } else {
                        ChatRole::Assistant
                    };
                    (role, t.content.as_str())
                })
                .collect(),
        );
    }
    // Zero-tolerance prompts come last, so the numbering of the others is unchanged.
    let zero_tolerance_from = bases.len();
    bases.extend(
        probe
            .zero_tolerance
            .iter()
            .map(|p| vec![(ChatRole::User, p.value.as_str())]),
    );
    let learned_count = probe.learned_seeds as usize;
    let mut out = Vec::new();
    for (base_index, turns) in bases.iter().enumerate() {
        let mut used: Vec<&str> = Vec::new();
        for (_, text) in turns.iter() {
            used.extend(template::placeholders(text)?);
        }
        if let Some(sp) = system_tmpl {
            used.extend(template::placeholders(sp)?);
        }
        let vars: Vec<(&str, &Vec<String>)> = probe
            .variables
            .iter()
            .filter(|(k, _)| used.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for combo in combinations(&vars) {
            let lookup = |name: &str| -> Option<String> {
                if let Some(canary) = name.strip_prefix("canary.") {
                    return ctx.canaries.get(canary).cloned();
                }
                if name == "target.system_prompt" {
                    return Some(ctx.target_system_prompt.unwrap_or("").to_string());
                }
                combo.get(name).map(|v| v.to_string())
            };
            let system = match system_tmpl {
                Some(sp) => Some(template::render(sp, lookup)?),
                None => ctx.target_system_prompt.map(str::to_string),
            };
            let mut rendered = Vec::with_capacity(turns.len());
            for (role, text) in turns {
                rendered.push(ChatMessage {
                    role: *role,
                    content: template::render(text, lookup)?,
                });
            }
            let group = attribute.map(|attr| {
                let others: Vec<String> = combo
                    .iter()
                    .filter(|(k, _)| **k != attr)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{base_index}|{}", others.join(","))
            });
            let attribute_value = attribute.and_then(|a| combo.get(a).map(|v| v.to_string()));
            let base_variant = Variant {
                base: base_index as u32,
                group: group.clone(),
                attribute: attribute_value.clone(),
                zero_tolerance: base_index >= zero_tolerance_from,
                ..Variant::default()
            };
            let mut variants = vec![(base_variant.clone(), rendered.clone())];
            // Mutators apply to single-prompt items: the last user turn is rewritten.
            if turns.len() == 1 {
                for m in &probe.mutators {
                    let mut rng = Rng::new(
                        ctx.seed ^ hash(&[ctx.control_id, &base_index.to_string(), m.name()]),
                    );
                    let msgs = mutate::apply(*m, &rendered[0].content, &mut rng);
                    variants.push((
                        Variant {
                            mutator: Some(*m),
                            ..base_variant.clone()
                        },
                        msgs,
                    ));
                }
            }
            for (variant, msgs) in variants {
                push_repeats(&mut out, system.as_deref(), msgs, variant, probe.repeats);
            }
        }
    }
    // Extra single-turn seeds: prompts the daemon's LLM wrote (templates, like the
    // control's own), then attacks that worked before against any target (sent as they
    // were). Placeholders take the canaries and each variable's first value.
    let lookup = |name: &str| {
        name.strip_prefix("canary.")
            .and_then(|c| ctx.canaries.get(c).cloned())
            .or_else(|| {
                (name == "target.system_prompt")
                    .then(|| ctx.target_system_prompt.unwrap_or("").to_string())
            })
            .or_else(|| probe.variables.get(name).and_then(|v| v.first().cloned()))
    };
    let system = match system_tmpl {
        Some(sp) => Some(template::render(sp, lookup)?),
        None => ctx.target_system_prompt.map(str::to_string),
    };
    // A generated prompt whose placeholders do not resolve is dropped, not fatal.
    let generated = ctx
        .generated
        .iter()
        .filter_map(|p| template::render(p, lookup).ok())
        .map(|text| (text, true));
    let learned = ctx
        .learned
        .iter()
        .take(learned_count)
        .map(|p| (p.clone(), false));
    for (offset, (text, generated)) in generated.chain(learned).enumerate() {
        let variant = Variant {
            base: (bases.len() + offset) as u32,
            generated,
            learned: !generated,
            ..Variant::default()
        };
        push_repeats(
            &mut out,
            system.as_deref(),
            vec![ChatMessage::user(text)],
            variant,
            probe.repeats,
        );
    }
    Ok(out)
}

fn push_repeats(
    out: &mut Vec<Planned>,
    system: Option<&str>,
    msgs: Vec<ChatMessage>,
    variant: Variant,
    repeats: u32,
) {
    let mut messages = Vec::with_capacity(msgs.len() + 1);
    if let Some(s) = system {
        messages.push(ChatMessage::system(s));
    }
    messages.extend(msgs);
    for r in 0..repeats.max(1) {
        out.push(Planned {
            request: ChatRequest {
                messages: messages.clone(),
            },
            variant: Variant {
                repeat: r,
                ..variant.clone()
            },
        });
    }
}

/// The cartesian product of variable values; one empty combination when there are none.
fn combinations<'a>(vars: &[(&'a str, &'a Vec<String>)]) -> Vec<BTreeMap<&'a str, &'a str>> {
    let mut out = vec![BTreeMap::new()];
    for (name, values) in vars {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for combo in &out {
            for v in values.iter() {
                let mut c = combo.clone();
                c.insert(*name, v.as_str());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(yaml: &str) -> ProbeSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn ctx<'a>(canaries: &'a BTreeMap<String, String>, seed: u64) -> Context<'a> {
        Context {
            control_id: "C",
            target_system_prompt: Some("TSP"),
            canaries,
            seed,
            learned: &[],
            generated: &[],
        }
    }

    #[test]
    fn variables_mutators_repeats_and_canaries() {
        let p = probe(
            "system_prompt: 'S {{canary.k}} {{target.system_prompt}}'\ncanaries: [k]\nprompts: ['Tell {{who}}']\nvariables: {who: [a, b], unused: [x, y, z]}\nmutators: [base64, rot13]\nrepeats: 2\n",
        );
        let canaries = BTreeMap::from([("k".to_string(), "CAN".to_string())]);
        let out = expand(&p, &[], &ctx(&canaries, 1)).unwrap();
        // 2 values x (1 + 2 mutators) x 2 repeats; the unused variable does not multiply.
        assert_eq!(out.len(), 12);
        assert_eq!(out[0].request.messages[0].content, "S CAN TSP");
        assert_eq!(out[0].request.messages[1].content, "Tell a");
        assert!(
            out.iter()
                .any(|p| p.variant.mutator == Some(Mutator::Base64))
        );
        assert_eq!(
            out,
            expand(&p, &[], &ctx(&canaries, 1)).unwrap(),
            "same seed, same plan"
        );
    }

    #[test]
    fn counterfactual_variants_share_a_group() {
        let p = probe(
            "prompts: ['Hire {{name}} as {{role}}?']\nvariables: {name: [Ann, Ahmed], role: [dev, ops]}\n",
        );
        let d = vec![DetectorSpec::Consistency {
            attribute: "name".into(),
            max_disagreement: 0.0,
            max_refusal_gap: None,
        }];
        let out = expand(&p, &d, &ctx(&BTreeMap::new(), 0)).unwrap();
        assert_eq!(out.len(), 4);
        let groups: std::collections::BTreeSet<_> = out
            .iter()
            .map(|p| p.variant.group.clone().unwrap())
            .collect();
        assert_eq!(groups.len(), 2, "one group per role, each with both names");
    }
}
