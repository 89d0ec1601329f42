//! Which variant of a function a request gets: the traffic split.
//!
//! A function's variants share its traffic by weight. This step picks one, in order:
//! the `x-keel-variant` override (for testing; any variant, even one of weight 0), else
//! the caller's sticky key (`x-keel-user` or `x-keel-session`, per the function's
//! `sticky`), else a random draw supplied by the caller. It is a pure function, so the
//! split is testable without a server and costs no I/O on the hot path.
//!
//! # The stable contract
//!
//! A sticky key is mapped to one of [`BUCKETS`] (10,000) buckets by
//! `u64::from_be_bytes(sha256("{function}\0{key}")[..8]) % 10_000`, and the buckets are
//! dealt to the variants in config order in proportion to their weights: with cumulative
//! weights `c1 < c2 < … ≤ total`, variant *i* owns buckets
//! `floor(c(i-1) · 10000 / total) .. floor(ci · 10000 / total)`. Nothing else goes into
//! the hash (no seed, no process state, no Keel version), so:
//!
//! - the same user gets the same variant across requests, restarts and replicas, and
//!   across Keel versions (a change to this mapping breaks the golden test below and
//!   must be announced as a breaking change);
//! - changing the weights moves only the users whose bucket lies in a range that changed
//!   owner: 90/10 → 80/20 moves buckets 8000..9000 from `control` to `candidate`, and
//!   everyone else stays put. Scaling every weight (90/10 → 9/1) changes nothing, because
//!   the buckets are fixed and only the proportions matter. Reordering or inserting
//!   variants in the middle reshuffles users — add new variants at the end;
//! - the function name is part of the hash, so one user's buckets in two functions are
//!   independent.
//!
//! A split override (`keel function canary`, loaded into the registry snapshot) replaces
//! the configured weights with its own, in basis points summing to 10,000, dealt to the
//! buckets the same way ([`choose_variant_split`]).

use keel_core::config::{FunctionConfig, Sticky, VariantConfig};
use sha2::{Digest, Sha256};

/// The variant chosen for one request, and why.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub variant: &'a VariantConfig,
    pub reason: AssignmentReason,
}

/// Why a variant was chosen (recorded on the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentReason {
    /// The `x-keel-variant` header named it.
    Override,
    /// The caller's sticky key hashed to it.
    Sticky,
    /// No sticky key (or `sticky = "none"`): a random draw.
    Random,
}

impl AssignmentReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentReason::Override => "override",
            AssignmentReason::Sticky => "sticky",
            AssignmentReason::Random => "random",
        }
    }
}

/// Why no variant could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    /// The override header named a variant the function does not have (a client error).
    #[error(
        "function `{function}` has no variant `{variant}` (from the x-keel-variant header); its variants are: {}",
        known.join(", ")
    )]
    UnknownVariant {
        function: String,
        variant: String,
        known: Vec<String>,
    },
    /// Every weight is 0. Validated config never gets here; kept so a hand-built
    /// `FunctionConfig` cannot cause a division by zero.
    #[error("function `{function}` has no variant with a weight above 0; name one in the x-keel-variant header")]
    NoWeight { function: String },
}

/// How many buckets the sticky hash is reduced to (part of the stable contract).
pub const BUCKETS: u64 = 10_000;

/// The sticky bucket source: the first 8 bytes of SHA-256 of `"{function}\0{key}"`, read
/// as a big-endian `u64`. Part of the stable contract described in the module docs.
pub fn sticky_hash(function: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(function.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Pick the variant for one request to function `f`, by its configured weights.
///
/// `override_variant` is the `x-keel-variant` header, `user` and `session` the
/// `x-keel-user` and `x-keel-session` headers (an empty value counts as absent), and
/// `fallback_random` any random `u64`, used only when there is no sticky key.
pub fn choose_variant<'a>(
    f: &'a FunctionConfig,
    override_variant: Option<&str>,
    user: Option<&str>,
    session: Option<&str>,
    fallback_random: u64,
) -> Result<Assignment<'a>, VariantError> {
    choose_variant_split(f, None, override_variant, user, session, fallback_random)
}

/// [`choose_variant`] with the weights of a split override (`keel function canary`):
/// one weight per variant, in config order, replacing the configured ones. The buckets
/// are dealt exactly as with configured weights, so moving a split moves only the users
/// of the buckets that changed owner. A slice of the wrong length (a split made for
/// another config) is ignored.
pub fn choose_variant_split<'a>(
    f: &'a FunctionConfig,
    split: Option<&[u32]>,
    override_variant: Option<&str>,
    user: Option<&str>,
    session: Option<&str>,
    fallback_random: u64,
) -> Result<Assignment<'a>, VariantError> {
    if let Some(name) = override_variant {
        return match f.variant(name) {
            Some(variant) => Ok(Assignment {
                variant,
                reason: AssignmentReason::Override,
            }),
            None => Err(VariantError::UnknownVariant {
                function: f.name.clone(),
                variant: name.to_string(),
                known: f.variants.iter().map(|v| v.name.clone()).collect(),
            }),
        };
    }
    let total: u64 = weights_of(f, split).map(u64::from).sum();
    if total == 0 {
        return Err(VariantError::NoWeight {
            function: f.name.clone(),
        });
    }
    let key = match f.sticky {
        Sticky::User => user,
        Sticky::Session => session,
        Sticky::None => None,
    }
    .filter(|k| !k.is_empty());
    let (point, reason) = match key {
        Some(k) => (sticky_hash(&f.name, k), AssignmentReason::Sticky),
        None => (fallback_random, AssignmentReason::Random),
    };
    match variant_at(weights_of(f, split), point % BUCKETS, total).and_then(|i| f.variants.get(i)) {
        Some(variant) => Ok(Assignment { variant, reason }),
        None => Err(VariantError::NoWeight {
            function: f.name.clone(),
        }),
    }
}

/// The weights that decide: the split override's when it fits `f`, else the configured
/// ones (no allocation either way).
fn weights_of<'s>(
    f: &'s FunctionConfig,
    split: Option<&'s [u32]>,
) -> impl Iterator<Item = u32> + 's {
    let split = split.filter(|w| w.len() == f.variants.len());
    f.variants
        .iter()
        .enumerate()
        .map(move |(i, v)| split.and_then(|w| w.get(i).copied()).unwrap_or(v.weight))
}

/// The index of the variant owning `bucket` (in `0..BUCKETS`), walking the weights in
/// config order: each owns up to `floor(cumulative weight · BUCKETS / total)`. Variants
/// of weight 0 own no bucket. (Weights are u32, so the products fit in u64.)
fn variant_at(weights: impl Iterator<Item = u32>, bucket: u64, total: u64) -> Option<usize> {
    let mut cumulative = 0u64;
    for (i, w) in weights.enumerate() {
        cumulative += u64::from(w);
        if w > 0 && bucket < cumulative * BUCKETS / total {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use keel_core::config::{Config, PromptRef};
    use serde_json::Map;

    use super::*;

    fn variant(name: &str, weight: u32) -> VariantConfig {
        VariantConfig {
            name: name.into(),
            prompt: "support/answer".into(),
            prompt_ref: PromptRef::Label("production".into()),
            model: "mock-1".into(),
            weight,
            params: Map::new(),
            fallbacks: None,
        }
    }

    fn function(name: &str, sticky: Sticky, weights: &[(&str, u32)]) -> FunctionConfig {
        FunctionConfig {
            name: name.into(),
            description: None,
            sticky,
            variants: weights.iter().map(|(n, w)| variant(n, *w)).collect(),
            shadow: None,
            timeout: None,
            first_token_timeout: None,
            cheapest: None,
            capture: None,
        }
    }

    fn by_user<'a>(f: &'a FunctionConfig, user: &str) -> &'a str {
        let a = choose_variant(f, None, Some(user), None, 0).unwrap();
        assert_eq!(a.reason, AssignmentReason::Sticky);
        &a.variant.name
    }

    const CONFIG: &str = r#"
[providers.up]
kind = "mock"
[models.mock-1]
provider = "up"
[models.gpt-4o-mini]
provider = "up"
[functions.support-answer]
sticky = "user"
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
model = "mock-1"
weight = 90
[[functions.support-answer.variants]]
name = "candidate"
prompt = "support/answer"
prompt_version = 4
model = "gpt-4o-mini"
weight = 10
[[functions.support-answer.variants]]
name = "debug"
prompt = "support/answer"
model = "mock-1"
weight = 0
"#;

    fn loaded() -> FunctionConfig {
        Config::from_toml(CONFIG, Path::new("keel.toml"))
            .unwrap()
            .functions["support-answer"]
            .clone()
    }

    const GOLDEN_ALICE: u64 = 0x318c_dcf4_b353_daf5;
    const GOLDEN_EMPTY: u64 = 0x998b_d40d_60c4_6e58;
    /// (user, bucket out of 10,000, variant under a 50/50 split of `support-answer`).
    const GOLDEN_USERS: &[(&str, u64, &str)] = &[
        ("alice", 8853, "candidate"),
        ("bob", 7022, "candidate"),
        ("carol", 706, "control"),
        ("dave", 9669, "candidate"),
        ("user-1", 5059, "candidate"),
        ("user-42", 4110, "control"),
        ("8f14e45f-ceea-467f-a0e6-9d6b2c5e4a1b", 6104, "candidate"),
    ];

    /// The hash is a published contract: these values were computed independently
    /// (Python's hashlib) and must never change.
    #[test]
    fn the_sticky_hash_is_stable() {
        assert_eq!(sticky_hash("support-answer", "alice"), GOLDEN_ALICE);
        assert_eq!(sticky_hash("support-answer", ""), GOLDEN_EMPTY);
    }

    #[test]
    fn golden_assignments_never_change() {
        let f = function(
            "support-answer",
            Sticky::User,
            &[("control", 50), ("candidate", 50)],
        );
        for (user, bucket, want) in GOLDEN_USERS {
            assert_eq!(
                sticky_hash("support-answer", user) % BUCKETS,
                *bucket,
                "user {user}"
            );
            assert_eq!(by_user(&f, user), *want, "user {user}");
        }
    }

    fn shares(f: &FunctionConfig, n: u32) -> HashMap<String, f64> {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for i in 0..n {
            *counts
                .entry(by_user(f, &format!("user-{i}")).to_string())
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, c)| (k, f64::from(c) * 100.0 / f64::from(n)))
            .collect()
    }

    #[test]
    fn users_spread_by_weight() {
        for weights in [
            vec![("control", 90), ("candidate", 10)],
            vec![("a", 50), ("b", 30), ("c", 20)],
        ] {
            let f = function("support-answer", Sticky::User, &weights);
            let got = shares(&f, 100_000);
            for (name, w) in &weights {
                let pct = got.get(*name).copied().unwrap_or(0.0);
                assert!(
                    (pct - f64::from(*w)).abs() <= 1.0,
                    "{name}: {pct:.2}% of users, weight {w}% ({got:?})"
                );
            }
        }
    }

    #[test]
    fn a_user_stays_on_one_variant_across_calls_and_restarts() {
        let before = loaded();
        let after = loaded(); // as if Keel restarted and read the same keel.toml
        for i in 0..500u64 {
            let user = format!("u{i}");
            let first = by_user(&before, &user);
            assert_eq!(by_user(&before, &user), first);
            assert_eq!(by_user(&after, &user), first);
            // Random draws do not disturb a sticky user.
            let a = choose_variant(&before, None, Some(&user), Some("s"), i).unwrap();
            assert_eq!(a.variant.name, first);
        }
    }

    #[test]
    fn shifting_weight_at_a_fixed_total_moves_only_the_shifted_users() {
        let old = function("f", Sticky::User, &[("control", 90), ("candidate", 10)]);
        let new = function("f", Sticky::User, &[("control", 80), ("candidate", 20)]);
        let mut moved = 0;
        for i in 0..10_000 {
            let user = format!("u{i}");
            let (a, b) = (by_user(&old, &user), by_user(&new, &user));
            if a != b {
                assert_eq!((a, b), ("control", "candidate"), "{user}");
                moved += 1;
            }
        }
        assert!((800..1200).contains(&moved), "{moved}");
    }

    #[test]
    fn scaling_every_weight_moves_nobody() {
        let pct = function("f", Sticky::User, &[("a", 90), ("b", 10)]);
        let small = function("f", Sticky::User, &[("a", 9), ("b", 1)]);
        let odd = function("f", Sticky::User, &[("a", 2), ("b", 1)]);
        let mut b_share = 0;
        for i in 0..5_000 {
            let user = format!("u{i}");
            assert_eq!(by_user(&pct, &user), by_user(&small, &user), "{user}");
            b_share += usize::from(by_user(&odd, &user) == "b");
        }
        // A total that does not divide 10,000 still splits by proportion (1/3 here).
        assert!((1_500..1_850).contains(&b_share), "{b_share}");
    }

    #[test]
    fn session_stickiness_uses_the_session_header_only() {
        let f = function("f", Sticky::Session, &[("a", 50), ("b", 50)]);
        for i in 0..200 {
            let s = format!("sess-{i}");
            let first = choose_variant(&f, None, Some("u1"), Some(&s), 0).unwrap();
            assert_eq!(first.reason, AssignmentReason::Sticky);
            for (user, random) in [(Some("u2"), 1), (None, 7)] {
                let again = choose_variant(&f, None, user, Some(&s), random).unwrap();
                assert_eq!(again.variant.name, first.variant.name);
            }
            let want = if sticky_hash("f", &s) % BUCKETS < 5_000 {
                "a"
            } else {
                "b"
            };
            assert_eq!(first.variant.name, want);
        }
        // A user header alone does not make a session-sticky function sticky.
        let a = choose_variant(&f, None, Some("u1"), None, 7_500).unwrap();
        assert_eq!(
            (a.reason, a.variant.name.as_str()),
            (AssignmentReason::Random, "b")
        );
    }

    #[test]
    fn without_a_key_or_with_sticky_none_the_random_value_decides() {
        let none = function("f", Sticky::None, &[("a", 90), ("b", 10)]);
        let user = function("f", Sticky::User, &[("a", 90), ("b", 10)]);
        for (random, want) in [
            (0, "a"),
            (8_999, "a"),
            (9_000, "b"),
            (9_999, "b"),
            (10_000, "a"),
            (19_500, "b"),
        ] {
            let a = choose_variant(&none, None, Some("alice"), Some("s"), random).unwrap();
            assert_eq!(
                (a.reason, a.variant.name.as_str()),
                (AssignmentReason::Random, want)
            );
            let b = choose_variant(&user, None, None, Some("s"), random).unwrap();
            assert_eq!(
                (b.reason, b.variant.name.as_str()),
                (AssignmentReason::Random, want)
            );
            let c = choose_variant(&user, None, Some(""), None, random).unwrap();
            assert_eq!(
                (c.reason, c.variant.name.as_str()),
                (AssignmentReason::Random, want)
            );
        }
        let a = choose_variant(&none, None, None, None, u64::MAX).unwrap();
        assert_eq!(
            a.variant.name,
            if u64::MAX % BUCKETS < 9_000 { "a" } else { "b" }
        );
    }

    #[test]
    fn the_override_header_wins_even_for_weight_zero() {
        let f = loaded();
        for name in ["control", "candidate", "debug"] {
            let a = choose_variant(&f, Some(name), Some("alice"), None, 5).unwrap();
            assert_eq!(a.reason, AssignmentReason::Override);
            assert_eq!(a.variant.name, name);
        }
        assert_eq!(
            f.variant("candidate").unwrap().prompt_ref,
            PromptRef::Version(std::num::NonZeroU32::new(4).unwrap())
        );
        // Even a function whose every weight is 0 is reachable by override.
        let dark = function("f", Sticky::User, &[("a", 0)]);
        let a = choose_variant(&dark, Some("a"), None, None, 0).unwrap();
        assert_eq!(a.variant.name, "a");
        let e = choose_variant(&dark, None, Some("alice"), None, 0).unwrap_err();
        assert_eq!(
            e,
            VariantError::NoWeight {
                function: "f".into()
            }
        );
    }

    #[test]
    fn an_unknown_override_names_the_variants_that_exist() {
        let f = loaded();
        let e = choose_variant(&f, Some("canidate"), Some("alice"), None, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "function `support-answer` has no variant `canidate` (from the x-keel-variant header); its variants are: control, candidate, debug"
        );
        match e {
            VariantError::UnknownVariant { known, .. } => {
                assert_eq!(known, ["control", "candidate", "debug"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn weight_zero_variants_are_never_chosen_without_override() {
        let f = loaded();
        let g = function(
            "g",
            Sticky::None,
            &[("dark", 0), ("a", 1), ("off", 0), ("b", 2)],
        );
        for i in 0..5_000u64 {
            let user = format!("user-{i}");
            assert_ne!(by_user(&f, &user), "debug");
            let r = choose_variant(&g, None, None, None, i).unwrap();
            assert!(matches!(r.variant.name.as_str(), "a" | "b"), "{i}");
        }
    }

    #[test]
    fn a_split_override_replaces_the_weights_and_moves_only_changed_buckets() {
        let f = function("f", Sticky::User, &[("control", 90), ("candidate", 10)]);
        let pick = |split: Option<&[u32]>, user: &str| {
            choose_variant_split(&f, split, None, Some(user), None, 0)
                .unwrap()
                .variant
                .name
                .clone()
        };
        let mut moved = 0;
        for i in 0..5_000 {
            let user = format!("u{i}");
            // The configured weights and the same split in basis points agree.
            let configured = pick(None, &user);
            assert_eq!(pick(Some(&[9_000, 1_000]), &user), configured, "{user}");
            // 100 % and 0 % leave no one behind.
            assert_eq!(pick(Some(&[0, 10_000]), &user), "candidate");
            assert_eq!(pick(Some(&[10_000, 0]), &user), "control");
            let at_25 = pick(Some(&[7_500, 2_500]), &user);
            if at_25 != configured {
                assert_eq!(
                    (configured.as_str(), at_25.as_str()),
                    ("control", "candidate")
                );
                moved += 1;
            }
        }
        assert!((600..900).contains(&moved), "{moved}");
        // A split that does not fit the function (wrong length) is ignored.
        for i in 0..200 {
            let user = format!("u{i}");
            assert_eq!(pick(Some(&[0, 0, 10_000]), &user), pick(None, &user));
        }
        // The override header still wins over a split.
        let a = choose_variant_split(&f, Some(&[0, 10_000]), Some("control"), Some("u"), None, 0)
            .unwrap();
        assert_eq!(a.variant.name, "control");
    }
}
