fn main() -> std::process::ExitCode {
    aura::cli::main()
}
