//! Unit tests of token counting and of the token delta between two prompt versions.

use std::path::Path;

use keel_core::chat::Message;
use serde_json::{json, Map, Value};

use super::*;
use crate::parse_prompt;

const ANSWER: &str = r#"
[[messages]]
role = "system"
content = "You are a support agent for {{ product }}. Answer in {{ language }}."
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
"#;

fn prompt(text: &str) -> Prompt {
    parse_prompt("support/answer", Path::new("support/answer.toml"), text).unwrap()
}

fn vars(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn models_pick_their_encoding() {
    for m in [
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "chatgpt-4o-latest",
        "gpt-4.1-nano",
        "gpt-5",
        "o1",
        "o3-mini",
        "o4-mini-2025-04-16",
        "openai/GPT-4o",
    ] {
        assert_eq!(Encoding::for_model(m), Encoding::O200kBase, "{m}");
    }
    for m in ["gpt-4", "gpt-4-turbo-2024-04-09", "gpt-3.5-turbo"] {
        assert_eq!(Encoding::for_model(m), Encoding::Cl100kBase, "{m}");
    }
    for m in [
        "claude-sonnet-4-5",
        "gemini-2.5-pro",
        "mock-1",
        "o1x",
        "llama3",
        "",
    ] {
        assert_eq!(Encoding::for_model(m), Encoding::Estimate, "{m}");
    }
    assert_eq!(Encoding::O200kBase.label(), "tiktoken o200k_base");
    assert_eq!(Encoding::Cl100kBase.label(), "tiktoken cl100k_base");
    assert_eq!(Encoding::Estimate.label(), "estimate");
    assert!(!Encoding::for_model("claude-3-5-haiku-latest").is_exact());
}

#[test]
fn known_counts_match_tiktoken() {
    // The OpenAI cookbook's examples ("How to count tokens with tiktoken").
    assert_eq!(Encoding::Cl100kBase.count_text("tiktoken is great!"), 6);
    assert_eq!(Encoding::O200kBase.count_text("tiktoken is great!"), 6);
    assert_eq!(Encoding::Cl100kBase.count_text("お誕生日おめでとう"), 9);
    assert_eq!(Encoding::O200kBase.count_text("お誕生日おめでとう"), 8);
    assert_eq!(Encoding::O200kBase.count_text(""), 0);
    // Special-token text is ordinary text, not a control token.
    assert!(Encoding::O200kBase.count_text("<|endoftext|>") > 1);
}

#[test]
fn chat_framing_matches_the_cookbook_example() {
    // The cookbook's six-message example: 129 prompt tokens on gpt-3.5/gpt-4, 124 on gpt-4o.
    let named = |name: &str, content: &str| Message {
        name: Some(name.into()),
        ..Message::text("system", content)
    };
    let messages = vec![
        Message::text("system", "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."),
        named("example_user", "New synergies will help drive top-line growth."),
        named("example_assistant", "Things working well together will increase revenue."),
        named("example_user", "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."),
        named("example_assistant", "Let's talk later when we're less busy about how to do better."),
        Message::text("user", "This late pivot means we don't have time to boil the ocean for the client deliverable."),
    ];
    assert_eq!(Encoding::Cl100kBase.count_messages(&messages), 129);
    assert_eq!(Encoding::O200kBase.count_messages(&messages), 124);
    // Empty chat: only the reply primer.
    assert_eq!(Encoding::O200kBase.count_messages(&[]), REPLY_PRIMER_TOKENS);
}

#[test]
fn the_estimate_is_labelled_and_close_to_cl100k() {
    let enc = Encoding::for_model("claude-sonnet-4-5");
    assert_eq!(enc.label(), "estimate");
    let text = "Answer in two sentences and cite the order number.";
    assert_eq!(enc.count_text(text), Encoding::Cl100kBase.count_text(text));
}

#[test]
fn a_200_token_addition_is_plus_200() {
    let old = prompt(ANSWER);
    let addition = " token".repeat(200);
    let new = prompt(&ANSWER.replace(
        "Answer in {{ language }}.",
        &format!("Answer in {{{{ language }}}}.{addition}"),
    ));
    let recorded = vec![
        vars(json!({"product": "Acme", "question": "Where is my order?"})),
        vars(json!({"product": "Acme Cloud", "question": "Can I get a refund for last month?"})),
    ];
    let pair = render_pair(&old, &new, &recorded).unwrap();
    assert_eq!(
        pair.source,
        VariableSource::Recorded {
            used: 2,
            skipped: 0
        }
    );
    assert_eq!(pair.samples(), 2);
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let d = pair.measure(enc);
        assert_eq!(d.delta(), 200.0, "{}", enc.label());
        assert!(d.old_messages > 20.0);
        assert_eq!(d.tools, None);
        let pct = d.delta_pct().unwrap();
        assert!((pct - 200.0 / d.old_messages * 100.0).abs() < 1e-9);
    }
    let est = pair.measure(Encoding::Estimate);
    assert!((est.delta() - 200.0).abs() <= 10.0, "{}", est.delta());
}

#[test]
fn recorded_inputs_that_do_not_render_are_skipped() {
    let old = prompt(ANSWER);
    let new = prompt(&format!("{ANSWER}\n[variables.tier]\ntype = \"string\"\n"));
    // `tier` is unknown to the old version and required by the new one: a recorded
    // input renders for one side only, so both are skipped.
    let recorded = vec![
        vars(json!({"product": "Acme", "question": "Hi", "tier": "gold"})),
        vars(json!({"product": "Acme", "question": "Hi"})),
    ];
    let pair = render_pair(&old, &new, &recorded).unwrap();
    assert_eq!(pair.source, VariableSource::Synthetic { skipped: 2 });
    assert!(pair.source.describe().contains("synthetic variables"));
    let none = render_pair(&old, &old, &[]).unwrap();
    assert_eq!(
        none.source.describe(),
        "no recorded inputs; synthetic variables"
    );
    assert_eq!(none.measure(Encoding::O200kBase).delta(), 0.0);
}

#[test]
fn synthetic_variables_use_defaults_then_placeholders() {
    let p = prompt(&format!(
        "{ANSWER}\n[variables.n]\ntype = \"integer\"\n[variables.tags]\ntype = \"array\"\n"
    ));
    let v = synthetic_variables(&p);
    assert_eq!(v["language"], "English");
    assert_eq!(v["product"], "x");
    assert_eq!(v["n"], 0);
    assert_eq!(v["tags"], json!([]));
    assert!(p.render(&v).is_ok());
}

#[test]
fn tools_and_schema_count_when_present() {
    let old = prompt(ANSWER);
    let new = prompt(&format!(
        "{ANSWER}\n[[tools]]\ntype = \"function\"\nfunction = {{ name = \"lookup_order\" }}\n[output_schema]\ntype = \"object\"\n"
    ));
    let d = render_pair(&old, &new, &[])
        .unwrap()
        .measure(Encoding::O200kBase);
    let (t_old, t_new) = d.tools.unwrap();
    assert_eq!(t_old, 0);
    assert!(t_new > 5);
    let (s_old, s_new) = d.output_schema.unwrap();
    assert_eq!(
        (s_old, s_new),
        (0, Encoding::O200kBase.count_text(r#"{"type":"object"}"#))
    );
    assert_eq!(d.delta(), (t_new + s_new) as f64);
}

#[test]
fn warming_picks_the_tables_the_models_are_counted_with() {
    // Estimated models (mock, Claude) are counted with cl100k_base; gpt-4o with o200k.
    assert_eq!(tables_for(["mock-model"]), vec![Encoding::Cl100kBase]);
    assert_eq!(tables_for(["gpt-4o-mini", "o3"]), vec![Encoding::O200kBase]);
    assert_eq!(
        tables_for(["gpt-4o", "claude-sonnet-4-5", "gpt-4-turbo"]),
        vec![Encoding::O200kBase, Encoding::Cl100kBase]
    );
    assert!(tables_for([]).is_empty());
    warm_encodings(["mock-model", "gpt-4o-mini"]);
    assert!(CL100K.get().is_some_and(Option::is_some));
    assert!(O200K.get().is_some_and(Option::is_some));
}

#[test]
fn model_families_match_whole_names_only() {
    assert_eq!(Encoding::for_model("o3"), Encoding::O200kBase);
    assert_eq!(
        Encoding::for_model("o3-mini-2025-01-31"),
        Encoding::O200kBase
    );
    assert_eq!(Encoding::for_model("openai/O1"), Encoding::O200kBase);
    assert_eq!(Encoding::for_model("o3x"), Encoding::Estimate);
    assert_eq!(Encoding::for_model("o1mini"), Encoding::Estimate);
}
