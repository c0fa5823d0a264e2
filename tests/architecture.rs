//! The shape of the `api` crate, checked on its sources: no import cycles between its modules.
//!
//! Data flows one way (ARCHITECTURE.md): a module may use its parent's items, but two modules
//! that are not ancestor and descendant must not use each other, directly or through others.
//! Each source file is one module; `mod x;` is an edge to the child, and every `crate::…` or
//! `super::…` path names the module of the longest prefix that is a file. (Unused pub items
//! are the `unreachable_pub` lint's job; this test only looks at the module graph.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segments: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code without comments and string literals (so doc text that mentions a path is no edge).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut in_string = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
            } else if !in_string {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// Expands the path (or use tree) starting at `text` into its paths of segments.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end > 0 {
            segments.push(rest[..end].to_string());
        }
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix("::") {
            rest = after.trim_start();
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut close = group.len();
                for (i, c) in group.char_indices() {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                let mut paths = Vec::new();
                let mut depth = 0;
                let mut start = 0;
                let inner = &group[..close];
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            paths.extend(expand(&inner[start..i]).into_iter().map(|p| [segments.clone(), p].concat()));
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                paths.extend(expand(&inner[start..]).into_iter().map(|p| [segments.clone(), p].concat()));
                return paths;
            }
            continue;
        }
        return vec![segments];
    }
}

#[test]
fn api_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let resolve = |path: &[String]| -> Option<Module> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
    };

    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        // `super` of a/b.rs (module a::b) and of a/mod.rs (module a) is the module one up.
        let parent: Module = from.iter().take(from.len().saturating_sub(1)).cloned().collect();
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for line in code.lines() {
            let trimmed = line.trim_start();
            let unqualified = match trimmed.strip_prefix("pub") {
                Some(rest) if rest.starts_with('(') => rest.split_once(')').map_or(rest, |(_, r)| r).trim_start(),
                Some(rest) => rest.trim_start(),
                None => trimmed,
            };
            let decl = unqualified.strip_prefix("mod ");
            if let Some(name) = decl.and_then(|d| d.strip_suffix(';')) {
                targets.insert([from.clone(), vec![name.trim().to_string()]].concat());
            }
        }
        for (anchor, base) in [("crate::", Module::new()), ("super::", parent.clone())] {
            for (at, _) in code.match_indices(anchor) {
                let preceded =
                    code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
                if preceded {
                    continue;
                }
                for path in expand(&code[at + anchor.len()..]) {
                    if let Some(target) = resolve(&[base.clone(), path].concat()) {
                        targets.insert(target);
                    }
                }
            }
        }
        // Using an ancestor's items (or one's own) is how Rust modules work, not a cycle.
        targets.retain(|t| !from.starts_with(t));
        edges.entry(from).or_default().extend(targets);
    }

    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            return Some(stack[i..].iter().cloned().chain([m.clone()]).collect());
        }
        if !done.insert(m.clone()) {
            return None;
        }
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let show = |m: &Module| if m.is_empty() { "crate".to_string() } else { m.join("::") };
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(show).collect();
            panic!("import cycle between api modules: {}", names.join(" -> "));
        }
    }
    // The graph is not trivially empty: the server uses the fold, the CLI uses the server.
    assert!(edges[&vec!["server".to_string(), "sequencer".to_string()]].contains(&vec!["fold".to_string()]));
    assert!(edges[&vec!["cli".to_string(), "operate".to_string()]].contains(&vec!["server".to_string()]));
}

#[test]
fn the_expander_reads_use_trees() {
    let paths = expand("a::{b, c::{d, e}, f}::g;");
    assert_eq!(paths[0], ["a", "b"]);
    assert_eq!(paths[1], ["a", "c", "d"]);
    assert_eq!(paths[2], ["a", "c", "e"]);
    assert_eq!(paths[3], ["a", "f"]);
    assert_eq!(expand("server::AppState")[0], ["server", "AppState"]);
}
