//! The `grantline` binary: see `grantline --help`.

fn main() -> std::process::ExitCode {
    api::cli::main()
}
