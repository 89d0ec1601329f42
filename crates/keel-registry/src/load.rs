//! Loading a prompts folder: every `.toml` file below it, recursively, named by its path
//! without the extension (`support/answer`), parsed and validated. All problems of all
//! files are reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::format::parse_prompt;
use crate::prompt::Prompt;
use crate::validate::validate;

/// One problem in a prompt file: the file, the key path inside it, what is wrong and,
/// where it helps, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptIssue {
    pub file: PathBuf,
    /// `messages[1].content`, `variables.product.default`, or empty for the whole file.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for PromptIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.path.is_empty() {
            write!(f, "{file}: {}", self.message)?;
        } else {
            write!(f, "{file}: {}: {}", self.path, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// A valid prompts folder: its prompts by name, and the warnings found.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    pub prompts: BTreeMap<String, Prompt>,
    /// The file each prompt came from, by name.
    pub files: BTreeMap<String, PathBuf>,
    pub warnings: Vec<PromptIssue>,
}

/// Everything found in a prompts folder, valid or not (what `keel check` prints).
#[derive(Debug, Clone, Default)]
pub struct PromptCheck {
    pub set: PromptSet,
    pub errors: Vec<PromptIssue>,
}

/// Load and validate every prompt under `dir`; the errors when there are any.
pub fn load_prompts(dir: &Path) -> Result<PromptSet, Vec<PromptIssue>> {
    let check = check_prompts(dir);
    if check.errors.is_empty() {
        Ok(check.set)
    } else {
        Err(check.errors)
    }
}

/// Load and validate every prompt under `dir`, keeping errors and warnings apart.
pub fn check_prompts(dir: &Path) -> PromptCheck {
    let mut check = PromptCheck::default();
    let mut files = Vec::new();
    if let Err(e) = collect_files(dir, &mut files) {
        check.errors.push(PromptIssue {
            file: dir.to_path_buf(),
            path: String::new(),
            message: format!("cannot read the prompts folder: {e}"),
            hint: Some("create it, or fix `prompts` in keel.toml".into()),
        });
        return check;
    }
    files.sort();
    for file in files {
        let Some(name) = prompt_name(dir, &file) else {
            continue;
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                check.errors.push(PromptIssue {
                    file: file.clone(),
                    path: String::new(),
                    message: format!("cannot read: {e}"),
                    hint: None,
                });
                continue;
            }
        };
        match parse_prompt(&name, &file, &text) {
            Ok(p) => {
                let (errors, warnings) = validate(&p, &file);
                check.errors.extend(errors);
                check.set.warnings.extend(warnings);
                check.set.files.insert(name.clone(), file);
                check.set.prompts.insert(name, p);
            }
            Err(issues) => check.errors.extend(issues),
        }
    }
    check
}

/// Parse and validate one prompt's text as if it were the file `file` of prompt `name`
/// (what the dashboard's playground checks a draft with): the prompt and its warnings,
/// or every error.
pub fn check_prompt_text(
    name: &str,
    file: &Path,
    text: &str,
) -> Result<(Prompt, Vec<PromptIssue>), Vec<PromptIssue>> {
    let p = parse_prompt(name, file, text)?;
    let (errors, warnings) = validate(&p, file);
    if errors.is_empty() {
        Ok((p, warnings))
    } else {
        Err(errors)
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// `dir/support/answer.toml` → `support/answer` (always `/`-separated).
fn prompt_name(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?.with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}
