//! `--help` for the examples: each prints its own header comment (the `//!` lines of its source).

/// With `--help` or `-h` among the arguments, prints the example's header (`source` is its file,
/// `include_str!`) and exits.
pub fn help_if_asked(source: &str) {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        for line in source.lines().take_while(|l| l.starts_with("//!")) {
            let text = line.trim_start_matches("//!");
            println!("{}", text.strip_prefix(' ').unwrap_or(text));
        }
        std::process::exit(0);
    }
}
