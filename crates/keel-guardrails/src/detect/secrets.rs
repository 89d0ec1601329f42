//! Credentials. One combined regex finds every token format in a single pass; the match is
//! then classified by its prefix and, where the format allows, validated:
//! - AWS access key ids: `AKIA`/`ASIA` + 16 upper-case alphanumerics;
//! - OpenAI keys: `sk-…`, `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…` (≥ 20 chars after `sk-`,
//!   with both letters and digits, so `sk-learn-tutorial-for-beginners` is not a key);
//! - Anthropic keys: `sk-ant-…`;
//! - GitHub tokens: `ghp_ gho_ ghu_ ghs_ ghr_` + 36 alphanumerics, `github_pat_…`;
//! - Slack tokens `xoxb- xoxp- xoxa- xoxr- xoxs-` and webhook URLs `hooks.slack.com/services/…`;
//! - PEM private-key blocks from `-----BEGIN … PRIVATE KEY-----` to the matching END line;
//! - JWTs: three base64url segments whose header decodes to a JSON object with `"alg"`;
//! - generic secrets: `api_key=`, `secret:`, `password =` … followed by a 12+ char value
//!   mixing letters and digits (only the value is reported).

use super::{byte_at, byte_before, Finding};
use crate::Kind;
use base64::Engine;
use regex::Regex;
use std::sync::LazyLock;

static TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        r"|(?:AKIA|ASIA)[A-Z0-9]{16}",
        r"|sk-[A-Za-z0-9_\-]{20,}",
        r"|gh[pousr]_[A-Za-z0-9]{36,251}",
        r"|github_pat_[A-Za-z0-9_]{22,244}",
        r"|xox[bpars]-[A-Za-z0-9\-]{10,}",
        r"|https://hooks\.slack\.com/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+",
        r"|eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    ))
    .unwrap_or_else(|e| unreachable!("static secrets regex: {e}"))
});

static ASSIGNED_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:api[_\-]?key|apikey|secret(?:[_\-]?key)?|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|password|passwd|pwd)\b["']?\s*[:=]\s*["']?([A-Za-z0-9_\-/+=.!@#$%^&*]{12,200})"#)
        .unwrap_or_else(|e| unreachable!("static generic secret regex: {e}"))
});

pub(super) fn find(text: &str, kinds: &[Kind], out: &mut Vec<Finding>) {
    let wants = |k: Kind| kinds.contains(&k);
    for m in TOKENS.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        let Some(kind) = classify(m.as_str()) else {
            continue;
        };
        if !wants(kind) {
            continue;
        }
        let is_pem = kind == Kind::PrivateKey;
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if !is_pem && (byte_before(text, start, word) || byte_at(text, end, word)) {
            continue;
        }
        out.push(Finding { kind, start, end });
    }
    if wants(Kind::GenericSecret) {
        for caps in ASSIGNED_SECRET.captures_iter(text) {
            let Some(v) = caps.get(1) else { continue };
            let value = v.as_str().trim_end_matches(['.', ',']);
            let mixed = value.bytes().any(|b| b.is_ascii_digit())
                && value.bytes().any(|b| b.is_ascii_alphabetic());
            if value.len() >= 12 && mixed {
                out.push(Finding {
                    kind: Kind::GenericSecret,
                    start: v.start(),
                    end: v.start() + value.len(),
                });
            }
        }
    }
}

fn classify(token: &str) -> Option<Kind> {
    let has_digit_and_letter = |s: &str| {
        s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic())
    };
    if token.starts_with("-----BEGIN") {
        Some(Kind::PrivateKey)
    } else if token.starts_with("AKIA") || token.starts_with("ASIA") {
        Some(Kind::AwsAccessKey)
    } else if let Some(rest) = token.strip_prefix("sk-ant-") {
        (rest.len() >= 20 && has_digit_and_letter(rest)).then_some(Kind::AnthropicKey)
    } else if let Some(rest) = token.strip_prefix("sk-") {
        (has_digit_and_letter(rest) && rest.bytes().filter(u8::is_ascii_digit).count() >= 3)
            .then_some(Kind::OpenaiKey)
    } else if token.starts_with("gh") || token.starts_with("github_pat_") {
        Some(Kind::GithubToken)
    } else if token.starts_with("xox") || token.starts_with("https://hooks.slack.com/") {
        Some(Kind::SlackToken)
    } else if token.starts_with("eyJ") {
        jwt_header_has_alg(token).then_some(Kind::Jwt)
    } else {
        None
    }
}

fn jwt_header_has_alg(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .is_ok_and(|h| h.contains_key("alg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> Vec<(Kind, &str)> {
        let mut out = Vec::new();
        find(text, Kind::SECRETS, &mut out);
        out.iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn finds_each_token_format() {
        let cases: &[(Kind, &str)] = &[
            (Kind::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE"),
            (Kind::AwsAccessKey, "ASIAY34FZKBOKMUTVV7A"),
            (
                Kind::OpenaiKey,
                "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_AbC7dE0fG",
            ),
            (
                Kind::OpenaiKey,
                "sk-T3BlbkFJ1234567890abcdefABCDEF1234567890abcd",
            ),
            (
                Kind::AnthropicKey,
                "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCbA-xyz_123",
            ),
            (
                Kind::GithubToken,
                "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            ),
            (
                Kind::GithubToken,
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            ),
            (
                Kind::SlackToken,
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            ),
            (
                Kind::SlackToken,
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            ),
            (Kind::Jwt, JWT),
        ];
        for &(kind, token) in cases {
            let text = format!("here: {token} (do not share)");
            assert_eq!(secrets(&text), [(kind, token)], "{token}");
        }
    }

    #[test]
    fn pem_block_is_one_finding() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\nabcdEFGH==\n-----END RSA PRIVATE KEY-----";
        let text = format!("key:\n{pem}\nthanks");
        assert_eq!(secrets(&text), [(Kind::PrivateKey, pem)]);
        let ossh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(secrets(ossh), [(Kind::PrivateKey, ossh)]);
        assert!(secrets("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn near_misses_are_not_secrets() {
        for t in [
            "AKIA1234",                                  // too short
            "use sk-learn-tutorial-for-beginners today", // words, no digits
            "ghp_short",
            "xoxq-1234567890-abc",
            "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxMjMifQ.abc", // header without alg
            "the task-ant-colony-simulation-2",
            "password: hunter2", // too short for generic
        ] {
            assert!(secrets(t).is_empty(), "{t}: {:?}", secrets(t));
        }
    }

    #[test]
    fn generic_assignment_reports_only_the_value() {
        let text =
            r#"config api_key = "Zq8XwP2mL9vB4nK7tR1s" and password: "S3cure-Passw0rd-2024"."#;
        let got = secrets(text);
        assert_eq!(
            got,
            [
                (Kind::GenericSecret, "Zq8XwP2mL9vB4nK7tR1s"),
                (Kind::GenericSecret, "S3cure-Passw0rd-2024")
            ]
        );
    }
}
