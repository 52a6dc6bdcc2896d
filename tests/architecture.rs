//! The architecture, checked: the folder dependency rule and the core-file list written in
//! `runtime/ARCHITECTURE.md` hold in the sources, the rule has no cycle, and time is read only in
//! `clock.rs`. The next import that breaks the rule fails CI here instead of growing a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn runtime() -> PathBuf {
    Path::new(ROOT).join("runtime")
}

/// Every `.rs` file under `runtime/`, as a path relative to it.
fn sources() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("runtime/ is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path.strip_prefix(base).expect("under runtime/").to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&runtime(), &runtime(), &mut out);
    out.sort();
    out
}

/// `text` without comments (line and block) and without the contents of string literals, so that
/// prose and messages never count as code.
fn code_of(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal such as '"' must not open a string; lifetimes pass through.
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => {
                i += 3;
            }
            b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < bytes.len() && bytes[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            byte => {
                out.push(byte as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level module a source file belongs to (`admin` for `admin/http.rs`, `clock` for
/// `clock.rs`), or `None` for the crate root and the binary.
fn folder_of(file: &str) -> Option<String> {
    let top = file.split('/').next()?.trim_end_matches(".rs");
    (top != "lib" && top != "main").then(|| top.to_string())
}

/// The top-level modules `code` names through `crate::`.
fn crate_uses(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The first path segment of each item at the group's own depth.
            let (mut depth, mut item_start) = (0usize, Some(0usize));
            for (index, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = Some(index + 1),
                    _ => {}
                }
                if let Some(start) = item_start.filter(|_| depth == 0 && c != ',') {
                    let name: String =
                        group[start..].trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        used.insert(name);
                    }
                    item_start = None;
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
        rest = after;
    }
    used
}

/// The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in ARCHITECTURE.md.
fn marked(name: &str) -> String {
    let doc = std::fs::read_to_string(runtime().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = doc.find(&begin).unwrap_or_else(|| panic!("{begin} in ARCHITECTURE.md")) + begin.len();
    let stop = doc[start..].find(&end).unwrap_or_else(|| panic!("{end} in ARCHITECTURE.md")) + start;
    doc[start..stop].to_string()
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The rule as written: folder -> the folders it may use, in the order the document lists them.
fn rule() -> Vec<(String, BTreeSet<String>)> {
    let mut rule = Vec::new();
    for line in marked("folder-rule").lines().map(str::trim).filter(|line| line.starts_with("- ")) {
        let (subjects, allowed) = match line.split_once(" uses ") {
            Some((subjects, allowed)) => (backticked(subjects), backticked(allowed)),
            None => (backticked(line), Vec::new()),
        };
        for subject in subjects {
            rule.push((subject, allowed.iter().cloned().collect()));
        }
    }
    rule
}

#[test]
fn every_folder_uses_only_what_the_rule_allows() {
    let rule: BTreeMap<String, BTreeSet<String>> = rule().into_iter().collect();
    let mut broken = Vec::new();
    for file in sources() {
        let Some(folder) = folder_of(&file) else { continue };
        let allowed = rule.get(&folder).unwrap_or_else(|| panic!("{folder} (from {file}) is not in the folder rule"));
        let code = code_of(&std::fs::read_to_string(runtime().join(&file)).expect("a source file"));
        for used in crate_uses(&code) {
            if used != folder && !allowed.contains(&used) {
                broken.push(format!("{file} uses {used}, which {folder} may not"));
            }
        }
    }
    assert!(broken.is_empty(), "the folder rule in runtime/ARCHITECTURE.md is broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rule_has_no_cycle_and_names_each_folder_once() {
    let rule = rule();
    let mut seen = BTreeSet::new();
    for (folder, allowed) in &rule {
        assert!(seen.insert(folder.clone()), "{folder} is listed twice");
        for used in allowed {
            assert!(seen.contains(used), "{folder} uses {used}, which is listed after it (or not at all): a cycle");
        }
    }
    // Every module of the crate is in the rule.
    for file in sources() {
        if let Some(folder) = folder_of(&file) {
            assert!(seen.contains(&folder), "{folder} is not in the folder rule");
        }
    }
}

/// Words a core file must not contain as code.
const FORBIDDEN_IN_CORE: &[&str] = &["tokio", "axum", "hyper", "quinn", "redb", "ractor", "Instant", "SystemTime"];

fn words(code: &str) -> BTreeSet<&str> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|word| !word.is_empty()).collect()
}

#[test]
fn core_files_name_no_io_and_no_time() {
    let listed = backticked(&marked("core-files"));
    assert!(listed.len() > 20, "the core-file list is read");
    let mut broken = Vec::new();
    for file in &listed {
        let text = std::fs::read_to_string(runtime().join(file)).unwrap_or_else(|_| panic!("core file {file} exists"));
        let code = code_of(&text);
        let words = words(&code);
        for word in FORBIDDEN_IN_CORE {
            if words.contains(word) {
                broken.push(format!("{file} names {word}"));
            }
        }
    }
    assert!(broken.is_empty(), "core files must do no I/O and read no time:\n{}", broken.join("\n"));
}

#[test]
fn time_is_read_only_in_the_clock_module() {
    // Reading through the clock module's own types (`Clock`, `Stopwatch`) is fine: they are the
    // clock, and they follow simulated time.
    let reads = ["Instant::now", "SystemTime", "UNIX_EPOCH"];
    let mut broken = Vec::new();
    for file in sources().into_iter().filter(|file| file != "clock.rs") {
        let text = std::fs::read_to_string(runtime().join(&file)).expect("a source file");
        for (number, line) in text.lines().enumerate() {
            // The `spin` built-in's CPU loop is user code: it may read the time, marked as such.
            if line.contains("clock-exception") {
                continue;
            }
            let code = code_of(line);
            for read in reads {
                if code.contains(read) {
                    broken.push(format!("{file}:{}: {}", number + 1, line.trim()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "time is read outside clock.rs:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_through_comments_strings_and_groups() {
    let code = code_of("use crate::{api::X, grid::{Y, Z}}; // crate::node\nlet s = \"crate::cli\"; crate::mesh::f();");
    assert_eq!(crate_uses(&code), ["api", "grid", "mesh"].into_iter().map(String::from).collect());
    assert_eq!(folder_of("admin/http.rs").as_deref(), Some("admin"));
    assert_eq!(folder_of("clock.rs").as_deref(), Some("clock"));
    assert_eq!(folder_of("lib.rs"), None);
}

/// The routes a file registers with `.route("PATH", ...)`.
fn routes_in(code_with_strings: &str) -> BTreeSet<String> {
    code_with_strings.split(".route(\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
}

#[test]
fn the_route_lists_in_the_admin_api_docs_name_every_route() {
    // Bug 6 of issue 10: the route list at the top of `admin/grid_api.rs` had fallen behind the routes.
    for file in ["admin/grid_api.rs", "admin/registry_api.rs", "admin/actors_api.rs"] {
        let text = std::fs::read_to_string(runtime().join(file)).expect("a source file");
        let docs: String = text.lines().filter(|line| line.starts_with("//!")).collect::<Vec<_>>().join("\n");
        let routes = routes_in(&text);
        assert!(!routes.is_empty(), "{file} registers routes");
        let missing: Vec<&String> = routes.iter().filter(|route| !docs.contains(route.as_str())).collect();
        assert!(missing.is_empty(), "{file}'s module docs do not name {missing:?}");
    }
}
