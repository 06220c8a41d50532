//! Text embeddings. The built-in embedder needs no model: hashed character n-grams and
//! words, signed into a fixed number of buckets and normalised, so cosine similarity
//! measures shared wording. An OpenAI-compatible `/v1/embeddings` endpoint can replace
//! it where configured (see the knowledge base).

/// Dimension of the built-in embedding.
pub const DIM: usize = 256;

/// The built-in deterministic embedding of `text` (L2-normalised; all zeros for text
/// without letters or digits).
pub fn hashed_ngrams(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    let lower = text.to_lowercase();
    let norm: String = lower
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut add = |feature: &str, weight: f32| {
        let h = fnv(feature.as_bytes());
        let bucket = (h % DIM as u64) as usize;
        let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    };
    for word in norm.split_whitespace() {
        add(word, 1.0);
        let padded: Vec<char> = format!(" {word} ").chars().collect();
        for w in padded.windows(3) {
            let g: String = w.iter().collect();
            add(&g, 0.5);
        }
    }
    let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_score_higher_than_unrelated_ones() {
        let a = hashed_ngrams("How do I reset my password?");
        let b = hashed_ngrams("how can I reset the password");
        let c = hashed_ngrams("The weather in Lisbon is sunny.");
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.2);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
    }
}
