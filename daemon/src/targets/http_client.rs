//! The HTTP client every HTTP-speaking target builds the same way: timeouts from config,
//! no proxy unless one is configured, optional extra CA certificates, bounded reads.

use aura_policy::TargetSpec;
use aura_policy::target::SecretRef;

use super::TargetError;

pub fn build(spec: &TargetSpec) -> Result<reqwest::Client, String> {
    crate::tls::install_provider();
    let mut b = reqwest::Client::builder()
        .connect_timeout(spec.timeouts.connect)
        .timeout(spec.timeouts.request)
        .user_agent(concat!("aurad/", env!("CARGO_PKG_VERSION")));
    b = match &spec.proxy {
        Some(url) => {
            b.proxy(reqwest::Proxy::all(url).map_err(|e| format!("invalid proxy `{url}`: {e}"))?)
        }
        None => b.no_proxy(),
    };
    if let Some(ca) = &spec.ca_file {
        let path = spec.resolve(ca);
        let pem = std::fs::read(&path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {} is not PEM certificates: {e}", path.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Reads a body, refusing to hold more than `limit` bytes.
pub async fn read_bounded(
    mut resp: reqwest::Response,
    limit: u64,
    classify: impl Fn(reqwest::Error) -> TargetError,
) -> Result<Vec<u8>, TargetError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(TargetError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(&classify)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(TargetError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Maps a reqwest error to a target error.
pub fn classify(e: reqwest::Error, endpoint: &str, timeout: std::time::Duration) -> TargetError {
    if e.is_timeout() {
        TargetError::Timeout(timeout)
    } else if e.is_connect() {
        TargetError::Connect {
            endpoint: endpoint.to_string(),
            message: source_chain(&e),
        }
    } else {
        TargetError::Transport(source_chain(&e))
    }
}

/// Sends a prepared request and reads the body, turning non-2xx into `Status`.
pub async fn send(
    req: reqwest::RequestBuilder,
    endpoint: &str,
    timeout: std::time::Duration,
    limit: u64,
) -> Result<Vec<u8>, TargetError> {
    let resp = req
        .send()
        .await
        .map_err(|e| classify(e, endpoint, timeout))?;
    let status = resp.status();
    let retry_after = super::parse_retry_after(
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        std::time::SystemTime::now(),
    );
    let bytes = read_bounded(resp, limit, |e| classify(e, endpoint, timeout)).await?;
    if !status.is_success() {
        return Err(TargetError::Status {
            status: status.as_u16(),
            body: excerpt(&bytes),
            retry_after,
        });
    }
    Ok(bytes)
}

/// The first 200 characters of a body, for error messages.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Reads a secret by reference. Never logged.
pub fn read_secret(secret: &SecretRef, spec: &TargetSpec) -> Result<String, String> {
    match secret {
        SecretRef::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(format!(
                "its API key variable {var} is not set in the daemon's environment"
            )),
        },
        SecretRef::File(path) => {
            let path = spec.resolve(path);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read its API key file {}: {e}", path.display()))
        }
    }
}
