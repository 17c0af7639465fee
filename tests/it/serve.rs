//! `prbot serve`: webhooks, the queue, manual runs, metrics and shutdown.

use crate::support::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const SECRET: &str = "webhook-secret-4f1d";
const RUN_TOKEN: &str = "run-token-8c2e";

/// A running `prbot serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Serves `env`'s repository with a pipeline whose cycle is one `run:` step.
    async fn start(env: &Env, step: &str, settings: &str, args: &[&str]) -> Server {
        let model = Model::good().await;
        let stages = format!("  - run: {step}\n");
        let pipeline = env.write_pipeline(&model, &Pipeline::default().stages(&stages).settings(settings));
        let log = env.tmp.path().join(format!("serve-{}.log", rand_id()));
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(&env.repo)
            .arg("--pipeline")
            .arg(&pipeline)
            .args(args)
            .env("PRBOT_WEBHOOK_SECRET", SECRET)
            .env("PRBOT_RUN_TOKEN", RUN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}: {}", std::fs::read_to_string(&log).unwrap()));
        Server { child, url: format!("http://{addr}"), log }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url)).await.unwrap().text().await.unwrap()
    }

    /// A counter's value for one label, 0 when absent.
    async fn metric(&self, name: &str, label: &str) -> u64 {
        let m = self.metrics().await;
        let key = format!("{name}{{{label}}} ");
        m.lines().find_map(|l| l.strip_prefix(key.as_str())).map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn sum(&self, name: &str) -> u64 {
        let m = self.metrics().await;
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// Waits until no cycle runs or waits.
    async fn settle(&self) {
        for _ in 0..600 {
            if self.metrics().await.contains("prbot_queue_depth 0\n") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the queue never emptied: {}", std::fs::read_to_string(&self.log).unwrap());
    }
}

fn rand_id() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn push_body(files: &[&str]) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        "commits": [{"id": "1111111111111111111111111111111111111111", "message": "edit", "added": [], "removed": [], "modified": files}],
        "head_commit": {"id": "1111111111111111111111111111111111111111", "added": [], "removed": [], "modified": files},
    })
    .to_string()
    .into_bytes()
}

#[derive(Clone, Copy)]
enum Style {
    Gitea,
    Github,
}

/// A delivery as the forge sends it, signed with `secret`.
fn delivery(
    server: &Server,
    style: Style,
    id: &str,
    event: &str,
    body: Vec<u8>,
    secret: &str,
) -> reqwest::RequestBuilder {
    let client = reqwest::Client::new();
    let sig = sign(secret, &body);
    match style {
        Style::Gitea => client
            .post(format!("{}/hooks/gitea", server.url))
            .header("x-gitea-event", event)
            .header("x-gitea-delivery", id)
            .header("x-gitea-signature", sig),
        Style::Github => client
            .post(format!("{}/hooks/github", server.url))
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", format!("sha256={sig}")),
    }
    .header("content-type", "application/json")
    .body(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_verified_deduplicated_and_sized() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    for (i, style) in [Style::Gitea, Style::Github].into_iter().enumerate() {
        let id = format!("d-{i}");
        let body = push_body(&["docs/PRD.md"]);
        let r = delivery(&server, style, &id, "push", body.clone(), SECRET).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["result"], "queued", "{reply}");
        server.settle().await;

        let again = delivery(&server, style, &id, "push", body.clone(), SECRET).send().await.unwrap();
        assert_eq!(again.status(), 200, "a redelivery");

        let mut tampered = body.clone();
        tampered[5] ^= 1;
        let t = delivery(&server, style, "t", "push", body.clone(), SECRET);
        let t = t.body(tampered);
        assert_eq!(t.send().await.unwrap().status(), 401, "a tampered body");
        assert_eq!(
            delivery(&server, style, "w", "push", body.clone(), "wrong-secret")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let bare = reqwest::Client::new()
            .post(format!("{}/hooks/{}", server.url, if i == 0 { "gitea" } else { "github" }))
            .header("x-gitea-event", "push")
            .header("x-github-event", "push")
            .body(body.clone());
        assert_eq!(bare.send().await.unwrap().status(), 401, "no signature");

        let big = vec![b' '; 2 * 1024 * 1024];
        assert_eq!(delivery(&server, style, "big", "push", big, SECRET).send().await.unwrap().status(), 413);
        let bad = delivery(&server, style, &format!("bad-{i}"), "push", b"{not json".to_vec(), SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let other = delivery(&server, style, &format!("o-{i}"), "issues", b"{}".to_vec(), SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 202);
        let reply: Value = other.json().await.unwrap();
        assert_eq!(reply["result"], "ignored");
        assert!(reply["message"].as_str().unwrap().contains("`issues` events"), "{reply}");
    }
    server.settle().await;
    assert_eq!(
        server.sum("prbot_cycles_total").await,
        2,
        "one cycle per first delivery, none for the redeliveries"
    );
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"duplicate\"").await, 2);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"unauthorized\"").await, 6);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"too_large\"").await, 2);
    assert_eq!(server.metric("prbot_deliveries_total", "result=\"bad_request\"").await, 2);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains(SECRET), "the secret reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_deliveries_runs_at_most_two_cycles() {
    let env = Env::new();
    // The first cycle holds on until every delivery was answered, however slow the machine.
    // In prbot's clone: readable from the sandbox and kept between cycles, unlike the tree.
    let release = env.work.join("clone.git/release");
    let step = format!("while [ ! -f {} ]; do sleep 0.05; done", release.display());
    let server = Server::start(&env, &step, "", &[]).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let req = delivery(
            &server,
            Style::Gitea,
            &format!("burst-{i}"),
            "push",
            push_body(&["docs/PRD.md"]),
            SECRET,
        );
        set.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(r) = set.join_next().await {
        *statuses.entry(r.unwrap().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&202), Some(&1000), "{statuses:?}");
    std::fs::write(&release, "").unwrap();
    server.settle().await;
    let cycles = server.sum("prbot_cycles_total").await;
    assert!((1..=2).contains(&cycles), "{cycles} cycles");
    assert_eq!(server.sum("prbot_deliveries_total").await, 1000, "{}", server.metrics().await);
    let queued = server.metric("prbot_deliveries_total", "result=\"queued\"").await;
    assert_eq!(queued, cycles, "every queued trigger ran, once");
    assert!(
        server.metrics().await.contains("prbot_last_cycle_timestamp_seconds 1"),
        "no time of the last cycle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_that_do_not_touch_the_prd_start_nothing_unless_configured() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let r = delivery(&server, Style::Github, "p1", "push", push_body(&["src/lib.rs"]), SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["result"], "ignored");
    assert!(reply["message"].as_str().unwrap().contains("does not change docs/PRD.md"));
    assert!(server.metrics().await.contains("prbot_queue_depth 0\n"));
    assert_eq!(server.sum("prbot_cycles_total").await, 0);
    drop(server);

    let server = Server::start(&env, "true", "serve:\n  on_push: any", &[]).await;
    let r = delivery(&server, Style::Github, "p2", "push", push_body(&["src/lib.rs"]), SECRET)
        .send()
        .await
        .unwrap();
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["result"], "queued", "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_runs_health_and_stats() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/healthz", server.url)).send().await.unwrap().status(), 200);
    let denied = client.post(format!("{}/run", server.url)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let ok = client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 202);
    server.settle().await;
    let stats: Value =
        client.get(format!("{}/stats", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["cycles"], 1, "{stats}");
    assert_eq!(server.metric("prbot_cycles_total", "outcome=\"dry_run\"").await, 1);
    // The report page, as `prbot report` writes it.
    let page = client.get(format!("{}/report?days=7", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<td id="total-cycles">1</td>"#) && html.matches("<svg ").count() == 5, "{html}");
    let bad = client.get(format!("{}/report?days=0", server.url)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

/// Each cycle runs the pipeline file as it is when the cycle starts; one that no longer
/// loads runs nothing, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn each_cycle_runs_the_pipeline_file_as_it_is_then() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let client = reqwest::Client::new();
    let run = || async {
        let r = client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 202);
        server.settle().await;
    };
    run().await;
    assert_eq!(server.metric("prbot_cycles_total", "outcome=\"dry_run\"").await, 1);
    let good = std::fs::read_to_string(&env.pipeline_path).unwrap();
    assert!(good.contains("  - run: true\n"), "{good}");

    // The step now fails, and a `serve:` setting changed too.
    let failing = good.replace("  - run: true\n", "  - run: \"false\"\n") + "serve:\n  grace: 7s\n";
    std::fs::write(&env.pipeline_path, &failing).unwrap();
    run().await;
    assert_eq!(server.metric("prbot_cycles_total", "outcome=\"tests_failed\"").await, 1);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("changed: the cycles from now on run what it says"), "{log}");
    assert!(log.contains("take effect when the server restarts"), "{log}");

    // A file that no longer loads: no cycle, an error naming the file and the line.
    let broken = format!("{failing}bogus_key: 1\n");
    let line = broken.lines().count();
    std::fs::write(&env.pipeline_path, &broken).unwrap();
    run().await;
    assert_eq!(server.sum("prbot_cycles_total").await, 2, "a cycle ran on a pipeline that does not load");
    assert_eq!(
        server.metrics().await.lines().find(|l| l.starts_with("prbot_pipeline_errors_total ")),
        Some("prbot_pipeline_errors_total 1")
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    let error = format!("{}:{line}:1: unknown field `bogus_key`", env.pipeline_path.display());
    assert!(log.contains(&error) && log.contains("the cycle did not run"), "{log}");

    // Mended, it runs again.
    std::fs::write(&env.pipeline_path, &good).unwrap();
    run().await;
    assert_eq!(server.metric("prbot_cycles_total", "outcome=\"dry_run\"").await, 2);

    // A delivery is judged by the file as it is, too.
    let push =
        |id: &str| delivery(&server, Style::Github, id, "push", push_body(&["src/lib.rs"]), SECRET).send();
    let reply: Value = push("r1").await.unwrap().json().await.unwrap();
    assert_eq!(reply["result"], "ignored", "{reply}");
    std::fs::write(&env.pipeline_path, format!("{good}serve:\n  on_push: any\n")).unwrap();
    let reply: Value = push("r2").await.unwrap().json().await.unwrap();
    assert_eq!(reply["result"], "queued", "{reply}");
    server.settle().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_cycle_finish() {
    let env = Env::new();
    let marker = env.marker("started");
    let step = format!("touch {}; sleep 1", marker.display());
    let mut server = Server::start(&env, &step, "", &[]).await;
    let client = reqwest::Client::new();
    client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    while !marker.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(env.state().join("cycles.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "the running cycle did not finish");
    assert!(log.contains("dry_run"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_schedule_feeds_the_queue() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &["--schedule", "* * * * * *"]).await;
    for _ in 0..100 {
        if server.sum("prbot_cycles_total").await >= 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no scheduled cycles: {}", std::fs::read_to_string(&server.log).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_schedule_is_a_usage_error() {
    let env = Env::new();
    let pipeline = env.write_pipeline(&Model::good().await, &Pipeline::default());
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--schedule", "every hour", "--repo"])
        .arg(&env.repo)
        .arg("--pipeline")
        .arg(pipeline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`every hour` is not a cron expression"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_queued_cycle_exits_when_the_running_one_ends() {
    let env = Env::new();
    let marker = env.marker("started");
    let step = format!("touch {}; sleep 2", marker.display());
    let mut server = Server::start(&env, &step, "", &[]).await;
    let client = reqwest::Client::new();
    client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    while !marker.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // One running, one queued.
    client.post(format!("{}/run", server.url)).bearer_auth(RUN_TOKEN).send().await.unwrap();
    let asked = std::time::Instant::now();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The running cycle had about 2 s left; the default grace period is 60 s.
    assert!(asked.elapsed() < std::time::Duration::from_secs(20), "shutdown waited {:?}", asked.elapsed());
    let log = std::fs::read_to_string(env.state().join("cycles.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "the queued cycle ran, or the running one did not finish: {log}");
    let stderr = std::fs::read_to_string(&server.log).unwrap();
    assert!(stderr.contains("queued cycle is dropped"), "{stderr}");
    assert!(!stderr.contains("outlived"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_gitea_push_is_judged_by_its_whole_range() {
    let env = Env::new();
    // Six commits: the oldest changes the PRD, the newest five do not.
    let before = git(&env.repo, &["rev-parse", "HEAD"]);
    env.write(
        "docs/PRD.md",
        &format!(
            "{}\n- [ ] Another item [bot-eligible]\n",
            std::fs::read_to_string(env.repo.join("docs/PRD.md")).unwrap()
        ),
    );
    env.commit("a new PRD item");
    let mut listed = Vec::new();
    for i in 0..5 {
        env.write(&format!("notes-{i}.txt"), "x\n");
        env.commit(&format!("note {i}"));
        listed.push(git(&env.repo, &["rev-parse", "HEAD"]));
    }
    let after = git(&env.repo, &["rev-parse", "HEAD"]);
    let server = Server::start(&env, "true", "", &[]).await;
    let commits: Vec<Value> = listed
        .iter()
        .map(|id| json!({"id": id, "added": ["notes.txt"], "removed": [], "modified": []}))
        .collect();
    let body = json!({
        "ref": "refs/heads/main", "before": before, "after": after, "total_commits": 6,
        "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        "commits": commits, "head_commit": commits.last(),
    });
    let r = delivery(&server, Style::Gitea, &rand_id(), "push", body.to_string().into_bytes(), SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    server.settle().await;
    assert_eq!(server.sum("prbot_cycles_total").await, 1, "no cycle for a push whose range changes the PRD");
    // The same push without the PRD change in its range is ignored.
    let quiet = json!({
        "ref": "refs/heads/main", "before": listed[0], "after": after, "total_commits": 6,
        "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        "commits": commits, "head_commit": commits.last(),
    });
    let r = delivery(&server, Style::Gitea, &rand_id(), "push", quiet.to_string().into_bytes(), SECRET)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("does not change"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delivery_can_be_redelivered_with_the_same_id() {
    let env = Env::new();
    let server = Server::start(&env, "true", "", &[]).await;
    let id = rand_id();
    let bad = json!({"ref": "refs/heads/main"}).to_string().into_bytes();
    let r = delivery(&server, Style::Github, &id, "push", bad, SECRET).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = delivery(&server, Style::Github, &id, "push", push_body(&["docs/PRD.md"]), SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    server.settle().await;
    assert_eq!(server.sum("prbot_cycles_total").await, 1);
}
