//! A prompt written back as the TOML of its file: what the dashboard's playground puts in
//! its editor when it starts from a stored version (the store keeps a version's content
//! as JSON, not the file it was pushed from). Parsing the text gives back the same
//! content, so the same content hash.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::prompt::{MessageTemplate, Prompt, PromptBody, VariableDecl};

/// The file's keys in the order a person writes them.
#[derive(Serialize)]
struct FilePrompt<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [MessageTemplate]>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    variables: &'a BTreeMap<String, VariableDecl>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    params: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<&'a Value>,
}

impl Prompt {
    /// The prompt as the text of a prompt file. Fails only for content TOML cannot hold
    /// (a JSON `null` in params, tools or the output schema).
    pub fn to_toml(&self) -> Result<String, String> {
        let (template, messages) = match &self.body {
            PromptBody::Text(t) => (Some(t.as_str()), None),
            PromptBody::Chat(m) => (None, Some(m.as_slice())),
        };
        toml::to_string(&FilePrompt {
            description: self.description.as_deref(),
            template,
            messages,
            variables: &self.variables,
            params: &self.params,
            tools: self.tools.as_ref(),
            output_schema: self.output_schema.as_ref(),
        })
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_prompt;
    use std::path::Path;

    const CHAT: &str = r#"
description = "Answers"
[[messages]]
role = "system"
content = """You help with {{ product }}.
Be "brief"."""
[[messages]]
role = "user"
content = "{{ question }}"
[variables.product]
type = "string"
[variables.question]
type = "string"
[variables.language]
type = "string"
required = false
default = "English"
[params]
temperature = 0.2
max_tokens = 300
[output_schema]
type = "object"
"#;

    #[test]
    fn the_file_text_parses_back_to_the_same_content() {
        for text in [
            CHAT,
            "template = \"Say {{ x }}\"\n[variables.x]\ntype = \"integer\"\n",
        ] {
            let p = parse_prompt("t", Path::new("t.toml"), text).unwrap();
            let back = p.to_toml().unwrap();
            let again = parse_prompt("t", Path::new("t.toml"), &back).unwrap();
            assert_eq!(again, p, "{back}");
            assert_eq!(again.content_hash(), p.content_hash());
        }
    }
}
