# Shared by the bench scripts: `source "$(dirname "$0")/common.sh"`.
# Builds prbot (release) into $prbot, makes a work folder $work removed on exit, and
# offers start_model, which serves a reply file on loopback and sets $port.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
prbot="$here/target/release/prbot"
work=$(mktemp -d)
model_pid=
trap 'if [ -n "$model_pid" ]; then kill "$model_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

# start_model REPLY_FILE: an OpenAI-compatible model that always answers REPLY_FILE.
start_model() {
  python3 "$here/bench/fake_model.py" "$1" > "$work/model.log" &
  model_pid=$!
  for _ in $(seq 50); do grep -q listening "$work/model.log" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/listening on //p' "$work/model.log")
}
