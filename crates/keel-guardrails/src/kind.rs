//! What a finding is: the closed set of PII and secret kinds the detectors know, with the
//! stable names used in config (`as_str`/`parse`) and the tags used in redaction placeholders.

/// What a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    IpAddress,
    AwsAccessKey,
    OpenaiKey,
    AnthropicKey,
    GithubToken,
    SlackToken,
    PrivateKey,
    Jwt,
    /// `api_key = "…"`, `password: …` style assignments with a high-entropy value.
    GenericSecret,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [Kind] = &[
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::IpAddress,
        Kind::AwsAccessKey,
        Kind::OpenaiKey,
        Kind::AnthropicKey,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::GenericSecret,
    ];

    /// The personal-data kinds (not credentials).
    pub const PII: &'static [Kind] = &[
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::IpAddress,
    ];

    /// The credential kinds.
    pub const SECRETS: &'static [Kind] = &[
        Kind::AwsAccessKey,
        Kind::OpenaiKey,
        Kind::AnthropicKey,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::GenericSecret,
    ];

    /// The snake_case name used in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::UsSsn => "us_ssn",
            Kind::IpAddress => "ip_address",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::OpenaiKey => "openai_key",
            Kind::AnthropicKey => "anthropic_key",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::GenericSecret => "generic_secret",
        }
    }

    /// The tag inside a redaction placeholder: `[EMAIL_1]`, `[CARD_2]`.
    /// OpenAI and Anthropic keys share `API_KEY` (their numbering is shared too).
    pub fn placeholder_tag(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CARD",
            Kind::Iban => "IBAN",
            Kind::UsSsn => "SSN",
            Kind::IpAddress => "IP",
            Kind::AwsAccessKey => "AWS_KEY",
            Kind::OpenaiKey | Kind::AnthropicKey => "API_KEY",
            Kind::GithubToken => "GITHUB_TOKEN",
            Kind::SlackToken => "SLACK_TOKEN",
            Kind::PrivateKey => "PRIVATE_KEY",
            Kind::Jwt => "JWT",
            Kind::GenericSecret => "SECRET",
        }
    }

    /// True for credentials, false for personal data.
    pub fn is_secret(self) -> bool {
        !Self::PII.contains(&self)
    }

    /// The inverse of [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Tie-break when two findings of the same length overlap: the higher rank wins.
    pub(crate) fn specificity(self) -> u8 {
        match self {
            Kind::PrivateKey => 14,
            Kind::AnthropicKey => 13,
            Kind::OpenaiKey => 12,
            Kind::GithubToken => 11,
            Kind::SlackToken => 10,
            Kind::AwsAccessKey => 9,
            Kind::Jwt => 8,
            Kind::CreditCard => 7,
            Kind::Iban => 6,
            Kind::UsSsn => 5,
            Kind::Email => 4,
            Kind::IpAddress => 3,
            Kind::GenericSecret => 2,
            Kind::Phone => 1,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for &k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn secrets_and_pii_partition_all() {
        for &k in Kind::ALL {
            assert_ne!(Kind::PII.contains(&k), Kind::SECRETS.contains(&k));
            assert_eq!(k.is_secret(), Kind::SECRETS.contains(&k));
        }
        assert_eq!(Kind::CreditCard.placeholder_tag(), "CARD");
        assert_eq!(Kind::AnthropicKey.placeholder_tag(), "API_KEY");
    }
}
