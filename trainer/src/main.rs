fn main() {
    let code =
        histoscreen_edge::stdio::exit_code_of(|| histoscreen_train::run_cli(std::env::args_os()));
    std::process::exit(code);
}
