//! The conformance runner; see `runtime_spec_tests::runner`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(runtime_spec_tests::runner::main(&args));
}
