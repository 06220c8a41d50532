fn main() -> std::process::ExitCode {
    aurad::cli::main()
}
