fn main() {
    std::process::exit(histoscreen_train::run_cli(std::env::args_os()));
}
