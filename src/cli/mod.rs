//! The command line: clap definitions, dispatch, and the one place errors become exit codes.

pub(crate) mod commands;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod init;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "prbot", version, about = "An autonomous pull-request bot that runs like a CI job")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The repository to work on.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The pipeline file [default: <repo>/pipelines/default.yml].
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one cycle and print its outcome.
    Run {
        #[command(flatten)]
        target: Target,
        /// Print the cycle's JSON record instead of one line.
        #[arg(long)]
        json: bool,
        /// Skip the pr stage: stop after the tests, with the change on a local branch.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a pipeline file; exits 0 when it is valid, 2 when not.
    Validate {
        /// The pipeline file [default: pipelines/default.yml].
        file: Option<PathBuf>,
        /// The pipeline file, named as the other commands name it.
        #[arg(long = "pipeline", value_name = "FILE", conflicts_with = "file")]
        pipeline: Option<PathBuf>,
    },
    /// Show the most recent cycles.
    History {
        #[command(flatten)]
        target: Target,
        /// Only cycles on this gap.
        #[arg(long)]
        gap: Option<String>,
        /// How many cycles to show.
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Rebuild `cycles.jsonl`, `index/` and `stats.json` from the records first.
        #[arg(long)]
        reindex: bool,
    },
    /// Counts per outcome and per gap, and the share of cycles that opened a PR.
    Stats {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve webhooks, a manual trigger and an optional schedule; one worker runs the cycles.
    Serve {
        #[command(flatten)]
        target: Target,
        /// The address to listen on; port 0 picks a free one (printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Also run cycles on this cron schedule, in UTC, e.g. "17 * * * *".
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Write a starter pipeline and a CI workflow into a repository.
    Init {
        /// The repository to write into.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Which forge's workflow to write.
        #[arg(long, value_enum, default_value_t = InitForge::Gitea)]
        forge: InitForge,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Run a full cycle on a throwaway sample repository, offline, with a scripted model.
    Demo {
        /// Keep the demo in this folder instead of a new temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g. `prbot completions bash > /etc/bash_completion.d/prbot`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print prbot's man page (roff), e.g. `prbot man > /usr/local/share/man/man1/prbot.1`.
    Man,
    /// Check that a repository is ready for cycles: git, the pipeline, the PRD, the sandbox,
    /// the models, the forge, the state, the budget. Exits 0 when every required check
    /// passes, 1 otherwise.
    Doctor {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also ask each model of the ladder whether it answers (`GET /models`, else a
        /// one-token request charged to the budget).
        #[arg(long)]
        probe_models: bool,
        /// With the git state backend, also push to a scratch ref next to the state ref
        /// (and delete it) to check that the remote takes writes.
        #[arg(long)]
        write_check: bool,
    },
    /// Write one self-contained HTML page of the bot's cycles, outcomes, costs and gaps.
    Report {
        #[command(flatten)]
        target: Target,
        /// Where to write the page.
        #[arg(long, default_value = "prbot-report.html")]
        out: PathBuf,
        /// How many UTC days the charts cover, today included.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: u32,
    },
    /// Print the pipeline file's JSON Schema, e.g. `prbot schema > pipelines/prbot.schema.json`.
    Schema,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum InitForge {
    Gitea,
    Github,
}

/// What went wrong outside a cycle. A cycle's own failures are outcomes, not errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Pipeline(#[from] crate::config::PipelineError),
    #[error(transparent)]
    Repo(#[from] crate::infra::workspace::RepoError),
    #[error(transparent)]
    Records(#[from] crate::state::store::RecordError),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error(transparent)]
    Secret(#[from] crate::infra::secrets::WeakSecret),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Bad input on the command line.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The single mapping from errors to exit codes.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Pipeline(_) | CliError::Repo(_) | CliError::Secret(_) | CliError::Usage(_) => 2,
            CliError::Records(_) | CliError::Report(_) | CliError::Serve(_) | CliError::Other(_) => 1,
        }
    }
}

pub fn main() -> i32 {
    crate::infra::process::harden_self();
    crate::infra::secrets::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging();
    match crate::cli::commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(crate::infra::secrets::RedactingStderr, "error: {e}");
            e.exit_code()
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("prbot=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::infra::secrets::RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

/// A count of one or more.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("it must be 1 or more".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
