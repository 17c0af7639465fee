fn main() {
    std::process::exit(prbot::cli::main());
}
