//! The daemon as a separate process, for tests that must kill it (SIGKILL) and start it
//! again on the same data dir: exactly `aurad`'s command line.

fn main() -> std::process::ExitCode {
    aurad::cli::main()
}
