//! The in-container checker; see `runtime_spec_tests::checker`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(runtime_spec_tests::checker::main(&args));
}
