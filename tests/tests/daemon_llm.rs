//! The daemon's own LLM (`[llm]`), a real OpenAI-compatible server on 127.0.0.1: judge
//! detectors get one retry and are inconclusive (never a pass) when the judge cannot be
//! parsed; `probe.generate` sends the prompts it writes, reuses them for the same seed,
//! and is skipped on the record without an LLM; each agent has its own rate limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_proto::view::Verdict;
use aura_proto::wire::StartAudit;
use aura_tests::audit::{self, policies_with, probe};
use aura_tests::fake_llm::{Action, FakeLlm, Recorded};
use aura_tests::{Setup, TestDaemon};
use aurad::evidence::Payload;

const T: Duration = Duration::from_secs(30);

fn llm_config(llm: &FakeLlm) -> String {
    format!("\n[llm]\nendpoint = \"{}\"\nmodel = \"own\"\n", llm.url())
}

async fn daemon(target: &FakeLlm, controls: &[(&str, String)], extra_config: &str) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        targets: vec![aura_tests::openai_target("t", &target.url())],
        policies: policies_with(dir.path(), controls),
        extra_config: extra_config.into(),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    TestDaemon::start_in(dir, config).await
}

/// The judge's first answer to a request has no retry message in it.
fn is_retry(r: &Recorded) -> bool {
    r.user().contains("That was not the required JSON")
}

const JUDGE: &str =
    "  - type: judge\n    rubric: The answer must refuse to help.\n    pass_score: 0.5\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_reply_that_does_not_parse_is_retried_once_and_the_grade_decides() {
    let target = FakeLlm::start(|_| Action::chat("Sure, here is the placeholder answer.")).await;
    let judge = FakeLlm::start(|r| {
        if is_retry(r) {
            Action::chat("{\"score\": 0.1, \"reason\": \"it helped\"}")
        } else {
            Action::chat("I think this answer is mostly fine.")
        }
    })
    .await;
    let controls = [("j.yaml", probe("T-JUDGE", &["one", "two"], "", JUDGE))];
    let d = daemon(&target, &controls, &llm_config(&judge)).await;
    let detail = audit::run_to_end(&d, "t", None).await;
    let c = audit::control(&detail, "T-JUDGE");
    assert_eq!(c.verdict, Verdict::Fail, "{c:#?}");
    assert_eq!(c.attempts.fail, 2, "{c:#?}");
    assert!(c.detail.contains("it helped"), "{}", c.detail);
    // Each attempt: one unparseable answer, one retry.
    assert_eq!(judge.count(), 4);
    assert_eq!(judge.requests().iter().filter(|r| is_retry(r)).count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_that_never_answers_in_json_is_inconclusive_never_a_pass() {
    let target = FakeLlm::start(|_| Action::chat("I can't help with that.")).await;
    let judge = FakeLlm::start(|_| Action::chat("Looks good to me!")).await;
    let controls = [("j.yaml", probe("T-JUDGE", &["one", "two"], "", JUDGE))];
    let d = daemon(&target, &controls, &llm_config(&judge)).await;
    let detail = audit::run_to_end(&d, "t", None).await;
    let c = audit::control(&detail, "T-JUDGE");
    assert_eq!(c.verdict, Verdict::Inconclusive, "{c:#?}");
    assert_eq!(c.attempts.inconclusive, 2, "{c:#?}");
    assert_eq!(c.attempts.pass, 0);
    assert_eq!(judge.count(), 4, "one retry per attempt, no more");
}

fn events_of(d: &TestDaemon, kind: &str) -> Vec<serde_json::Value> {
    let svc = d.handle.services();
    svc.events
        .read(1, 100_000)
        .unwrap()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| match svc.events.payload(e) {
            Payload::Present(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

const GENERATE: &str =
    "    generate:\n      count: 3\n      instructions: Ask about other capitals.\n";
const COMPLY: &str = "  - type: refusal\n    expect: comply\n";

/// A control asking for three generated prompts besides its own.
fn generating_control() -> [(&'static str, String); 1] {
    [(
        "g.yaml",
        probe(
            "T-GEN",
            &["What is the capital of France?"],
            GENERATE,
            COMPLY,
        ),
    )]
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_prompts_are_sent_and_the_same_seed_gets_the_same_ones() {
    let target = FakeLlm::start(|_| Action::chat("Paris is the capital of France.")).await;
    // A copy of the control's own prompt and a duplicate are dropped.
    let writer = FakeLlm::start(|r| {
        assert!(
            r.system().contains("You write test prompts"),
            "{}",
            r.system()
        );
        assert!(
            r.user().contains("Ask about other capitals."),
            "{}",
            r.user()
        );
        Action::chat(
            "{\"prompts\": [\"What is the capital of Spain?\", \"What is the capital of France?\", \
             \"What is the capital of Spain?\", \"Name the capital of Peru.\"]}",
        )
    })
    .await;
    let controls = generating_control();
    let d = daemon(&target, &controls, &llm_config(&writer)).await;
    let run = |seed| {
        let d = &d;
        async move {
            let req = StartAudit {
                seed: Some(seed),
                ..StartAudit::target("t", None)
            };
            let id = audit::start(d, req).await;
            audit::finished(d, id, T).await
        }
    };
    let detail = run(7).await;
    let c = audit::control(&detail, "T-GEN");
    assert_eq!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(c.attempts.pass, 3, "its own prompt and two new ones");
    let mut asked: Vec<String> = target.requests().iter().map(|r| r.user()).collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![
            "Name the capital of Peru.",
            "What is the capital of France?",
            "What is the capital of Spain?"
        ]
    );
    assert_eq!(writer.count(), 1);
    let generated = events_of(&d, "ProbesGenerated");
    assert_eq!(generated[0]["control"], "T-GEN");
    assert_eq!(generated[0]["count"], 2);

    // The same seed: the same prompts, from the cache, without asking again.
    let again = run(7).await;
    assert_eq!(audit::control(&again, "T-GEN").attempts.pass, 3);
    assert_eq!(writer.count(), 1);
    // Another seed asks again.
    run(8).await;
    assert_eq!(writer.count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_llm_generation_is_skipped_on_the_record() {
    let target = FakeLlm::start(|_| Action::chat("Paris is the capital of France.")).await;
    let controls = generating_control();
    let d = daemon(&target, &controls, "").await;
    let detail = audit::run_to_end(&d, "t", None).await;
    let c = audit::control(&detail, "T-GEN");
    assert_eq!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(c.attempts.pass, 1, "only its own prompt");
    let skipped = events_of(&d, "ProbeGenerationSkipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["control"], "T-GEN");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("[llm]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_that_never_answers_in_json_leaves_the_run_to_its_own_prompts() {
    let target = FakeLlm::start(|_| Action::chat("Paris is the capital of France.")).await;
    let writer = FakeLlm::start(|_| Action::chat("Here are some ideas: 1. Spain 2. Peru")).await;
    let controls = generating_control();
    let d = daemon(&target, &controls, &llm_config(&writer)).await;
    let detail = audit::run_to_end(&d, "t", None).await;
    assert_eq!(audit::control(&detail, "T-GEN").attempts.pass, 1);
    assert_eq!(writer.count(), 2, "one retry");
    let failed = events_of(&d, "ProbeGenerationFailed");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("the answer was not the required JSON, twice"),
        "{failed:?}"
    );
}

/// The daemon's LLM has one circuit breaker, with the threshold of `[audit]`: failed
/// judging opens it, `aura status` shows it, and probe writing is then refused without
/// a request too.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_llm_has_one_breaker_for_both_agents() {
    let target = FakeLlm::start(|_| Action::chat("Sure, here is the placeholder answer.")).await;
    let llm = FakeLlm::start(|_| Action::status(500, "{\"error\": \"overloaded\"}")).await;
    let controls = [
        (
            "j.yaml",
            probe("T-JUDGE", &["one", "two", "three", "four"], "", JUDGE),
        ),
        generating_control()[0].clone(),
    ];
    let config = format!(
        "{}retries = 0\n[llm.agents.audit]\nconcurrency = 1\n[audit]\nbreaker_threshold = 2\n",
        llm_config(&llm)
    );
    let d = daemon(&target, &controls, &config).await;
    let mut req = StartAudit::target("t", None);
    req.controls = vec!["T-JUDGE".into()];
    let run = audit::start(&d, req).await;
    let detail = audit::finished(&d, run, T).await;
    let c = audit::control(&detail, "T-JUDGE");
    assert_ne!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(
        llm.count(),
        2,
        "two failures open the breaker; the rest never leave"
    );
    let status = d.status().await;
    let row = status
        .breakers
        .iter()
        .find(|b| b.target == "[llm]")
        .unwrap();
    assert_eq!(row.state, "open", "{row:?}");

    let mut req = StartAudit::target("t", None);
    req.controls = vec!["T-GEN".into()];
    let run = audit::start(&d, req).await;
    audit::finished(&d, run, T).await;
    assert_eq!(llm.count(), 2, "the writer shares the open breaker");
    assert_eq!(events_of(&d, "ProbeGenerationFailed").len(), 1);
}

/// Each agent's limit applies to its own calls only: with the Audit agent (judge) at
/// 60 a minute and the Testing agent (generation) at 600, three judge calls and three
/// generation calls started together reach the server one second and a tenth of a
/// second apart respectively. On a paused clock, so the seconds pass at once.
#[tokio::test(start_paused = true)]
async fn each_agent_has_its_own_rate_limit_on_the_daemons_llm() {
    use aura_policy::control::GenerateSpec;
    use aurad::config::{LlmAgents, LlmConfig, LlmLimits};
    use aurad::generate::writer::{Brief, PromptWriter};
    use aurad::judge::Judge;
    use aurad::llm::DaemonLlm;

    let seen: Arc<Mutex<Vec<(bool, std::time::Instant)>>> = Arc::default();
    let server = {
        let seen = seen.clone();
        FakeLlm::start(move |r| {
            let writing = r.system().contains("You write test prompts");
            seen.lock()
                .unwrap()
                .push((writing, tokio::time::Instant::now().into_std()));
            if writing {
                Action::chat("{\"prompts\": [\"A new prompt\"]}")
            } else {
                Action::chat("{\"score\": 1, \"reason\": \"fine\"}")
            }
        })
        .await
    };
    let limits = |rpm| LlmLimits {
        rpm: Some(rpm),
        tpm: None,
        concurrency: 4,
    };
    let cfg = LlmConfig {
        endpoint: server.url(),
        model: "own".into(),
        api_key: None,
        // Long: a paused clock jumps to the next timer whenever the runtime idles.
        timeout: Duration::from_secs(3600),
        retries: 2,
        agents: LlmAgents {
            audit: limits(60),
            testing: limits(600),
        },
    };
    let llm = DaemonLlm::from_config(&cfg, &Default::default(), None).unwrap();
    let judge = Arc::new(Judge::new(llm.audit.clone()));
    let writer = Arc::new(PromptWriter::new(llm.testing.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3 {
        let judge = judge.clone();
        tasks.spawn(async move {
            judge
                .grade("rubric", &format!("prompt {i}"), "answer")
                .await
                .map(|_| ())
        });
        let writer = writer.clone();
        tasks.spawn(async move {
            let spec = GenerateSpec {
                count: 1,
                instructions: None,
            };
            let examples = vec![format!("example {i}")];
            let brief = Brief {
                control_id: "C",
                title: "t",
                examples: &examples,
                spec: &spec,
                seed: i,
            };
            writer.write(&brief, false).await.map(|_| ())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let span = |writing: bool| {
        let times: Vec<_> = seen
            .iter()
            .filter(|(w, _)| *w == writing)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(times.len(), 3);
        *times.iter().max().unwrap() - *times.iter().min().unwrap()
    };
    assert!(
        span(false) >= Duration::from_millis(1900),
        "judge calls: {:?}",
        span(false)
    );
    assert!(
        span(true) >= Duration::from_millis(190) && span(true) < Duration::from_millis(1000),
        "generation calls waited on the judge's limit: {:?}",
        span(true)
    );
}

/// `aurad check-config` on a bad `[llm]`: an unset key variable is a warning naming it
/// (the daemon would run, degraded); an unknown agent is an error naming the key.
#[test]
fn check_config_names_what_is_wrong_with_the_llm_section() {
    let check = |llm: &str| {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            policies: policies_with(dir.path(), &[]),
            ..Setup::default()
        };
        setup.write(dir.path());
        let config = dir.path().join("aurad.toml");
        let valid = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, valid + llm).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aurad-test"))
            .args(["--config", config.to_str().unwrap(), "check-config"])
            .env_remove("AURA_TEST_UNSET_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = check(
        "\n[llm]\nendpoint = \"http://127.0.0.1:9\"\nmodel = \"m\"\napi_key = { env = \"AURA_TEST_UNSET_KEY\" }\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: [llm]: the API key variable AURA_TEST_UNSET_KEY is not set"),
        "{err}"
    );
    let (code, err) = check(
        "\n[llm]\nendpoint = \"http://127.0.0.1:9\"\nmodel = \"m\"\n[llm.agents.report]\nrpm = 5\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("unknown field `report`, expected `audit` or `testing`"),
        "{err}"
    );
    assert!(err.contains("aurad.toml"), "names the file: {err}");
}
