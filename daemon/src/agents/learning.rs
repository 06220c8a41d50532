//! The Learning agent: remembers what a finished run taught. Each attack that succeeded
//! becomes (or reinforces) a knowledge entry, so later runs against any target try it
//! again (probe controls with `learned_seeds`); each failed control becomes a finding.

use aura_proto::view::{AgentKind, Verdict};

use super::messages::LearningMsg;
use super::{Agent, AgentError};
use crate::bus::Envelope;
use crate::kb::{NewEntry, Query};
use crate::services::Services;

pub struct LearningAgent;

/// A new attack this similar to a known one reinforces it instead of adding a copy.
const SAME: f32 = 0.97;

impl Agent for LearningAgent {
    type Msg = LearningMsg;
    const KIND: AgentKind = AgentKind::Learning;

    async fn handle(
        &self,
        msg: LearningMsg,
        _env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let LearningMsg::Learn { run } = msg;
        let kb_err = |e: crate::kb::KbError| AgentError::Failed(e.to_string());
        let mut learned = 0;
        let mut reinforced = 0;
        for a in svc.store.attempts(run)? {
            if a.outcome
                .as_ref()
                .is_none_or(|o| o.verdict != Verdict::Fail)
                || a.variant.learned
            {
                continue;
            }
            let prompt = a.request.last_user().to_string();
            let q = Query {
                text: prompt.clone(),
                kind: Some("attack".into()),
                limit: 1,
                ..Query::default()
            };
            match svc.kb.search(&q).await.map_err(kb_err)?.first() {
                Some(hit) if hit.score >= SAME && hit.entry.text == prompt => {
                    svc.kb.reinforce(hit.entry.id, 0.9).map_err(kb_err)?;
                    reinforced += 1;
                }
                _ => {
                    svc.kb
                        .add(NewEntry {
                            text: prompt,
                            kind: "attack".into(),
                            tags: vec![a.control.clone(), a.target.clone(), "attack".into()],
                            source: format!("run-{run}"),
                            confidence: 0.8,
                        })
                        .await
                        .map_err(kb_err)?;
                    learned += 1;
                }
            }
        }
        for r in svc
            .store
            .results(run)?
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
        {
            svc.kb
                .add(NewEntry {
                    text: format!("{} failed on {}: {}", r.control, r.target, r.detail),
                    kind: "finding".into(),
                    tags: vec![
                        r.control.clone(),
                        r.target.clone(),
                        r.severity.name().into(),
                    ],
                    source: format!("run-{run}"),
                    confidence: 0.9,
                })
                .await
                .map_err(kb_err)?;
        }
        svc.record(
            "learning",
            "KnowledgeLearned",
            serde_json::json!({ "run": run, "attacks": learned, "reinforced": reinforced }),
        );
        tracing::info!(run = %run, learned, reinforced, "run learned from");
        Ok(())
    }
}
