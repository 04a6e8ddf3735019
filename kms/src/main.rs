//! The `kmsd` binary; see the `kms` library for the daemon itself.

fn main() -> std::process::ExitCode {
    kms::main_entry()
}
