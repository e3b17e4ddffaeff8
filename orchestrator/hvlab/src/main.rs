//! The `hvlab` binary: parses the command line and hands off to one command per verb.

fn main() -> std::process::ExitCode {
    hvlab::run()
}
