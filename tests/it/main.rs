//! prbot's integration tests: the built binary against real git repositories in temp
//! folders, a scripted model on loopback and fakes of the forges.

mod architecture; // the layers of src/ import one way
mod context; // what the prompt shows of the repository
mod cycles; // cycles over time: back to back, cancelled, killed
mod doctor; // prbot doctor: ready, and each broken setting
mod exactness; // the commit is exactly the approved change
mod forges; // the pr stage against Gitea and GitHub fakes
mod fuzz_corpora; // the fuzzers' corpora, replayed through their properties
mod history; // history, stats, demo
mod init_workflows; // the shipped workflows and prbot init
mod models; // the model ladder, retries, repairs, escalation, edits
mod outcomes; // each way one cycle can end
mod pipeline_file; // validation of the pipeline file
mod report; // prbot report: the page and its numbers
mod sandbox; // containment of project commands
mod serve; // prbot serve
mod speed; // what a cycle costs in processes
mod state_ref; // the git state backend
mod steps; // run: steps, secrets, the observer
mod support; // the harness and the fakes
