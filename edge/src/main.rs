//! Thin binary: all behaviour lives in the library so tests can drive it in-process.

fn main() {
    let code =
        histoscreen_edge::stdio::exit_code_of(|| histoscreen_edge::run_cli(std::env::args()));
    std::process::exit(code);
}
