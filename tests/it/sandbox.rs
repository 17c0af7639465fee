//! Containment: what the code the model writes can do when the tests run it.
//!
//! A scripted model proposes a test script that attacks: it reads prbot's environment
//! through /proc, plants hooks and fsmonitor in every git directory it can name, reads
//! the checkout's stored credential, the user's home, and writes wherever it can, leaves
//! processes behind and outlives its timeout. Each attack runs under every sandbox backend
//! this machine has, and once more with `sandbox: off` as the control that shows each
//! check can fail.

use crate::support::*;
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The backends this machine can run, with a note for each one it cannot.
fn backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    let bwrap = std::process::Command::new("bwrap")
        .args(["--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if bwrap {
        out.push("bwrap");
    } else {
        eprintln!("note: bwrap is not usable here; its attack runs are skipped, landlock's run");
    }
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
    let abi =
        unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    if abi >= 1 {
        out.push("landlock");
    } else {
        eprintln!("note: this kernel has no Landlock; its attack runs are skipped, bwrap's run");
    }
    assert!(!out.is_empty(), "no sandbox backend works on this machine");
    out
}

/// A user with secrets everywhere the attack looks.
struct Victim {
    env: Env,
    id: String,
    home: PathBuf,
    outside: PathBuf,
    canaries: Vec<String>,
}

impl Victim {
    fn new() -> Victim {
        let env = Env::new();
        let id = format!("{:x}{}", std::process::id(), rand_u32());
        let home = env.tmp.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let creds = format!("https://bot:home-canary-{id}@forge.example.com\n");
        std::fs::write(home.join(".git-credentials"), &creds).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), format!("ssh-canary-{id}\n")).unwrap();
        std::fs::write(home.join(".bashrc"), "# the user's\n").unwrap();
        // A cargo home in HOME: the sandbox shows it, but never its registry token.
        std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
        std::fs::write(
            home.join(".cargo/credentials.toml"),
            format!("[registry]\ntoken = \"cargo-canary-{id}\"\n"),
        )
        .unwrap();
        // What actions/checkout leaves in .git/config.
        let header =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:xh-canary-{id}"));
        git(
            &env.repo,
            &["config", "http.https://github.com/.extraheader", &format!("AUTHORIZATION: basic {header}")],
        );
        let outside = env.tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let canaries = vec![
            MODEL_KEY.to_string(),
            format!("forge-canary-{id}"),
            format!("home-canary-{id}"),
            format!("ssh-canary-{id}"),
            format!("cargo-canary-{id}"),
            format!("xh-canary-{id}"),
            header,
        ];
        Victim { env, id, home, outside, canaries }
    }

    /// Runs one cycle with the victim's secrets in prbot's environment.
    fn run(&self, model: &Model, p: &Pipeline) -> Run {
        let mut cmd = self.env.command(model, p);
        cmd.env("HOME", &self.home).env("PRBOT_IT_FORGE", format!("forge-canary-{}", self.id));
        Run::from(cmd.output().unwrap())
    }

    fn pipeline(&self, sandbox: &str, commands: &[&str]) -> Pipeline {
        let stages = STAGES
            .replace("repair_attempts: 0", "repair_attempts: 1")
            .replace("[\"sh check.sh\"]", &serde_json::to_string(commands).unwrap());
        Pipeline::default()
            .stages(&stages)
            .settings(&format!("sandbox: {sandbox}\nforge:\n  kind: local\n  token_env: PRBOT_IT_FORGE"))
    }

    /// The attack, as a test script the model adds.
    fn attack(&self) -> String {
        let repo = self.env.repo.display();
        let home = self.home.display();
        let outside = self.outside.display();
        let work = self.env.work.display();
        let id = &self.id;
        format!(
            r#"#!/bin/sh
# 1. prbot's secrets through /proc
for f in /proc/[0-9]*/environ; do cat "$f" 2>/dev/null | tr '\0' '\n'; done
# 2. hooks and fsmonitor in every git directory in reach
for d in "$(git rev-parse --git-common-dir 2>/dev/null)" "{repo}/.git"; do
  mkdir -p "$d/hooks" 2>/dev/null
  printf '#!/bin/sh\ntouch {outside}/hook-ran-$(basename $0)\n' > "$d/hooks/post-checkout" 2>/dev/null
  chmod +x "$d/hooks/post-checkout" 2>/dev/null
  cp "$d/hooks/post-checkout" "$d/hooks/reference-transaction" 2>/dev/null
  git --git-dir="$d" config core.fsmonitor "touch {outside}/fsmonitor-ran" 2>/dev/null
done
git config core.fsmonitor "touch {outside}/fsmonitor-ran" 2>/dev/null
# 3. the checkout's stored credential
git config --get-all http.https://github.com/.extraheader 2>/dev/null
git --git-dir={repo}/.git config --get-all http.https://github.com/.extraheader 2>/dev/null
cat {repo}/.git/config 2>/dev/null
# 4. files outside the worktree
cat {home}/.git-credentials {home}/.ssh/id_ed25519 ~/.git-credentials 2>/dev/null
cat {home}/.cargo/credentials.toml "$CARGO_HOME/credentials.toml" 2>/dev/null
echo pwned >> {home}/.bashrc 2>/dev/null
echo pwned > {repo}/pwned 2>/dev/null
echo pwned > {repo}/.git/pwned 2>/dev/null
echo pwned > {outside}/written 2>/dev/null
echo pwned > /tmp/prbot-attack-{id} 2>/dev/null
git --git-dir={repo}/.git update-ref refs/heads/main HEAD~0^{{tree}} 2>/dev/null
git --git-dir={repo}/.git update-ref refs/heads/attack-{id} HEAD 2>/dev/null
git update-ref refs/heads/attack-{id} HEAD 2>/dev/null
# 5. prbot's caches beside the build cache: the next prompt is ranked from the index
echo pwned > {work}/cache/context-index 2>/dev/null
# 6. processes that outlive the cycle
setsid sh -c 'while :; do echo x >> bg-{id}.txt; sleep 0.2; done # attack-{id}' > /dev/null 2>&1 &
nohup sh -c 'sleep 600 # attack-{id}' > /dev/null 2>&1 &
echo "attack done"
exit 1
"#
        )
    }

    /// Where any canary went: prbot's output, every file of its state (records, logs,
    /// PRs), every request the model got, and every commit of the user's repository.
    async fn leaks(&self, run: &Run, model: &Model) -> Vec<String> {
        let mut places: Vec<(String, String)> =
            vec![("stdout".into(), run.stdout.clone()), ("stderr".into(), run.stderr.clone())];
        for (i, r) in model.requests().await.iter().enumerate() {
            places.push((format!("model request {i}"), String::from_utf8_lossy(&r.body).into_owned()));
        }
        for (path, text) in text_files(&self.env.state()) {
            places.push((path, text));
        }
        places.push(("commits".into(), git(&self.env.repo, &["log", "--all", "-p", "--format=%B"])));
        let mut found = Vec::new();
        for (what, text) in &places {
            for c in &self.canaries {
                if text.contains(c.as_str()) {
                    found.push(format!("{c} in {what}"));
                }
            }
        }
        found
    }

    /// Every effect outside prbot's clone, cache and private folders.
    fn escapes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.outside).unwrap().flatten() {
            out.push(format!("wrote {}", entry.path().display()));
        }
        if std::fs::read_to_string(self.home.join(".bashrc")).unwrap() != "# the user's\n" {
            out.push("changed ~/.bashrc".into());
        }
        for p in [self.env.repo.join("pwned"), self.env.repo.join(".git/pwned")] {
            if p.exists() {
                out.push(format!("wrote {}", p.display()));
            }
        }
        if Path::new(&format!("/tmp/prbot-attack-{}", self.id)).exists() {
            out.push("wrote /tmp".into());
        }
        let hooks = self.env.repo.join(".git/hooks");
        if std::fs::read_dir(&hooks)
            .is_ok_and(|d| d.flatten().any(|e| !e.file_name().to_string_lossy().ends_with(".sample")))
        {
            out.push("planted a hook in the user's .git".into());
        }
        if git_config(&self.env.repo, "core.fsmonitor").is_some() {
            out.push("set core.fsmonitor in the user's .git/config".into());
        }
        if std::fs::read(self.env.work.join("cache/context-index")).is_ok_and(|b| b.starts_with(b"pwned")) {
            out.push("wrote prbot's context index".into());
        }
        if !procs_with(&format!("attack-{}", self.id)).is_empty() {
            out.push("left processes running".into());
        }
        out
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_file(format!("/tmp/prbot-attack-{}", self.id));
        for pid in procs_with(&format!("attack-{}", self.id)) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").args(args).current_dir(repo).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_config(repo: &Path, key: &str) -> Option<String> {
    let out =
        std::process::Command::new("git").args(["config", "--get", key]).current_dir(repo).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

/// The user's files, and the parts of their `.git` that prbot must never change.
fn user_state(env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = env.snapshot().into_iter().collect();
    let git = env.repo.join(".git");
    for name in ["config", "HEAD", "index", "description"] {
        out.push((name.into(), std::fs::read(git.join(name)).unwrap_or_default()));
    }
    let refs = git_out(&env.repo, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let users: Vec<&str> = refs.lines().filter(|l| !l.starts_with("refs/heads/prbot/")).collect();
    out.push(("refs".into(), users.join("\n").into_bytes()));
    for dir in ["hooks", "info"] {
        for (path, text) in text_files(&git.join(dir)) {
            out.push((path, text.into_bytes()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_test_code_reaches_nothing_under_any_backend() {
    for backend in backends() {
        let v = Victim::new();
        let model = Model::proposing(&[("tests/attack.sh", true, &v.attack())]).await;
        let p = v.pipeline(backend, &["sh tests/attack.sh"]);
        let before = user_state(&v.env);
        for cycle in 0..2 {
            let run = v.run(&model, &p);
            let r = run.expect("tests_failed", 0);
            assert_eq!(r["sandbox"], backend, "{backend}");
            assert_eq!(r["tests"][0]["sandbox"]["backend"], backend);
            assert_eq!(r["tests"][0]["sandbox"]["network"], false);
            let log = std::fs::read_to_string(r["tests"][0]["log"].as_str().unwrap()).unwrap();
            assert!(log.contains("attack done"), "{backend}: the attack did not run:\n{log}");
            let leaks = v.leaks(&run, &model).await;
            assert!(leaks.is_empty(), "{backend}, cycle {cycle}: {leaks:#?}");
            let escapes = v.escapes();
            assert!(escapes.is_empty(), "{backend}, cycle {cycle}: {escapes:#?}");
        }
        // The repair prompt went to the model: the attack's output was in it, and no secret.
        assert_eq!(model.requests().await.len(), 4, "{backend}: first and repair prompt, twice");
        assert_eq!(user_state(&v.env), before, "{backend}: the user's tree or .git changed");
        v.cleanup();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn control_the_same_attack_without_a_sandbox_is_caught_by_the_checks() {
    let v = Victim::new();
    let model = Model::proposing(&[("tests/attack.sh", true, &v.attack())]).await;
    let before = user_state(&v.env);
    let run = v.run(&model, &v.pipeline("off", &["sh tests/attack.sh"]));
    let r = run.expect("tests_failed", 0);
    assert_eq!(r["sandbox"], "off");
    assert_eq!(r["tests"][0]["sandbox"]["backend"], "off");
    assert!(r["warnings"].to_string().contains("sandbox: off"), "{}", r["warnings"]);
    assert!(run.stderr.contains("sandbox: off"), "no warning in the log:\n{}", run.stderr);
    let leaks = v.leaks(&run, &model).await;
    assert!(leaks.iter().any(|l| l.contains("home-canary")), "the leak checks found nothing: {leaks:#?}");
    let escapes = v.escapes();
    assert!(
        leaks.iter().any(|l| l.contains("cargo-canary")),
        "the cargo token check found nothing: {leaks:#?}"
    );
    for needle in ["outside/written", "~/.bashrc", "/tmp", "a hook in the user's .git", "context index"] {
        assert!(
            escapes.iter().any(|e| e.contains(needle)),
            "the escape checks missed {needle}: {escapes:#?}"
        );
    }
    let refs = |state: Vec<(String, Vec<u8>)>| state.into_iter().find(|(k, _)| k == "refs").unwrap().1;
    assert_ne!(refs(user_state(&v.env)), refs(before), "the refs check missed the planted branch");
    v.cleanup();
}

#[tokio::test(flavor = "multi_thread")]
async fn git_in_a_test_reads_history_but_cannot_write_the_clone() {
    for backend in backends() {
        let env = Env::new();
        let model = Model::good().await;
        let script = "git log --oneline | grep -q initial && ! git commit --allow-empty -qm x 2>/dev/null && ! touch \"$(git rev-parse --git-dir)/x\" 2>/dev/null";
        let p = Pipeline::default().tests(&[script]).settings(&format!("sandbox: {backend}"));
        let r = env.run(&model, &p).expect("ok", 0);
        assert_eq!(r["tests"][0]["passed"], true, "{backend}: {}", r["tests"][0]["excerpt"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tests_keep_their_own_loopback_and_may_be_given_the_network() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // Serving and connecting on loopback inside the sandbox works; the host's port does not.
    let own = "python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); c=socket.create_connection(s.getsockname()); print('own loopback ok')\"";
    let host =
        format!("python3 -c \"import socket; socket.create_connection(('127.0.0.1',{port}), timeout=3)\"");
    for backend in backends() {
        let env = Env::new();
        let model = Model::good().await;
        let p = Pipeline::default()
            .tests(&[own, &format!("! {host} 2>/dev/null")])
            .settings(&format!("sandbox: {backend}"));
        let r = env.run(&model, &p).expect("ok", 0);
        assert_eq!(r["tests"][1]["sandbox"]["network"], false);
        if backend == "bwrap" {
            // With the network allowed, the host's port answers.
            let stages = STAGES.replace(
                "commands: [\"sh check.sh\"]",
                &format!("commands: [{}]\n      network: true", serde_json::to_string(&host).unwrap()),
            );
            let p = Pipeline::default().stages(&stages).settings("sandbox: bwrap");
            env.review("again, with the network");
            let r = env.run(&model, &p).expect("ok", 0);
            assert_eq!(r["tests"][0]["sandbox"]["network"], true);
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_child_neither_outlives_the_timeout_nor_stalls_on_the_pipe() {
    for backend in backends() {
        let env = Env::new();
        let model = Model::good().await;
        let id = format!("{}{}", std::process::id(), rand_u32());
        // Holds the output pipe from a session of its own, and ignores SIGTERM.
        let hang = format!("setsid sh -c 'trap \"\" TERM; sleep 900 # hang-{id}' & sleep 901 # hang-{id}");
        let stages = STAGES.replace(
            "commands: [\"sh check.sh\"]",
            &format!("commands: [{}]\n    timeout: 2s", serde_json::to_string(&hang).unwrap()),
        );
        let p = Pipeline::default().stages(&stages).settings(&format!("sandbox: {backend}"));
        let t = Instant::now();
        let r = env.run(&model, &p).expect("tests_failed", 0);
        assert_eq!(r["tests"][0]["timed_out"], true);
        assert!(t.elapsed() < Duration::from_secs(30), "{backend}: took {:?}", t.elapsed());
        assert!(procs_with(&format!("hang-{id}")).is_empty(), "{backend}: the setsid child survived");

        // A command that exits at once but leaves a child holding its output.
        let leave = format!("setsid sh -c 'sleep 902 # leave-{id}' & echo started");
        let t = Instant::now();
        env.run(&model, &Pipeline::default().tests(&[&leave]).settings(&format!("sandbox: {backend}")))
            .expect("ok", 0);
        assert!(t.elapsed() < Duration::from_secs(30), "{backend}: stalled {:?}", t.elapsed());
        assert!(procs_with(&format!("leave-{id}")).is_empty(), "{backend}: the background child survived");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_sigkilled_cycle_left_running_is_ended_by_the_next() {
    for backend in backends() {
        let env = Env::new();
        let model = Model::good().await;
        let id = format!("{}{}", std::process::id(), rand_u32());
        let started = env.marker("started");
        let test = format!(
            "setsid sh -c 'while :; do date >> bg-{id}.txt; sleep 0.1; done # orphan-{id}' & touch {}; sleep 903",
            started.display()
        );
        let p = Pipeline::default().tests(&[&test]).settings(&format!("sandbox: {backend}"));
        let mut child = env.spawn_until(&model, &p, &started);
        child.kill().unwrap();
        child.wait().unwrap();
        env.run(&model, &Pipeline::default().without_pr().settings(&format!("sandbox: {backend}")))
            .expect("dry_run", 0);
        assert!(
            procs_with(&format!("orphan-{id}")).is_empty(),
            "{backend}: the killed cycle's process lives on"
        );
        let leftover = env.marker(&format!("bg-{id}.txt"));
        assert!(!leftover.exists(), "{backend}: something still writes into the worktree");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_usable_backend_stops_before_any_model_call() {
    let env = Env::new();
    let model = Model::good().await;
    // bwrap asked for, on a host where it cannot make namespaces (as in many containers).
    let bin = env.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("bwrap");
    std::fs::write(&fake, "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
        .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = env.command(&model, &Pipeline::default().settings("sandbox: bwrap"));
    cmd.env("PATH", &path);
    let r = Run::from(cmd.output().unwrap()).expect("sandbox_unavailable", 1);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("bubblewrap") && reason.contains("sandbox: auto"), "{reason}");
    assert!(reason.contains("Permission denied"), "bwrap's own words are missing: {reason}");
    assert!(model.requests().await.is_empty(), "the model was called");
    // A pipeline that runs no project code needs no sandbox.
    let stages = STAGES.replace("  - uses: test\n    with:\n      commands: [\"sh check.sh\"]\n", "");
    let mut cmd = env.command(&model, &Pipeline::default().stages(&stages).settings("sandbox: bwrap"));
    cmd.env("PATH", &path);
    Run::from(cmd.output().unwrap()).expect("ok", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_sandbox_setting_is_a_validation_error() {
    let env = Env::new();
    let model = Model::good().await;
    for (setting, message) in [
        ("sandbox: docker", "use one of auto, bwrap, landlock, off"),
        ("sandbox:\n  backend: bwrap\n  read_only: [relative/dir]", "must be an absolute path"),
        ("sandbox:\n  backends: bwrap", "unknown field"),
    ] {
        let run = env.run(&model, &Pipeline::default().settings(setting));
        assert_eq!(run.code, 2, "{setting}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{setting}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_output_is_logged_without_holding_it_in_memory() {
    let env = Env::new();
    let model = Model::good().await;
    let flood = "yes 'a line of test output that goes on and on' | head -c 500000000; echo 'FAIL: the flood test'; exit 1";
    let pipeline = env.write_pipeline(&model, &Pipeline::default().tests(&[flood]));
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", "--json", "--repo"]).arg(&env.repo).arg("--pipeline").arg(&pipeline);
    cmd.env(MODEL_KEY_ENV, MODEL_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    // VmHWM is the process's own peak since exec (rusage would also count the test
    // process, which the spawn briefly shares memory with).
    let mut peak_kb = 0u64;
    while child.try_wait().unwrap().is_none() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kb) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            peak_kb = peak_kb.max(kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let peak_mb = peak_kb / 1024;
    assert!(peak_kb > 0, "no memory reading was taken");
    let r: Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(r["outcome"], "tests_failed");
    assert!(peak_mb < 50, "prbot peaked at {peak_mb} MB");
    let excerpt = r["tests"][0]["excerpt"].as_str().unwrap();
    assert!(excerpt.contains("FAIL: the flood test"), "{excerpt}");
    let log = r["tests"][0]["log"].as_str().unwrap();
    let size = std::fs::metadata(log).unwrap().len();
    assert!(size > 100_000_000, "the log holds {size} bytes");
    let tail = std::fs::read(log).unwrap();
    assert!(String::from_utf8_lossy(&tail[tail.len() - 200..]).contains("FAIL: the flood test"));
}

/// A small crate with a dependency from crates.io.
const LIB: &str = "pub fn add(a: i32, b: i32) -> String { itoa::Buffer::new().format(a + b).to_string() }\n\n#[test]\nfn adds() { assert_eq!(add(2, 2), \"4\"); }\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_real_cargo_test_runs_in_the_sandbox_offline() {
    if std::process::Command::new("cargo").arg("--version").output().is_err() {
        panic!("cargo is not on PATH");
    }
    for backend in backends() {
        let env = Env::new();
        env.write(
            "Cargo.toml",
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\n",
        );
        env.write("src/lib.rs", LIB);
        env.commit("a crate");
        let model =
            Model::proposing(&[("src/lib.rs", false, &LIB.replace("(2, 2), \"4\"", "(2, 3), \"5\""))]).await;
        let p = Pipeline::default().tests(&["cargo test --offline"]).settings(&format!("sandbox: {backend}"));
        let r = env.run(&model, &p).expect("ok", 0);
        let log = std::fs::read_to_string(r["tests"][0]["log"].as_str().unwrap()).unwrap();
        assert!(log.contains("test adds ... ok"), "{backend}:\n{log}");
        // The build cache is prbot's, outside the tree.
        assert!(env.work.join("cache/cargo-target/debug").is_dir());
    }
}

/// A registry that is down is no failed attempt at the gap, and no repair is asked for
/// it; a crate the registry does not have is both, and so is a change to the manifest
/// while the registry is down (a dependency on a host that does not resolve would look
/// the same). Nor can the change make its failure an outage through the tree's
/// `.cargo/config.toml`: `cargo fetch` never reads it.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_is_down_is_an_outage_and_no_repair_is_asked() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let backend = backends()[0];
    let nowhere = "[source.crates-io]\nreplace-with = \"nowhere\"\n\n[source.nowhere]\nregistry = \"sparse+http://127.0.0.1:1/\"\n";
    for (down, touches_manifest, redirects) in
        [(true, false, false), (false, false, false), (true, true, false), (false, false, true)]
    {
        // A sparse registry, as crates.io serves it: `config.json`, then one file per crate.
        let registry = MockServer::start().await;
        if down {
            Mock::given(wiremock::matchers::any())
                .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
                .mount(&registry)
                .await;
        } else {
            let config = serde_json::json!({ "dl": format!("{}/api/v1/crates", registry.uri()) });
            Mock::given(path("/config.json"))
                .respond_with(ResponseTemplate::new(200).set_body_json(config))
                .mount(&registry)
                .await;
            Mock::given(wiremock::matchers::any())
                .respond_with(ResponseTemplate::new(404))
                .mount(&registry)
                .await;
        }
        let env = Env::new();
        let cargo_home = env.tmp.path().join("cargo-home");
        std::fs::create_dir_all(&cargo_home).unwrap();
        std::fs::write(
            cargo_home.join("config.toml"),
            format!(
                "[source.crates-io]\nreplace-with = \"mirror\"\n\n[source.mirror]\nregistry = \"sparse+{}/\"\n",
                registry.uri()
            ),
        )
        .unwrap();
        env.write(
            "Cargo.toml",
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\n",
        );
        env.write("src/lib.rs", LIB);
        env.commit("a crate");
        let lib = LIB.replace("(2, 2), \"4\"", "(2, 3), \"5\"");
        let manifest =
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\nryu = \"1\"\n";
        let mut files = vec![("src/lib.rs", false, lib.as_str())];
        if touches_manifest {
            files.push(("Cargo.toml", false, manifest));
        }
        if redirects {
            files.push((".cargo/config.toml", true, nowhere));
        }
        let model = Model::proposing(&files).await;
        let stages = STAGES
            .replace("[\"sh check.sh\"]", "[\"cargo test --offline\"]")
            .replace("repair_attempts: 0", "repair_attempts: 1");
        let p = Pipeline::default().stages(&stages).settings(&format!("sandbox: {backend}"));
        let home = cargo_home.to_str().unwrap();
        let r = env
            .run_with(&model, &p, &[("CARGO_HOME", home), ("CARGO_NET_RETRY", "0")])
            .expect("tests_failed", 0);
        let calls = model.requests().await.len();
        if down && !touches_manifest {
            assert_eq!(r["outage"], true, "{r:#}");
            assert_reason(&r, "after `cargo fetch` could not reach the registry");
            assert_reason(&r, "got 503");
            assert!(!r["reason"].as_str().unwrap().contains("upstream unavailable"), "{r:#}");
            assert_eq!(calls, 1, "a repair was asked for a registry that is down");
        } else {
            assert!(r.get("outage").is_none_or(|o| o == false), "{r:#}");
            assert!(!r["reason"].as_str().unwrap().contains("could not reach"), "{r:#}");
            assert_eq!(calls, 2, "the model was not asked to repair its change");
        }
        assert!(r["warnings"].to_string().contains("`cargo fetch` failed"), "{r:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prbot_never_runs_the_users_hooks_or_fsmonitor() {
    let env = Env::new();
    let model = Model::good().await;
    let ran = env.tmp.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let hooks = env.repo.join(".git/hooks");
    for hook in [
        "reference-transaction",
        "post-checkout",
        "pre-commit",
        "post-commit",
        "pre-push",
        "post-index-change",
    ] {
        let path = hooks.join(hook);
        std::fs::write(&path, format!("#!/bin/sh\nenv > {}/{hook}\n", ran.display())).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    git(&env.repo, &["config", "core.fsmonitor", &format!("env > {}/fsmonitor; true", ran.display())]);
    // The hooks are live for the user's own git.
    git(&env.repo, &["-c", "core.fsmonitor=false", "update-ref", "refs/heads/probe", "HEAD"]);
    assert!(ran.join("reference-transaction").exists(), "the control hook did not run");
    std::fs::remove_file(ran.join("reference-transaction")).unwrap();
    git(
        &env.repo,
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "update-ref",
            "-d",
            "refs/heads/probe",
        ],
    );

    env.run(&model, &Pipeline::default()).expect("ok", 0);
    env.run(&model, &Pipeline::default().without_pr().settings("sandbox: off")).expect("dry_run", 0);
    let leftovers: Vec<String> = std::fs::read_dir(&ran)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(leftovers.is_empty(), "prbot ran the user's {leftovers:?}");
}
