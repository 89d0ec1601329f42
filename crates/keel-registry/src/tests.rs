//! Unit tests of the prompt format, validation, rendering, hashing and diffing.

use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::*;

const ANSWER: &str = r#"
description = "Answers support questions"
[[messages]]
role = "system"
content = "You are a support agent for {{ product }}. Answer in {{ language | default('English') }}."
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
default = "French"

[params]
temperature = 0.2
max_tokens = 300
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

fn parse(text: &str) -> Result<Prompt, Vec<PromptIssue>> {
    parse_prompt("p", Path::new("prompts/p.toml"), text)
}

fn vars(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn errors_of(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.toml", text);
    check_prompts(dir.path())
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn loads_a_folder_recursively_with_slash_names() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "support/answer.toml", ANSWER);
    write(
        dir.path(),
        "summarise.toml",
        "template = \"Summarise: {{ text }}\"\n[variables.text]\ntype = \"string\"\n",
    );
    write(dir.path(), "notes.txt", "not a prompt");
    let set = load_prompts(dir.path()).unwrap();
    let names: Vec<&str> = set.prompts.keys().map(String::as_str).collect();
    assert_eq!(names, ["summarise", "support/answer"]);
    assert_eq!(set.prompts["support/answer"].name, "support/answer");
    assert!(matches!(set.prompts["summarise"].body, PromptBody::Text(_)));
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}

#[test]
fn unknown_keys_are_rejected_with_file_path_and_suggestion() {
    let errs = errors_of("templte = \"x\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("p.toml"), "{errs:?}");
    assert!(errs[0].contains("unknown field `templte`"), "{errs:?}");
    assert!(errs[0].contains("did you mean `template`?"), "{errs:?}");

    let e =
        parse("template = \"x\"\n[variables.a]\ntype = \"string\"\nrequird = true\n").unwrap_err();
    assert_eq!(e[0].path, "variables.a.requird", "{e:?}");
    let e = parse("[[messages]]\nrole = \"user\"\ncontent = \"x\"\nextra = 1\n").unwrap_err();
    assert!(e[0].path.starts_with("messages"), "{e:?}");
}

#[test]
fn bad_role_and_bad_type_are_errors() {
    let e = parse("[[messages]]\nrole = \"robot\"\ncontent = \"x\"\n").unwrap_err();
    assert!(e[0].message.contains("unknown variant `robot`"), "{e:?}");
    let e = parse("template = \"{{ a }}\"\n[variables.a]\ntype = \"strin\"\n").unwrap_err();
    assert_eq!(e[0].path, "variables.a.type");
    assert!(e[0].message.contains("strin"), "{e:?}");
}

#[test]
fn exactly_one_of_messages_and_template() {
    let both = "template = \"x\"\n[[messages]]\nrole = \"user\"\ncontent = \"y\"\n";
    assert!(parse(both).unwrap_err()[0].message.contains("both"));
    assert!(parse("description = \"d\"\n").unwrap_err()[0]
        .message
        .contains("neither"));
}

#[test]
fn template_syntax_error_names_the_message_and_line() {
    let errs = errors_of("[[messages]]\nrole = \"user\"\ncontent = \"ok\"\n[[messages]]\nrole = \"user\"\ncontent = \"line one\\n{{ broken \"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("messages[1].content: template syntax error on line 2"),
        "{errs:?}"
    );
}

#[test]
fn undeclared_variable_is_an_error_unused_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.toml", "template = \"{{ used }} {{ ghost }} {% for i in range(2) %}{{ i }}{% endfor %}\"\n[variables.used]\ntype = \"string\"\n[variables.spare]\ntype = \"string\"\n");
    let check = check_prompts(dir.path());
    assert_eq!(check.errors.len(), 1, "{:?}", check.errors);
    let e = check.errors[0].to_string();
    assert!(
        e.contains("p.toml: template: variable `ghost` is used but not declared"),
        "{e}"
    );
    assert_eq!(check.set.warnings.len(), 1);
    assert_eq!(check.set.warnings[0].path, "variables.spare");
    assert!(load_prompts(dir.path()).is_err());
}

#[test]
fn default_on_a_required_variable_or_of_the_wrong_type_is_an_error() {
    let errs =
        errors_of("template = \"{{ a }}\"\n[variables.a]\ntype = \"string\"\ndefault = \"x\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("variables.a.default: variable `a` is required"),
        "{errs:?}"
    );
    let errs = errors_of("template = \"{{ a }}\"\n[variables.a]\ntype = \"integer\"\nrequired = false\ndefault = \"x\"\n");
    assert!(
        errs[0].contains("must be an integer, got string"),
        "{errs:?}"
    );
}

#[test]
fn renders_a_chat_prompt_with_defaults() {
    let p = parse(ANSWER).unwrap();
    let msgs = p
        .render(&vars(json!({"product": "Keel", "question": "How?"})))
        .unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].role, "system");
    assert_eq!(
        msgs[0].text_content(),
        "You are a support agent for Keel. Answer in French."
    );
    assert_eq!(msgs[1].role, "user");
    assert_eq!(msgs[1].text_content(), "How?");
    let msgs = p
        .render(&vars(
            json!({"product": "Keel", "question": "How?", "language": "German"}),
        ))
        .unwrap();
    assert!(msgs[0].text_content().ends_with("Answer in German."));
}

#[test]
fn optional_variable_without_default_falls_back_to_the_template_default() {
    let p = parse("template = \"Hi {{ name | default('you') }}\"\n[variables.name]\ntype = \"string\"\nrequired = false\n").unwrap();
    let msgs = p.render(&Map::new()).unwrap();
    assert_eq!(msgs[0].role, "user");
    assert_eq!(msgs[0].text_content(), "Hi you");
}

#[test]
fn render_errors_name_the_variable_and_the_problem() {
    let p = parse(ANSWER).unwrap();
    let e = p.render(&vars(json!({"question": "q"}))).unwrap_err();
    assert_eq!(e.to_string(), "variable `product` is required (string)");
    let e = p
        .render(&vars(json!({"product": 3, "question": "q"})))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "variable `product` must be a string, got integer"
    );
    let e = p
        .render(&vars(json!({"product": "K", "question": "q", "lang": "x"})))
        .unwrap_err();
    assert!(e.to_string().starts_with("unknown variable `lang`"), "{e}");
    assert!(e.to_string().contains("language, product, question"), "{e}");

    let counted =
        parse("template = \"{{ count }}\"\n[variables.count]\ntype = \"integer\"\n").unwrap();
    let e = counted.render(&vars(json!({"count": "3"}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "variable `count` must be an integer, got string"
    );
    let e = counted.render(&vars(json!({"count": 2.5}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "variable `count` must be an integer, got number"
    );
    assert_eq!(
        counted.render(&vars(json!({"count": 3}))).unwrap()[0].text_content(),
        "3"
    );
    let num = parse("template = \"{{ x }}\"\n[variables.x]\ntype = \"number\"\n").unwrap();
    assert!(num.render(&vars(json!({"x": 3}))).is_ok());
}

#[test]
fn hash_ignores_formatting_and_key_order_but_not_content() {
    let a = parse(ANSWER).unwrap();
    let reformatted = r#"
[params]
max_tokens   = 300
temperature  = 0.2

[variables]
language = { type = "string", required = false, default = "French" }
question = { type = "string" }
product  = { type = "string", required = true }

[[messages]]
content = '''You are a support agent for {{ product }}. Answer in {{ language | default('English') }}.'''
role    = "system"

[[messages]]
content = "{{ question }}"
role = "user"

description = "Answers support questions"
"#;
    // `description` after a table belongs to it in TOML: put it first instead.
    let reformatted = format!(
        "description = \"Answers support questions\"\n{}",
        reformatted.replace("description = \"Answers support questions\"\n", "")
    );
    let b = parse(&reformatted).unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);

    let c = parse(&ANSWER.replace("temperature = 0.2", "temperature = 0.3")).unwrap();
    assert_ne!(a.content_hash(), c.content_hash());
    let d = parse(&ANSWER.replace("support agent", "support engineer")).unwrap();
    assert_ne!(a.content_hash(), d.content_hash());
}

#[test]
fn snapshot_round_trips() {
    let mut a = parse(ANSWER).unwrap();
    a.tools = Some(vec![
        json!({"type": "function", "function": {"name": "lookup_order"}}),
    ]);
    a.output_schema = Some(json!({"type": "object"}));
    let back = Prompt::from_json("p", &a.to_json()).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.content_hash(), a.content_hash());
    assert!(a.to_json().get("messages").is_some());
    assert!(Prompt::from_json("p", &json!({"nope": 1})).is_err());
}

#[test]
fn tools_and_output_schema_are_parsed() {
    let p = parse(&format!("{ANSWER}\n[[tools]]\ntype = \"function\"\nfunction = {{ name = \"lookup_order\", parameters = {{ type = \"object\" }} }}\n[output_schema]\ntype = \"object\"\n")).unwrap();
    assert_eq!(p.tools.as_ref().map(Vec::len), Some(1));
    assert_eq!(p.output_schema, Some(json!({"type": "object"})));
}

#[test]
fn diff_shows_changed_sections_only() {
    let a = parse(ANSWER).unwrap();
    assert!(diff(&a, &a).is_empty());
    let b = parse(
        &ANSWER
            .replace("support agent", "support engineer")
            .replace("max_tokens = 300", "max_tokens = 500"),
    )
    .unwrap();
    let d = diff(&a, &b);
    let sections: Vec<&str> = d.sections.iter().map(|s| s.section).collect();
    assert_eq!(sections, ["messages", "params"]);
    let text = d.to_string();
    assert!(text.contains("-You are a support agent"), "{text}");
    assert!(text.contains("+You are a support engineer"), "{text}");
    assert!(text.contains("-  \"max_tokens\": 300"), "{text}");
    assert!(text.contains("+  \"max_tokens\": 500"), "{text}");
}
