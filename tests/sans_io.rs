//! The sans-IO core stays sans-IO: the message layer, the transaction
//! machines and the proxy core take bytes, addresses and `now` as inputs
//! and never reach for a socket, the runtime or the clock. This test reads
//! their sources (test code left out) and fails on any of those.

use std::path::{Path, PathBuf};

/// The modules that must not do I/O or read the clock.
const SANS_IO: &[&str] = &["src/sip", "src/transaction", "src/proxy", "src/wire.rs"];

/// What gives I/O or time away: the async runtime, the network and the
/// clocks. Address types come from `core::net`.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "Instant::now",
    "SystemTime::now",
    "std::fs",
    "std::thread",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The text of a source file without its test modules (which sit at the
/// end of a file, behind `#[cfg(test)]`).
fn code_of(text: &str) -> &str {
    ["#[cfg(test)]\nmod ", "#[cfg(test)]\npub(crate) mod "]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .map_or(text, |at| &text[..at])
}

#[test]
fn the_sans_io_core_reads_no_socket_runtime_or_clock() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SANS_IO {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in code_of(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!(
                        "{}:{}: {word}: {}",
                        file.strip_prefix(&root).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O or the clock in the sans-IO core:\n{}",
        found.join("\n")
    );
}
