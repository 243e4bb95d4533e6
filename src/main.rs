//! The `lagesbild` command: everything lives in `lagesbild-cli`; this file only runs it.

fn main() -> std::process::ExitCode {
    lagesbild_cli::main()
}
