//! The sans-IO core stays sans-IO: the message layer, the location
//! documents, the transaction machines and the proxy core take bytes,
//! addresses and `now` as inputs and never reach for a socket, the runtime
//! or the clock. The routing phase (emergency rules, inventory) may read
//! its data files when it is built, never the network or the clock. These
//! tests read the sources (test code left out) and fail on any of those.

use std::path::{Path, PathBuf};

/// The modules that must not do I/O or read the clock.
const SANS_IO: &[&str] = &[
    "src/sip",
    "src/pidf",
    "src/lost",
    "src/transaction",
    "src/proxy",
    "src/wire.rs",
];

/// The routing phase the core calls: built from files, then pure.
const ROUTING: &[&str] = &["src/emergency", "src/inventory"];

/// What gives I/O or time away: the async runtime, the network and the
/// clocks. Address types come from `core::net`.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "Instant::now",
    "SystemTime::now",
    "OffsetDateTime::now",
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
    let found = scan(SANS_IO, FORBIDDEN);
    assert!(
        found.is_empty(),
        "I/O or the clock in the sans-IO core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_routing_phase_reads_no_socket_runtime_or_clock() {
    let allowed_at_build = ["std::fs"];
    let forbidden: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|w| !allowed_at_build.contains(w))
        .collect();
    let found = scan(ROUTING, &forbidden);
    assert!(
        found.is_empty(),
        "the network, the runtime or the clock in the routing phase:\n{}",
        found.join("\n")
    );
}

/// Every use of a `forbidden` word in the code (not the tests) of `dirs`.
fn scan(dirs: &[&str], forbidden: &[&str]) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() >= 5, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in code_of(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in forbidden {
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
    found
}
