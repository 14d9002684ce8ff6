//! wordcount: counts lines, words and bytes of a text file and its most frequent words, and
//! writes the report to a file: a small tool for a mounted input file and a mounted output dir.
//!
//! Usage: `wordcount INPUT OUTPUT [TOP]`; the report is also printed.
use std::collections::HashMap;
use std::fmt::Write as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: wordcount INPUT OUTPUT [TOP]");
        std::process::exit(2);
    }
    let top: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(3);
    let text = match std::fs::read_to_string(&args[1]) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("wordcount: cannot read {}: {err}", args[1]);
            std::process::exit(1);
        }
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut words = 0;
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()) {
        words += 1;
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut report = format!("lines {}\nwords {}\nbytes {}\n", text.lines().count(), words, text.len());
    for (word, n) in ranked.iter().take(top) {
        let _ = writeln!(report, "{n} {word}");
    }
    print!("{report}");
    if let Err(err) = std::fs::write(&args[2], &report) {
        eprintln!("wordcount: cannot write {}: {err}", args[2]);
        std::process::exit(1);
    }
}
