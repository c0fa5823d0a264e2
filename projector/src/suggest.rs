//! Suggestions for near misses in names people type: the defined resource a typo most likely
//! means, and the project name behind an owner prefix, capitals or stray spaces.

use crate::data::is_valid_project_name;
use crate::limits::RESOURCE_SUGGESTION_EDITS_MAX;

/// Levenshtein distance between `a` and `b` with ASCII case ignored, or `None` once it is
/// surely above `max` (so a long hostile name costs little).
fn edit_distance(a: &str, b: &str, max: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        if current.iter().min().is_some_and(|&m| m > max) {
            return None;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous.last().copied().filter(|&d| d <= max)
}

/// The candidate nearest to `name` within [`RESOURCE_SUGGESTION_EDITS_MAX`] edits (ties go to
/// the first in order), if any.
pub(crate) fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if let Some(d) = edit_distance(name, candidate, RESOURCE_SUGGESTION_EDITS_MAX) {
            if !best.is_some_and(|(b, _)| b <= d) {
                best = Some((d, candidate));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// What to change in an invalid project name and the exact name it gives, e.g.
/// `drop the owner prefix "conda-forge/": did you mean "numpy-feedstock"?`. `None` when the name is
/// valid or no such change makes it valid.
pub(crate) fn project_name_fix(name: &str) -> Option<String> {
    if is_valid_project_name(name) {
        return None;
    }
    let mut fixes = Vec::new();
    let trimmed = name.trim();
    if trimmed.len() != name.len() {
        fixes.push("remove the spaces around it".to_string());
    }
    let repo = match trimmed.rsplit_once('/') {
        Some((owner, repo)) => {
            fixes.push(format!("drop the owner prefix {:?}", format!("{owner}/")));
            repo
        }
        None => trimmed,
    };
    if repo.bytes().any(|b| b.is_ascii_uppercase()) {
        fixes.push("use lowercase".to_string());
    }
    let fixed = repo.to_ascii_lowercase();
    if fixes.is_empty() || !is_valid_project_name(&fixed) {
        return None;
    }
    Some(format!("{}: did you mean {fixed:?}?", fixes.join(" and ")))
}
