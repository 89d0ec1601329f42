//! The JUnit reporter: well-formed XML (checked by a tiny parser), escaped attributes,
//! right counts, the gate's rules as testcases.

use regex::Regex;

use super::tests::{regressed, N, REGRESSED};
use super::*;
use crate::gate::{check, GateRules};
use crate::runner::RunOutcome;

/// A tiny well-formedness check: tags balance, attributes are quoted and hold no `<`,
/// every `&` starts an entity, and no `<` or `>` is loose in text.
fn well_formed(xml: &str) -> Result<(), String> {
    let attr = Regex::new(r#"^\s+[A-Za-z_:][\w:.-]*="[^"<]*""#).map_err(|e| e.to_string())?;
    let name = Regex::new(r"^[A-Za-z_:][\w:.-]*").map_err(|e| e.to_string())?;
    let entity = Regex::new(r"^&(amp|lt|gt|quot|apos|#[0-9]+);").map_err(|e| e.to_string())?;
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..lt];
        if text.contains('>') {
            return Err(format!("loose `>` in {text:?}"));
        }
        for (i, _) in text.match_indices('&') {
            if !entity.is_match(&text[i..]) {
                return Err(format!("bare `&` in {text:?}"));
            }
        }
        if lt == rest.len() {
            break;
        }
        let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(closing) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == closing => continue,
                other => return Err(format!("</{closing}> closes {other:?}")),
            }
        }
        let (tag, self_closing) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let tag_name = name.find(tag).ok_or(format!("bad tag {tag:?}"))?.as_str();
        let mut attrs = &tag[tag_name.len()..];
        while let Some(m) = attr.find(attrs) {
            attrs = &attrs[m.end()..];
        }
        if !attrs.trim().is_empty() {
            return Err(format!("bad attributes in {tag:?}: {attrs:?}"));
        }
        if !self_closing {
            stack.push(tag_name.to_string());
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed {stack:?}"))
    }
}

#[test]
fn junit_is_well_formed_counts_right_and_has_the_gate() {
    let (mut o, mut cand, _) = regressed();
    o.suite = "sup\"port<&>".into();
    cand[1].case_id = "c02 \"quoted\" <&> 'x'".into();
    let xml = render_junit(&o, &cand);
    well_formed(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(
        xml.contains("name=\"keel-eval:sup&quot;port&lt;&amp;&gt;\""),
        "{xml}"
    );
    assert!(
        xml.contains("name=\"c02 &quot;quoted&quot; &lt;&amp;&gt; &apos;x&apos;\""),
        "{xml}"
    );
    assert!(xml.contains("time=\"1.250\""), "{xml}");
    let gate_failures = o.gate.failures.len();
    let failures = REGRESSED.len() + gate_failures;
    let tests = N + o.gate.checked.len();
    let counts = format!("tests=\"{tests}\" failures=\"{failures}\" errors=\"1\" skipped=\"0\"");
    assert!(
        xml.contains(&format!(
            "<testsuite name=\"keel-eval:sup&quot;port&lt;&amp;&gt;\" {counts}"
        )),
        "{xml}"
    );
    assert_eq!(xml.matches("<failure ").count(), failures);
    assert_eq!(xml.matches("<error ").count(), 1);
    assert_eq!(xml.matches("<testcase ").count(), tests);
    assert!(xml.contains("name=\"gate:min_pass_rate\""), "{xml}");
    assert!(xml.contains("pass rate 65.0% is below min_pass_rate 80.0% (by 15.0 points)"));
    assert!(
        xml.contains("name=\"gate:max_regression (pass rate)\""),
        "{xml}"
    );
}

#[test]
fn junit_skips_rules_that_need_a_baseline_and_names_repeats() {
    let (o, mut cand, _) = regressed();
    let rules = GateRules {
        max_regression: Some(0.05),
        ..GateRules::default()
    };
    let gate = check(&rules, &o.candidate.stats, None);
    cand[0].repeat_idx = 1;
    let alone = RunOutcome {
        baseline: None,
        comparison: None,
        verdict: None,
        gate,
        repeat: 2,
        ..o
    };
    let xml = render_junit(&alone, &cand);
    well_formed(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("skipped=\"1\""), "{xml}");
    assert!(
        xml.contains("<skipped message=\"not checked (no baseline)\"/>"),
        "{xml}"
    );
    assert!(
        xml.contains("name=\"c01#1\"") && xml.contains("name=\"c02#0\""),
        "{xml}"
    );
}

#[test]
fn the_checker_and_the_escaper_agree_on_what_is_well_formed() {
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    assert!(well_formed(&format!("{decl}<a><b x=\"1\"/></a>")).is_ok());
    assert!(well_formed(&format!("{decl}<a><b></a>")).is_err());
    assert!(well_formed(&format!("{decl}<a>1 & 2</a>")).is_err());
    assert!(well_formed(&format!("{decl}<a x=\"<\"></a>")).is_err());
    let nasty = "a\"b'c<d>e&f\u{1}g\nh";
    assert_eq!(
        junit::xml_escape(nasty, true),
        "a&quot;b&apos;c&lt;d&gt;e&amp;fg&#10;h"
    );
    let doc = format!(
        "{decl}<a x=\"{}\">{}</a>",
        junit::xml_escape(nasty, true),
        junit::xml_escape(nasty, false)
    );
    assert!(well_formed(&doc).is_ok(), "{doc}");
}
