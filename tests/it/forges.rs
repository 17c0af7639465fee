//! The pr stage against fakes of Gitea and GitHub, with real pushes behind them.

use crate::support::forge::{FakeForge, Flavor, NAME, OWNER};
use crate::support::*;
use serde_json::Value;

const TOKEN_ENV: &str = "PRBOT_IT_FORGE_TOKEN";

struct Setup {
    env: Env,
    forge: FakeForge,
    model: Model,
    token: String,
}

impl Setup {
    async fn new(flavor: Flavor) -> Setup {
        Setup::with_token(flavor, &format!("tok-{}-{}", std::process::id(), rand_suffix())).await
    }

    async fn with_token(flavor: Flavor, token: &str) -> Setup {
        let env = Env::new();
        let forge = FakeForge::start(flavor, token, &env.repo, env.tmp.path());
        Setup { env, forge, model: Model::good().await, token: token.to_string() }
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline::default().settings(&self.forge.settings(TOKEN_ENV))
    }

    fn run(&self, p: &Pipeline) -> Run {
        self.env.run_with(&self.model, p, &[(TOKEN_ENV, &self.token)])
    }
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{n:08x}")
}

const BOTH: [Flavor; 2] = [Flavor::Gitea, Flavor::Github];

#[tokio::test(flavor = "multi_thread")]
async fn the_first_pr_is_a_draft_and_the_branch_is_really_pushed() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let before = s.env.snapshot();
        let r = s.run(&s.pipeline()).expect("ok", 0);
        assert_eq!(s.env.snapshot(), before);
        let prs = s.forge.prs();
        assert_eq!(prs.len(), 1, "{flavor:?}");
        let pr = &prs[0];
        assert!(pr.draft, "{flavor:?}: not a draft");
        match flavor {
            Flavor::Gitea => assert!(pr.title.starts_with("WIP: prbot: "), "{}", pr.title),
            Flavor::Github => assert!(pr.title.starts_with("prbot: "), "{}", pr.title),
        }
        let branch = r["branch"].as_str().unwrap();
        assert_eq!(pr.head, branch);
        assert_eq!(pr.base, "main");
        assert_eq!(
            s.forge.remote_branch(branch).as_deref(),
            r["commit"].as_str(),
            "{flavor:?}: the branch was not pushed"
        );
        assert_eq!(r["pr"]["number"], 1);
        assert_eq!(r["pr"]["created"], true);
        let url = r["pr"]["url"].as_str().unwrap();
        assert!(url.starts_with(&s.forge.url) && url.ends_with("/1"), "{url}");
        assert!(pr.body.contains("Greet the world."), "{}", pr.body);
        let scheme = if flavor == Flavor::Gitea { "token " } else { "Bearer " };
        let api: Vec<_> = s.forge.seen().into_iter().filter(|x| !x.path.contains(".git/")).collect();
        assert!(
            !api.is_empty() && api.iter().all(|x| x.authorization == format!("{scheme}{}", s.token)),
            "{flavor:?}: wrong auth scheme"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_review_comment_gets_a_revision_of_the_same_pr() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        s.run(&s.pipeline()).expect("ok", 0);
        s.env.write("other.txt", "a maintainer's commit\n");
        s.env.commit("move main on");
        // No feedback yet: the gap waits, without a model call.
        let waiting = s.run(&s.pipeline()).expect("skipped_no_gap", 0);
        assert!(waiting["reason"].as_str().unwrap().contains("PR #1"), "{flavor:?}: {}", waiting["reason"]);
        assert_eq!(s.model.requests().await.len(), 1, "{flavor:?}: a waiting gap cost a model call");
        s.forge.review(1, "Use `printf`, not `echo`.");
        let r = s.run(&s.pipeline()).expect("ok", 0);
        let prompt = s.model.prompts().await.pop().unwrap();
        assert!(prompt.contains("Use `printf`, not `echo`."), "{flavor:?}: the comment is not in the prompt");
        assert!(
            prompt.contains("The PR's current change") && prompt.contains("+echo hello world"),
            "{flavor:?}: the PR's diff is not in the prompt"
        );
        let prs = s.forge.prs();
        assert_eq!(prs.len(), 1, "{flavor:?}: a duplicate PR");
        assert_eq!(r["pr"]["number"], 1);
        assert_eq!(r["pr"]["created"], false);
        assert_eq!(prs[0].comments.len(), 2, "{flavor:?}");
        assert!(
            prs[0].comments[1].contains("This revision answers") && prs[0].comments[1].contains("printf"),
            "{flavor:?}: {:?}",
            prs[0].comments
        );
        assert!(prs[0].body.contains("Prior attempts on this gap (1 most recent)"), "{}", prs[0].body);
        assert_eq!(
            s.forge.remote_branch(r["branch"].as_str().unwrap()).as_deref(),
            r["commit"].as_str(),
            "{flavor:?}: force-with-lease push"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pr_opened_between_lookup_and_create_is_reused() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let gap = crate::support::gap_id_of(&s.env);
        let existing = s.forge.add_pr(&format!("prbot/{gap}"), true, false);
        s.forge.state.lock().unwrap().hide_until_create = true;
        let r = s.run(&s.pipeline()).expect("ok", 0);
        assert_eq!(s.forge.prs().len(), 1, "{flavor:?}: a second PR was opened");
        assert_eq!(r["pr"]["number"], existing);
        assert_eq!(r["pr"]["created"], false);
        let creates =
            s.forge.seen().iter().filter(|x| x.method == "POST" && x.path.ends_with("/pulls")).count();
        assert_eq!(creates, 1, "{flavor:?}: the create was not tried");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_whose_pr_was_closed_is_left_alone_unless_told() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let gap = crate::support::gap_id_of(&s.env);
        let closed = s.forge.add_pr(&format!("prbot/{gap}"), false, false);
        let r = s.run(&s.pipeline()).expect("skipped_no_gap", 0);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("closed PR #{closed}")) && reason.contains("recreate_closed"),
            "{reason}"
        );
        assert!(s.model.requests().await.is_empty(), "a model call was spent on a turned-down gap");

        let stages =
            STAGES.replace("  - uses: pr\n", "  - uses: pr\n    with:\n      recreate_closed: true\n");
        let r = s.run(&s.pipeline().stages(&stages)).expect("ok", 0);
        assert_eq!(r["pr"]["number"], 2);
        assert_eq!(s.forge.prs().len(), 2);
        // The closed PR stays closed; after a review the next cycle updates the open one.
        s.forge.review(2, "one more thing");
        let r = s.run(&s.pipeline().stages(&stages)).expect("ok", 0);
        assert_eq!(
            (r["pr"]["number"].as_u64(), r["pr"]["created"].as_bool()),
            (Some(2), Some(false)),
            "{flavor:?}"
        );
        assert_eq!(s.forge.prs().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_open_and_max_per_day_cap_new_prs() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        for b in ["prbot/a", "prbot/b", "prbot/c"] {
            s.forge.add_pr(b, true, false);
        }
        s.forge.add_pr("feature/human", true, false);
        let r = s.run(&s.pipeline()).expect("pr_skipped_by_policy", 0);
        assert_eq!(r["reason"], "3 of prbot's PRs are open, and pr.max_open is 3", "{flavor:?}");
        assert_eq!(s.forge.prs().len(), 4);
        assert!(
            s.forge.remote_branch(&format!("prbot/{}", crate::support::gap_id_of(&s.env))).is_none(),
            "pushed past the cap"
        );

        let stages = STAGES
            .replace("  - uses: pr\n", "  - uses: pr\n    with:\n      max_open: 10\n      max_per_day: 0\n");
        let r = s.run(&s.pipeline().stages(&stages)).expect("pr_skipped_by_policy", 0);
        assert_eq!(r["reason"], "0 PRs were opened today (UTC), and pr.max_per_day is 0", "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().fail_creates = vec![502, 503];
        s.run(&s.pipeline()).expect("ok", 0);
        let creates =
            s.forge.seen().iter().filter(|x| x.method == "POST" && x.path.ends_with("/pulls")).count();
        assert_eq!(creates, 3, "{flavor:?}");
        assert_eq!(s.forge.prs().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forge_that_stays_down_is_an_outage_and_never_passes_the_gap_over() {
    let s = Setup::new(Flavor::Gitea).await;
    let p = s.pipeline();
    s.forge.state.lock().unwrap().fail_creates = vec![503; 12];
    for _ in 0..4 {
        let r = s.run(&p).expect("pr_failed", 1);
        assert_reason(&r, "HTTP 503");
        assert_eq!(r["outage"], true);
    }
    // Back up: the gap is taken again, and the branch the outage pushed is prbot's own.
    s.forge.state.lock().unwrap().fail_creates.clear();
    let r = s.run(&p).expect("ok", 0);
    assert_eq!(s.forge.prs().len(), 1, "{}", r["reason"]);

    // The control: a forge that refuses the request itself fails the gap.
    let s = Setup::new(Flavor::Gitea).await;
    s.forge.state.lock().unwrap().fail_creates = vec![422; 12];
    for _ in 0..3 {
        let r = s.run(&s.pipeline()).expect("pr_failed", 1);
        assert!(r.get("outage").is_none(), "{}", r["outage"]);
    }
    let r = s.run(&s.pipeline()).expect("skipped_no_gap", 0);
    assert_reason(&r, "last 3 attempts all failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_token_fails_clearly_before_any_model_call() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let wrong = "tok-wrong-5b1f0c";
        let run = s.env.run_with(&s.model, &s.pipeline(), &[(TOKEN_ENV, wrong)]);
        let r = run.expect("pr_failed", 1);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("HTTP 401") && reason.contains(&format!("${TOKEN_ENV}")),
            "{flavor:?}: {reason}"
        );
        assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
        assert!(s.model.requests().await.is_empty());

        let run = s.env.run(&s.model, &s.pipeline());
        let r = run.expect("pr_failed", 1);
        assert!(
            r["reason"].as_str().unwrap().contains(&format!("{TOKEN_ENV} is not set")),
            "{}",
            r["reason"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_push_is_pr_failed_with_gits_reason() {
    let s = Setup::new(Flavor::Gitea).await;
    s.forge.state.lock().unwrap().push_allowed = false;
    let r = s.run(&s.pipeline()).expect("pr_failed", 1);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("rejected") && reason.contains("403"), "{reason}");
    assert!(s.forge.prs().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_push_permission_stops_before_the_push() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().push_permission = false;
        let r = s.run(&s.pipeline()).expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains("cannot push"), "{}", r["reason"]);
        assert!(s.forge.remote_branch(&format!("prbot/{}", crate::support::gap_id_of(&s.env))).is_none());
        assert!(s.forge.prs().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_are_resolved_and_missing_ones_are_a_warning() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let stages = STAGES.replace(
            "  - uses: pr\n",
            "  - uses: pr\n    with:\n      labels: [enhancement, no-such-label]\n",
        );
        let r = s.run(&s.pipeline().stages(&stages)).expect("ok", 0);
        assert_eq!(s.forge.prs()[0].labels, vec!["enhancement".to_string()], "{flavor:?}");
        assert!(r["warnings"].to_string().contains("no-such-label"), "{}", r["warnings"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_canary_token_appears_nowhere() {
    for flavor in BOTH {
        let canary = format!("canary-{}-{}", rand_suffix(), std::process::id());
        let s = Setup::with_token(flavor, &canary).await;
        // The test command sees no token either.
        let p = Pipeline::default().tests(&["env"]).settings(&s.forge.settings(TOKEN_ENV));
        let ok = s.run(&p);
        let dump = ok.expect("ok", 0)["tests"][0]["log"].as_str().unwrap().to_string();
        s.forge.review(1, "again");
        let second = s.run(&p);
        second.expect("ok", 0);
        s.forge.state.lock().unwrap().push_allowed = false;
        s.env.write("other.txt", "move on\n");
        s.env.commit("move main on");
        s.forge.review(1, "and again");
        let failed = s.run(&p);
        failed.expect("pr_failed", 1);

        let mut places: Vec<(String, String)> = Vec::new();
        for (i, run) in [&ok, &second, &failed].iter().enumerate() {
            places.push((format!("stdout {i}"), run.stdout.clone()));
            places.push((format!("stderr {i}"), run.stderr.clone()));
        }
        for pr in s.forge.prs() {
            places.push(("PR body".into(), format!("{} {} {:?}", pr.title, pr.body, pr.comments)));
        }
        places.push(("test env".into(), std::fs::read_to_string(&dump).unwrap()));
        for dir in [s.env.repo.join(".git"), s.env.work.clone(), s.forge.remote.clone()] {
            for (path, text) in text_files(&dir) {
                places.push((path, text));
            }
        }
        for (what, text) in &places {
            assert!(!text.contains(&canary), "{flavor:?}: the token leaked into {what}");
        }
        assert!(places.iter().any(|(w, _)| w.ends_with("config")), "no git config was checked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fakes_answer_like_the_real_servers() {
    let client = reqwest::Client::new();
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let (api, auth) = match flavor {
            Flavor::Gitea => {
                (format!("{}/api/v1/repos/{OWNER}/{NAME}", s.forge.url), format!("token {}", s.token))
            }
            Flavor::Github => {
                (format!("{}/repos/{OWNER}/{NAME}", s.forge.url), format!("Bearer {}", s.token))
            }
        };
        let post = |body: Value| {
            client.post(format!("{api}/pulls")).header("authorization", &auth).json(&body).send()
        };
        let same = post(serde_json::json!({"title": "t", "head": "main", "base": "main"})).await.unwrap();
        assert_eq!(same.status(), 422, "{flavor:?}: head equal to base");
        let first = post(serde_json::json!({"title": "t", "head": "x", "base": "main"})).await.unwrap();
        assert_eq!(first.status(), 201);
        let dup = post(serde_json::json!({"title": "t", "head": "x", "base": "main"})).await.unwrap();
        let expected = if flavor == Flavor::Gitea { 409 } else { 422 };
        assert_eq!(dup.status().as_u16(), expected);
        assert!(dup.text().await.unwrap().contains("already exists"));
        let unauth = client.get(&api).header("authorization", "token nope").send().await.unwrap();
        assert_eq!(unauth.status(), 401);
        let missing =
            client.get(format!("{api}/pulls/main/nope")).header("authorization", &auth).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        for b in ["y", "z"] {
            post(serde_json::json!({"title": "t", "head": b, "base": "main"})).await.unwrap();
        }
        let page1 = client
            .get(format!("{api}/pulls?state=open&page=1&limit=2&per_page=2"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(page1.headers()["link"].to_str().unwrap().contains("rel=\"next\""));
        if flavor == Flavor::Gitea {
            assert_eq!(page1.headers()["x-total-count"], "3");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gitea_fake_keeps_to_giteas_openapi_shapes() {
    let spec: Value = serde_json::from_str(include_str!("../fixtures/gitea-api-subset.json")).unwrap();
    let props = |def: &str| -> Vec<String> {
        spec["definitions"][def]["properties"].as_object().unwrap().keys().cloned().collect()
    };
    let s = Setup::new(Flavor::Gitea).await;
    s.run(&s.pipeline()).expect("ok", 0);
    let client = reqwest::Client::new();
    let api = format!("{}/api/v1/repos/{OWNER}/{NAME}", s.forge.url);
    let get = |path: String| {
        client.get(format!("{api}{path}")).header("authorization", format!("token {}", s.token)).send()
    };
    let pr: Value = get("/pulls/1".replace("/1", "/main/") + s.forge.prs()[0].head.as_str())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (key, def) in [(None, "PullRequest"), (Some("head"), "PRBranchInfo"), (Some("base"), "PRBranchInfo")]
    {
        let obj = key.map_or(&pr, |k| &pr[k]);
        for k in obj.as_object().unwrap().keys() {
            assert!(props(def).contains(k), "the fake's {def} has `{k}`, which Gitea's doesn't");
        }
    }
    for k in ["number", "html_url", "state", "merged", "title", "head", "base"] {
        assert!(props("PullRequest").contains(&k.to_string()), "prbot relies on PullRequest.{k}");
    }
    let repo: Value = get(String::new()).await.unwrap().json().await.unwrap();
    for k in repo.as_object().unwrap().keys() {
        assert!(props("Repository").contains(k), "the fake's Repository has `{k}`");
    }
    let labels: Value = get("/labels".into()).await.unwrap().json().await.unwrap();
    for k in labels[0].as_object().unwrap().keys() {
        assert!(props("Label").contains(k), "the fake's Label has `{k}`");
    }
    for (path, method, status) in [
        ("/repos/{owner}/{repo}/pulls", "post", "201"),
        ("/repos/{owner}/{repo}/pulls", "post", "409"),
        ("/repos/{owner}/{repo}/pulls/{base}/{head}", "get", "404"),
        ("/repos/{owner}/{repo}/pulls/{index}", "patch", "201"),
        ("/repos/{owner}/{repo}/issues/{index}/comments", "post", "201"),
    ] {
        let known = spec["paths"][path][method].as_array().unwrap();
        assert!(known.iter().any(|s| s == status), "Gitea's {method} {path} has no {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_that_meets_a_5xx_is_retried() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().fail_receive_pack = vec![503];
        let r = s.run(&s.pipeline()).expect("ok", 0);
        assert_eq!(s.forge.state.lock().unwrap().receive_packs, 2, "{flavor:?}: one failed push, one retry");
        let branch = r["branch"].as_str().unwrap();
        assert_eq!(
            s.forge.remote_branch(branch).as_deref(),
            r["commit"].as_str(),
            "{flavor:?}: the branch did not arrive"
        );
        assert_eq!(s.model.requests().await.len(), 1, "the model was asked again");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_push_sends_one_authorization_header_whatever_git_config_holds() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        // What actions/checkout leaves, in the repository and in a global config.
        let stale = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46c3RhbGU=";
        let url = s.forge.settings(TOKEN_ENV);
        let web = url.lines().find_map(|l| l.trim().strip_prefix("url: ")).unwrap().trim().to_string();
        let key = format!("http.{web}/.extraheader");
        git(&s.env.repo, &["config", &key, stale]);
        let global = s.env.tmp.path().join("gitconfig");
        std::fs::write(
            &global,
            format!("[http \"{web}/\"]\n\textraheader = {stale}\n[http]\n\textraheader = {stale}\n"),
        )
        .unwrap();
        let r = s.env.run_with(
            &s.model,
            &s.pipeline(),
            &[(TOKEN_ENV, &s.token), ("GIT_CONFIG_GLOBAL", global.to_str().unwrap())],
        );
        let r = r.expect("ok", 0);
        assert_eq!(
            s.forge.remote_branch(r["branch"].as_str().unwrap()).as_deref(),
            r["commit"].as_str(),
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merged_pr_wins_over_an_older_closed_one() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let gap = crate::support::gap_id_of(&s.env);
        // #1 closed by a maintainer, #2 recreated and merged: the gap is done.
        s.forge.add_pr(&format!("prbot/{gap}"), false, false);
        let merged = s.forge.add_pr(&format!("prbot/{gap}"), false, true);
        let stages =
            STAGES.replace("  - uses: pr\n", "  - uses: pr\n    with:\n      recreate_closed: true\n");
        let r = s.run(&s.pipeline().stages(&stages)).expect("skipped_no_gap", 0);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("PR #{merged}")) && reason.contains("merged"),
            "{flavor:?}: {reason}"
        );
        assert!(s.model.requests().await.is_empty(), "{flavor:?}: a model call for a merged gap");
        assert_eq!(s.forge.prs().len(), 2, "{flavor:?}: a PR was opened for a merged gap");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintainers_commit_on_the_branch_is_never_overwritten() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let first = s.run(&s.pipeline()).expect("ok", 0);
        let branch = first["branch"].as_str().unwrap().to_string();
        let theirs = s.forge.commit_as_maintainer(&branch, s.env.tmp.path());
        s.forge.review(1, "I pushed a fix-up; please also update the docs.");
        for _ in 0..2 {
            let r = s.run(&s.pipeline()).expect("skipped_no_gap", 0);
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.contains("someone else committed") && reason.contains("PR #1"),
                "{flavor:?}: {reason}"
            );
        }
        assert_eq!(
            s.forge.remote_branch(&branch).as_deref(),
            Some(theirs.as_str()),
            "{flavor:?}: overwritten"
        );
        assert_eq!(s.model.requests().await.len(), 1, "{flavor:?}: a model call on a branch left to a human");
        let stops = s.forge.prs()[0].comments.iter().filter(|c| c.contains("prbot stopped updating")).count();
        assert_eq!(stops, 1, "{flavor:?}: the comment should be left once");
        // Handed back: prbot rebuilds from the base and pushes over the fix-up.
        s.forge.review(1, "prbot: take over");
        let r = s.run(&s.pipeline()).expect("ok", 0);
        assert_eq!(s.forge.remote_branch(&branch).as_deref(), r["commit"].as_str(), "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_repo_or_base_ends_the_cycle_before_any_model_call() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        let with = |pr: &str| STAGES.replace("  - uses: pr\n", &format!("  - uses: pr\n    with:\n{pr}"));
        // A base that is no branch, with recreate_closed too.
        let stages = with("      base: no-such-branch\n      recreate_closed: true\n");
        let r = s.run(&s.pipeline().stages(&stages)).expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains("pr.base"), "{flavor:?}: {}", r["reason"]);
        // A repository that does not exist, with pr.base set (so no default-branch lookup).
        let wrong_repo = s
            .forge
            .settings(TOKEN_ENV)
            .replace(&format!("repo: {OWNER}/{NAME}"), &format!("repo: {OWNER}/nothing"));
        let r = s
            .run(&Pipeline::default().stages(&with("      base: main\n")).settings(&wrong_repo))
            .expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains("forge.repo"), "{flavor:?}: {}", r["reason"]);
        // A wrong token, with recreate_closed (which once skipped the closed-PR lookup).
        let p = s.pipeline().stages(&with("      recreate_closed: true\n"));
        let r = s.env.run_with(&s.model, &p, &[(TOKEN_ENV, "not-the-token")]).expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains(TOKEN_ENV), "{flavor:?}: {}", r["reason"]);
        assert!(
            s.model.requests().await.is_empty(),
            "{flavor:?}: the model was asked before the forge was checked"
        );
    }
}

fn header(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_and_other_403s_say_permission() {
    for flavor in BOTH {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // A secondary limit (403 + retry-after), then a primary one (remaining 0, reset):
        // both waited out, and the cycle ends ok.
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().throttle = vec![
            (403, vec![header("retry-after", "1")], "You have exceeded a secondary rate limit".into()),
            (
                403,
                vec![
                    header("x-ratelimit-remaining", "0"),
                    header("x-ratelimit-reset", &(now + 1).to_string()),
                ],
                "API rate limit exceeded".into(),
            ),
        ];
        s.run(&s.pipeline()).expect("ok", 0);
        // A limit that asks for an hour is not sat through, and says so.
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().throttle =
            vec![(429, vec![header("retry-after", "3600")], "API rate limit exceeded".into())];
        let r = s.run(&s.pipeline()).expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains("wait 3600 s"), "{flavor:?}: {}", r["reason"]);
        // A plain 403 is about permission.
        let s = Setup::new(flavor).await;
        s.forge.state.lock().unwrap().throttle =
            vec![(403, vec![], "Resource not accessible by integration.".into())];
        let r = s.run(&s.pipeline()).expect("pr_failed", 1);
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains("lacks permission") && !reason.contains(".."), "{flavor:?}: {reason}");
        assert!(s.model.requests().await.is_empty(), "{flavor:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_redirects_are_followed() {
    for flavor in BOTH {
        // A renamed repository: the API answers the old name with a redirect to the new.
        let s = Setup::new(flavor).await;
        let api = match flavor {
            Flavor::Gitea => format!("{}/api/v1/repos/{OWNER}/{NAME}", s.forge.url),
            Flavor::Github => format!("{}/repos/{OWNER}/{NAME}", s.forge.url),
        };
        s.forge.state.lock().unwrap().throttle =
            vec![(301, vec![header("location", &api)], "Moved Permanently".into())];
        s.run(&s.pipeline()).expect("ok", 0);
        assert!(
            s.forge.state.lock().unwrap().throttle.is_empty(),
            "{flavor:?}: the redirect was never answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_say_what_to_check() {
    for flavor in BOTH {
        // A token with a trailing newline names its variable.
        let s = Setup::new(flavor).await;
        let r = s
            .env
            .run_with(&s.model, &s.pipeline(), &[(TOKEN_ENV, &format!("{}\n", s.token))])
            .expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains(TOKEN_ENV), "{flavor:?}: {}", r["reason"]);
        // Nothing listening: check forge.url.
        let s = Setup::new(flavor).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = s.forge.url.clone();
        let dead = s.forge.settings(TOKEN_ENV).replace(&url, &format!("http://127.0.0.1:{port}"));
        let r = s.run(&Pipeline::default().settings(&dead)).expect("pr_failed", 1);
        assert!(r["reason"].as_str().unwrap().contains("check forge.url"), "{flavor:?}: {}", r["reason"]);
        // An update says updated, and the repository is read once per cycle.
        let s = Setup::new(flavor).await;
        s.run(&s.pipeline()).expect("ok", 0);
        s.forge.review(1, "more");
        let before = s.forge.seen().len();
        let r = s.run(&s.pipeline()).expect("ok", 0);
        assert!(
            r["reason"].as_str().unwrap().starts_with("draft PR #1 updated"),
            "{flavor:?}: {}",
            r["reason"]
        );
        let repo_reads = s.forge.seen()[before..]
            .iter()
            .filter(|q| q.method == "GET" && (q.path.ends_with(&format!("/repos/{OWNER}/{NAME}"))))
            .count();
        assert_eq!(repo_reads, 1, "{flavor:?}: the repository was read {repo_reads} times in one cycle");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_review_with_line_comments_brings_a_revision_that_sees_them() {
    for flavor in BOTH {
        let s = Setup::new(flavor).await;
        s.run(&s.pipeline()).expect("ok", 0);
        let state = if flavor == Flavor::Github { "CHANGES_REQUESTED" } else { "REQUEST_CHANGES" };
        s.forge.review_with(1, state, "", &[("greet.sh", 1, "Say hello to the moon too.")]);
        s.run(&s.pipeline()).expect("ok", 0);
        let prompt = s.model.prompts().await.pop().unwrap();
        assert!(prompt.contains("(requested changes)"), "{flavor:?}: the review is not in the prompt");
        assert!(
            prompt.contains("on greet.sh:1") && prompt.contains("Say hello to the moon too."),
            "{flavor:?}: the line comment is not in the prompt"
        );
        // Answered: without anything new, the gap waits again.
        s.run(&s.pipeline()).expect("skipped_no_gap", 0);
        assert_eq!(s.model.requests().await.len(), 2, "{flavor:?}");
    }
}
