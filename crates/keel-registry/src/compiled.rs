//! A prompt compiled once for serving. [`Prompt::render`] parses its templates on every
//! call, which is right for `keel check` and the CLI; the gateway renders the same few
//! prompt versions thousands of times a second, so it keeps each version's templates
//! parsed in a MiniJinja environment and only evaluates them per request.

use keel_core::chat::Message;
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::prompt::{Prompt, PromptBody, Role};
use crate::render::RenderError;
use crate::validate::{
    environment, environment_with_fuel, render_message, templates, OUT_OF_FUEL, QUICK_FUEL,
};

/// A prompt whose templates are parsed and ready to render.
pub struct CompiledPrompt {
    prompt: Prompt,
    /// With [`crate::RENDER_FUEL`]: any prompt, on a thread that may block.
    env: Environment<'static>,
    /// With [`QUICK_FUEL`]: ordinary prompts, on an async worker.
    quick: Environment<'static>,
    /// Template name (its key path) and the role of the message it renders.
    parts: Vec<(String, Role)>,
}

impl std::fmt::Debug for CompiledPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPrompt")
            .field("name", &self.prompt.name)
            .finish_non_exhaustive()
    }
}

impl CompiledPrompt {
    /// Parse every template of `prompt`; a syntax error names its key path.
    pub fn new(prompt: Prompt) -> Result<CompiledPrompt, RenderError> {
        let mut env = environment();
        let mut quick = environment_with_fuel(QUICK_FUEL);
        let roles: Vec<Role> = match &prompt.body {
            PromptBody::Chat(msgs) => msgs.iter().map(|m| m.role).collect(),
            PromptBody::Text(_) => vec![Role::User],
        };
        let mut parts = Vec::with_capacity(roles.len());
        for ((path, source), role) in templates(&prompt).into_iter().zip(roles) {
            let fail = |e: minijinja::Error| RenderError::Template {
                path: path.clone(),
                message: render_message(&e),
            };
            env.add_template_owned(path.clone(), source.to_string())
                .map_err(fail)?;
            quick
                .add_template_owned(path.clone(), source.to_string())
                .map_err(fail)?;
            parts.push((path, role));
        }
        Ok(CompiledPrompt {
            prompt,
            env,
            quick,
            parts,
        })
    }

    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// Render with `vars` (checked against the declarations first), in message order,
    /// with up to [`crate::RENDER_FUEL`] template steps. May take a while: not on an async worker.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Vec<Message>, RenderError> {
        self.render_in(&self.env, vars)
    }

    /// Render with at most [`QUICK_FUEL`] steps (cheap enough for an async worker);
    /// `Ok(None)` when the prompt needs more: render it with [`Self::render`] on a
    /// blocking thread.
    pub fn render_quick(
        &self,
        vars: &Map<String, Value>,
    ) -> Result<Option<Vec<Message>>, RenderError> {
        match self.render_in(&self.quick, vars) {
            Err(RenderError::Template { message, .. }) if message == OUT_OF_FUEL => Ok(None),
            other => other.map(Some),
        }
    }

    fn render_in(
        &self,
        env: &Environment<'static>,
        vars: &Map<String, Value>,
    ) -> Result<Vec<Message>, RenderError> {
        let ctx = self.prompt.context(vars)?;
        let mut out = Vec::with_capacity(self.parts.len());
        for (path, role) in &self.parts {
            let fail = |e: minijinja::Error| RenderError::Template {
                path: path.clone(),
                message: render_message(&e),
            };
            let text = env
                .get_template(path)
                .map_err(fail)?
                .render(&ctx)
                .map_err(fail)?;
            out.push(Message::text(role.as_str(), text));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_prompt;
    use serde_json::json;
    use std::path::Path;

    fn prompt(text: &str) -> Prompt {
        parse_prompt("t", Path::new("t.toml"), text).unwrap()
    }

    const CHAT: &str = r#"
[[messages]]
role = "system"
content = "You help with {{ product }}."
[[messages]]
role = "user"
content = "{{ question }}"
[variables.product]
type = "string"
[variables.question]
type = "string"
"#;

    #[test]
    fn renders_like_the_uncompiled_prompt() {
        let p = prompt(CHAT);
        let vars = json!({"product": "Keel", "question": "How?"});
        let vars = vars.as_object().unwrap();
        let compiled = CompiledPrompt::new(p.clone()).unwrap();
        assert_eq!(compiled.render(vars).unwrap(), p.render(vars).unwrap());
        let msgs = compiled.render(vars).unwrap();
        assert_eq!(msgs[0].role, "system");
        assert_eq!(msgs[0].text_content(), "You help with Keel.");
        assert_eq!(msgs[1].text_content(), "How?");
    }

    #[test]
    fn a_template_that_loops_without_end_runs_out_of_fuel_with_a_clear_error() {
        let p = prompt(
            r#"template = "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}""#,
        );
        let compiled = CompiledPrompt::new(p.clone()).unwrap();
        let none = Map::new();
        let started = std::time::Instant::now();
        // Too much for an async worker: the caller renders it on a blocking thread …
        assert_eq!(compiled.render_quick(&none).unwrap(), None);
        // … where it stops at the fuel limit, naming the template.
        let err = compiled.render(&none).unwrap_err().to_string();
        assert!(
            err.contains("template") && err.contains("fuel limit"),
            "{err}"
        );
        assert_eq!(p.render(&none).unwrap_err().to_string(), err);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        // An ordinary loop renders on the quick path.
        let small = CompiledPrompt::new(prompt(
            r#"template = "{% for i in range(100) %}{{ i }}{% endfor %}""#,
        ))
        .unwrap();
        assert!(small.render_quick(&none).unwrap().is_some());
    }

    #[test]
    fn variable_errors_name_the_variable() {
        let compiled = CompiledPrompt::new(prompt(CHAT)).unwrap();
        let err = compiled
            .render(json!({"product": "Keel"}).as_object().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("`question`"), "{err}");
        let err = compiled
            .render(json!({"product": 3, "question": "q"}).as_object().unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("`product` must be a string"),
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_template() {
        let mut p = prompt(CHAT);
        p.body = PromptBody::Text("{{ product ".into());
        let err = CompiledPrompt::new(p).unwrap_err();
        assert!(err.to_string().contains("template"), "{err}");
    }
}
