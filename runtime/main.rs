//! The `gridkeeper` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    gridkeeper::cli::main()
}
