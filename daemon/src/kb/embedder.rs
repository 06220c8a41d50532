//! Embedders: the built-in one (no model, deterministic) and an OpenAI-compatible
//! `/v1/embeddings` endpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::embed;

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub trait Embedder: Send + Sync {
    /// A name that changes when the vectors would: stored with the index, so a changed
    /// embedder rebuilds it.
    fn id(&self) -> String;
    fn dim(&self) -> usize;
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, String>>;
}

/// Hashed character n-grams and words: needs no model, same text gives the same vector.
pub struct HashedEmbedder;

impl Embedder for HashedEmbedder {
    fn id(&self) -> String {
        format!("builtin-hashed-ngrams-{}", embed::DIM)
    }

    fn dim(&self) -> usize {
        embed::DIM
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, String>> {
        Box::pin(async move { Ok(texts.iter().map(|t| embed::hashed_ngrams(t)).collect()) })
    }
}

/// An OpenAI-compatible embeddings endpoint. A response of the wrong dimension is an
/// error naming both dimensions; nothing is stored from it.
pub struct HttpEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    dim: usize,
}

#[derive(Serialize)]
struct Req<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct Resp {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
}

impl HttpEmbedder {
    pub fn new(
        endpoint: &str,
        model: &str,
        api_key: Option<String>,
        dim: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        crate::tls::install_provider();
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/embeddings") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/embeddings")
        } else {
            format!("{base}/v1/embeddings")
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            model: model.to_string(),
            api_key,
            dim,
        })
    }
}

impl Embedder for HttpEmbedder {
    fn id(&self) -> String {
        format!("http-{}-{}", self.model, self.dim)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, String>> {
        Box::pin(async move {
            let mut b = self.client.post(&self.url).json(&Req {
                model: &self.model,
                input: texts,
            });
            if let Some(k) = &self.api_key {
                b = b.bearer_auth(k);
            }
            let resp = b
                .send()
                .await
                .map_err(|e| format!("embeddings endpoint: {e}"))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| format!("embeddings endpoint: {e}"))?;
            if !status.is_success() {
                return Err(format!("embeddings endpoint answered HTTP {status}"));
            }
            let parsed: Resp = serde_json::from_slice(&bytes)
                .map_err(|e| format!("embeddings endpoint: malformed response: {e}"))?;
            if parsed.data.len() != texts.len() {
                return Err(format!(
                    "embeddings endpoint returned {} vectors for {} texts",
                    parsed.data.len(),
                    texts.len()
                ));
            }
            let mut out = Vec::with_capacity(texts.len());
            for item in parsed.data {
                if item.embedding.len() != self.dim {
                    return Err(format!(
                        "embeddings endpoint returned vectors of dimension {}; the knowledge base is configured for {}",
                        item.embedding.len(),
                        self.dim
                    ));
                }
                out.push(item.embedding);
            }
            Ok(out)
        })
    }
}
