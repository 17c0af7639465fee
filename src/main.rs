fn main() {
    std::process::exit(prbot::main());
}
