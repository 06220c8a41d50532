//! `aura kb search`.

use std::path::Path;
use std::process::ExitCode;

use aura_proto::wire::{KnowledgeQuery, Reply, RequestBody};

use super::{connect, fail, print_json};
use crate::client::ClientError;
use crate::exit;

pub async fn search(socket: &Path, query: KnowledgeQuery, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.request(RequestBody::SearchKnowledge(query)).await {
        Ok(Reply::Knowledge(hits)) if json => print_json(&hits),
        Ok(Reply::Knowledge(hits)) => {
            if hits.is_empty() {
                println!("no matching knowledge");
            }
            for h in hits {
                println!(
                    "#{:<6} {:.2}  {:<8} conf {:.2}  [{}]  {}",
                    h.id,
                    h.score,
                    h.kind,
                    h.confidence,
                    h.tags.join(","),
                    h.text.chars().take(100).collect::<String>()
                );
            }
            exit::code(exit::OK)
        }
        Ok(other) => fail(&ClientError::Protocol(format!(
            "unexpected reply {other:?}"
        ))),
        Err(e) => fail(&e),
    }
}
