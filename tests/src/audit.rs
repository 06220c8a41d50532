//! Driving audits over the protocol, and small policy folders written by a test, so a
//! scenario's verdicts are exact.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_proto::view::{AuditDetail, ControlResult, RunId, Verdict};
use aura_proto::wire::{ApiError, Reply, RequestBody, StartAudit};

use crate::{TestDaemon, wait_for};

/// A policies folder under `root` with the framework crosswalks of the repository's pack
/// and the given files: (file name, YAML).
pub fn policies_with(root: &Path, files: &[(&str, String)]) -> PathBuf {
    let p = root.join("policies");
    let frameworks = p.join("frameworks");
    std::fs::create_dir_all(&frameworks).unwrap();
    for e in std::fs::read_dir(crate::repo_policies().join("frameworks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), frameworks.join(e.file_name())).unwrap();
    }
    for (name, yaml) in files {
        std::fs::write(p.join(name), yaml).unwrap();
    }
    p
}

/// A probe control: `prompts` (YAML flow strings are quoted here), optional
/// `extra_probe` lines (indented by four spaces, e.g. `    system_prompt: ...`), and the
/// `detectors` block as written under `detectors:` (indented by two spaces).
pub fn probe(id: &str, prompts: &[&str], extra_probe: &str, detectors: &str) -> String {
    let prompts: Vec<String> = prompts
        .iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect();
    format!(
        "- id: {id}\n  title: {id} test control\n  severity: high\n  kind: probe\n  probe:\n    prompts: [{}]\n{extra_probe}  detectors:\n{detectors}",
        prompts.join(", ")
    )
}

/// Starts an audit; panics with the daemon's message if it is refused.
pub async fn start(d: &TestDaemon, req: StartAudit) -> RunId {
    match try_start(d, req).await {
        Ok(run) => run,
        Err(e) => panic!("the audit was refused: {e:?}"),
    }
}

/// Starts an audit, returning the daemon's refusal if there is one.
pub async fn try_start(d: &TestDaemon, req: StartAudit) -> Result<RunId, ApiError> {
    let client = d.client().await;
    match client.request(RequestBody::StartAudit(req)).await {
        Ok(Reply::AuditStarted { run }) => Ok(run),
        Ok(other) => panic!("unexpected reply {other:?}"),
        Err(aura::client::ClientError::Api(e)) => Err(e),
        Err(e) => panic!("request failed: {e:?}"),
    }
}

/// The run as the daemon reports it now.
pub async fn detail(d: &TestDaemon, run: RunId) -> AuditDetail {
    match d
        .client()
        .await
        .request(RequestBody::GetAudit { run })
        .await
        .unwrap()
    {
        Reply::Audit(detail) => detail,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Waits until the run is finished (completed, failed or cancelled).
pub async fn finished(d: &TestDaemon, run: RunId, timeout: Duration) -> AuditDetail {
    let client = d.client().await;
    wait_for("the run to finish", timeout, || async {
        match client.request(RequestBody::GetAudit { run }).await.unwrap() {
            Reply::Audit(detail) if detail.summary.state.is_finished() => Some(detail),
            _ => None,
        }
    })
    .await
}

/// Audits `target` with the policy (file stem or control id) `policy` and waits for the
/// end.
pub async fn run_to_end(d: &TestDaemon, target: &str, policy: Option<&str>) -> AuditDetail {
    let run = start(d, StartAudit::target(target, policy)).await;
    finished(d, run, Duration::from_secs(30)).await
}

/// The result of `control` in a run.
pub fn control<'a>(d: &'a AuditDetail, control: &str) -> &'a ControlResult {
    d.controls
        .iter()
        .find(|c| c.control == control)
        .unwrap_or_else(|| panic!("no {control} in {d:#?}"))
}

pub fn verdict(d: &AuditDetail, id: &str) -> Verdict {
    control(d, id).verdict
}

/// Standard base64 (with padding), written out here so the tests do not check the
/// daemon's encoder against itself.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The canary value planted in a request, if any (`AURA-CANARY-` and 16 hex digits).
pub fn canary_in(text: &str) -> Option<String> {
    let i = text.find("AURA-CANARY-")?;
    let c: String = text[i..].chars().take("AURA-CANARY-".len() + 16).collect();
    (c.len() == "AURA-CANARY-".len() + 16).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
