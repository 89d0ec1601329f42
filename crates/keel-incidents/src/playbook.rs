//! Playbooks: what to do for each kind of incident, as Markdown. Four ship with Keel
//! (`playbooks/*.md` in the repository, compiled in): `hallucination`,
//! `prompt-injection`, `cost-runaway` and `model-regression`. A team adds its own, or
//! overrides a shipped one, with `playbooks/KIND.md` beside its keel.toml.

use std::path::Path;

/// The playbooks shipped with Keel: (kind, Markdown).
pub const SHIPPED: [(&str, &str); 4] = [
    (
        "hallucination",
        include_str!("../../../playbooks/hallucination.md"),
    ),
    (
        "prompt-injection",
        include_str!("../../../playbooks/prompt-injection.md"),
    ),
    (
        "cost-runaway",
        include_str!("../../../playbooks/cost-runaway.md"),
    ),
    (
        "model-regression",
        include_str!("../../../playbooks/model-regression.md"),
    ),
];

/// A playbook and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Playbook {
    pub kind: String,
    /// `shipped`, or the team's file.
    pub source: String,
    pub markdown: String,
}

/// The playbook of `kind`: the team's `config_dir/playbooks/KIND.md` if there is one,
/// else the shipped one.
pub fn find(config_dir: &Path, kind: &str) -> Option<Playbook> {
    let safe = !kind.is_empty()
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        let file = config_dir.join("playbooks").join(format!("{kind}.md"));
        if let Ok(markdown) = std::fs::read_to_string(&file) {
            return Some(Playbook {
                kind: kind.to_string(),
                source: file.display().to_string(),
                markdown,
            });
        }
    }
    SHIPPED
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(k, md)| Playbook {
            kind: k.to_string(),
            source: "shipped".into(),
            markdown: md.to_string(),
        })
}

/// Every kind with a playbook: shipped ones and the team's, sorted.
pub fn kinds(config_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = SHIPPED.iter().map(|(k, _)| k.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(config_dir.join("playbooks")) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    out.push(stem.to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_playbooks_have_every_section_and_a_team_file_overrides() {
        for (kind, md) in SHIPPED {
            for section in ["## Detection", "## Triage", "## Mitigate", "## Afterwards"] {
                assert!(md.contains(section), "{kind} lacks {section}");
            }
            assert!(md.contains("keel "), "{kind} names no command");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find(dir.path(), "cost-runaway").unwrap().source, "shipped");
        assert!(find(dir.path(), "../etc/passwd").is_none());
        std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
        std::fs::write(dir.path().join("playbooks/cost-runaway.md"), "# ours").unwrap();
        std::fs::write(dir.path().join("playbooks/data-leak.md"), "# leak").unwrap();
        assert_eq!(find(dir.path(), "cost-runaway").unwrap().markdown, "# ours");
        assert!(kinds(dir.path()).contains(&"data-leak".to_string()));
        assert_eq!(kinds(dir.path()).len(), 5);
    }
}
