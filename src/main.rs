//! The `smelt` binary (also run as `executor`): parse flags, call the
//! library, exit with its code. Nothing else lives here.

fn main() {
    std::process::exit(smelt::cli::run(&std::env::args_os().collect::<Vec<_>>()));
}
