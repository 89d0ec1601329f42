//! The phrase and marker tables behind the injection score. Phrasings are written in plain
//! lower-case English and folded like the text (`fold_pattern`: `l` reads as `i`), then
//! matched on normalised text; role markers are matched on the raw text, where their exact
//! punctuation is the signal.

use crate::normalize::fold_pattern;
use regex::Regex;
use std::sync::LazyLock;

pub(super) struct Signal {
    pub(super) name: &'static str,
    pub(super) weight: f64,
    pub(super) pattern: &'static str,
}

const QUALIFIER: &str = "(?:previous|prior|above|earlier|preceding|initial|original|existing|system|developer|safety|all|any|every|your|these|those|old|former)";
const FILLER: &str = "(?:the|my|of|these|those|and|other|previous|prior|above|earlier|initial|original|system|developer|safety|all|any|your|old|usual|normal|core)";
const RULES: &str = "(?:instructions?|rules|ruleset|directions|directives?|prompts?|guidelines|guidance|context|messages|commands|constraints|restrictions|programming|policies|policy|orders|training|limitations|input|inputs)";

const LISTS: &[(&str, &str)] = &[("{Q}", QUALIFIER), ("{F}", FILLER), ("{R}", RULES)];

/// Phrasings, matched on normalised text. `{Q}`, `{F}` and `{R}` expand to the lists above.
const PHRASINGS: &[Signal] = &[
    Signal {
        name: "ignore_previous",
        weight: 0.85,
        pattern: r"\b(?:ignore|disregard|forget|skip|override|bypass|discard|abandon|drop) (?:{F} ){0,3}{Q} (?:{F} ){0,2}{R}\b",
    },
    Signal {
        name: "ignore_previous",
        weight: 0.85,
        pattern: r"\b(?:ignore|disregard|forget) (?:everything|anything|all|whatever) (?:(?:written|said|stated|you read) )?(?:above|before this|so far|up to (?:this|now))\b|\b(?:ignore|disregard|forget) (?:everything|anything|all) (?:from )?before(?: (?:this|now))?(?:[.,;:!]|$)",
    },
    Signal {
        name: "ignore_previous",
        weight: 0.75,
        pattern: r"\b(?:ignore|disregard|forget) (?:what|everything|anything|all) you (?:were|have been|'ve been|have|'ve) (?:told|given|instructed|programmed|learned|learnt|taught)\b",
    },
    Signal {
        name: "new_instructions",
        weight: 0.55,
        pattern: r"\b(?:new|updated|real|actual|true|revised) (?:system )?(?:instructions?|rules|directives?|task|objective|system prompt|orders) ?:|\byour (?:new|real|true|actual) (?:instructions?|task|role|purpose|objective|goal|orders|rules) (?:is|are|:)|\bthe (?:above|previous) (?:instructions?|rules) (?:are|were|is) (?:void|cancelled|obsolete|outdated|fake|no longer valid)",
    },
    Signal {
        name: "persona_override",
        weight: 0.8,
        pattern: r"\byou are (?:now |no longer an? (?:ai|assistant) but |going to (?:be|act as|pretend to be) )?(?:dan|stan|dude|aim|an? (?:unrestricted|unfiltered|uncensored|unaligned|jailbroken|evil|rogue|amoral|unethical|lawless) (?:ai|assistant|model|chatbot|version|entity|character))\b|\bdo anything now\b|\b(?:act|behave|respond|roleplay|role-play) as (?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|amoral|unethical|rogue) |\bstay in character no matter what\b|\bhas broken free of (?:the )?(?:typical )?confines\b",
    },
    Signal {
        name: "jailbreak_mode",
        weight: 0.7,
        pattern: r"\b(?:god|jailbreak|jailbroken|dan|unrestricted|unfiltered|evil|chaos|opposite) mode\b|\bdeveloper mode (?:enabled|activated|output|response|is on)\b",
    },
    Signal {
        name: "developer_mode",
        weight: 0.35,
        pattern: r"\b(?:enable|activate|enter|switch to|turn on|unlock)(?: the)? (?:developer|dev|debug|admin|sudo|root|maintenance) mode\b",
    },
    Signal {
        name: "no_restrictions",
        weight: 0.7,
        pattern: r"\bpretend (?:that )?(?:you )?(?:have|had|are|were|do not have|don't have) (?:no|not|without|free of)? ?(?:any )?(?:restrictions|rules|limits|limitations|filters|guidelines|boundaries|ethics|morals|censorship|content poiicy)|\b(?:answer|respond|reply|speak|talk|act|operate|behave|write|continue)(?: to me| me| freely)? (?:without|with no|free of) (?:any |aii |your )?(?:restrictions|filters|filtering|censorship|guidelines|limitations|limits|rules|ethics|morals|moral constraints|warnings|disclaimers|refusals)\b|\byou (?:are|'re) (?:no longer|not) (?:bound|restricted|limited|constrained|governed) by\b|\b(?:bypass|disable|turn off|remove|ignore|deactivate) (?:your |the |all |any )?(?:safety|content|ethical|moderation) (?:filters?|guidelines|restrictions|policies|policy|measures|protocols|settings)\b|\bno (?:ethical|moral) (?:guidelines|restrictions|constraints|limits)\b|\bnever refuse\b",
    },
    Signal {
        name: "reveal_system_prompt",
        weight: 0.7,
        pattern: r"\b(?:reveal|show|print|output|repeat|display|tell|give|leak|dump|share|expose|disclose|write out|recite|spell out|type out|copy|paste|return|translate|summarize|summarise|encode)(?: me| us| back)? (?:(?:your|the|aii|of|fuii|entire|complete|whole|exact|original|hidden|initial|secret|verbatim|confidential|internal|first|raw|underlying) ){0,4}(?:system prompt|system message|system instructions|initial instructions|hidden instructions|original instructions|secret instructions|internal instructions|developer (?:message|prompt|instructions)|pre-?prompt|(?:instructions|text|prompt|words|message) (?:you were|you've been|you have been) (?:given|told|provided)(?: initially| at the start| at the beginning| before)?|instructions above|prompt above|text above|words above|everything above|configuration|confidential instructions|starting instructions|initial prompt|initialization string|system_?prompt)\b|\bwhat (?:is|are|was|were|'s) (?:your|the) (?:(?:exact|fuii|originai|hidden|secret|initiai|entire) )*(?:system prompt|system message|initial instructions|hidden instructions|original instructions|secret instructions)\b|\bwhat (?:were|have) you (?:been )?(?:told|instructed|programmed) (?:to do )?(?:before|at the start|initially)|\b(?:repeat|print|output|recite|dump|leak|reveal) (?:aii )?your (?:instructions|rules|guidelines|prompt|directives)\b|\b(?:starting|beginning|begin|start) with (?:the words? )?.?you are\b|\b(?:repeat|print|copy|recite|dump|reveal) (?:the |all |everything )?above (?:text|instructions|prompt|message)\b|\b(?:repeat|print|output|show|display|reveal|dump|copy) (?:everything|all|the text|the content|the contents) (?:in|of|from) (?:the |your )(?:system prompt|system message|initial prompt|instructions)\b",
    },
    Signal {
        name: "reveal_system_prompt",
        weight: 0.6,
        pattern: r"\byour (?:(?:own|full|entire|exact|original|initial|hidden|secret|starting|underlying|complete) )*(?:system prompt|system instructions|system message|initial prompt|initial instructions|starting instructions|hidden instructions|secret instructions|pre-?prompt)\b|\b(?:start|begin|continue|complete)\b[^.\n]{0,40}.(?:my (?:system )?(?:instructions|prompt|rules) (?:are|were|say)|i was (?:instructed|told|programmed) to|the (?:system )?prompt (?:is|was|says)|my system prompt)|\((?:self\.|this\.)?(?:system_?prompt|initial_?prompt|sys_?prompt)\)",
    },
    Signal {
        name: "pii_exfiltration",
        weight: 0.6,
        pattern: r"\b(?:other|another|previous|different|aii|every) (?:users?|customers?|clients?|patients?|people|account holders|members|employees)(?:'s|'|s)? (?:(?:emaiis?|emaii addresses|phone numbers|home addresses|addresses|ssns|social security numbers|credit cards?|card numbers|passwords|personai (?:data|information|detaiis)|conversations|chats|chat history|messages|records|api keys|saiaries|medicai records|bank detaiis|dates of birth)(?:,? (?:and|or) )?)+\b|\b(?:dump|leak|exfiltrate|extract|harvest|scrape|steal)\b[^.?!\n]{0,60}\b(?:emaii addresses|phone numbers|ssns|social security numbers|credit card numbers|card numbers|passwords|api keys|personai (?:data|information)|pii|customer data|user data|database)\b",
    },
    Signal {
        name: "ignore_previous",
        weight: 0.85,
        pattern: r"\bignore[sz]? (?:toutes )?(?:ies )?(?:instructions|consignes|regies) (?:precedentes|anterieures)\b|\boubiie[sz]? (?:toutes )?(?:ies |tes |vos )?(?:instructions|consignes|regies)\b|\bignora (?:todas )?(?:ias )?(?:instrucciones|regias|indicaciones) (?:anteriores|previas)\b|\bignoriere (?:aiie )?(?:vorherigen|bisherigen|obigen|vorigen) (?:anweisungen|instruktionen|regein)\b|\bvergiss (?:aiie )?(?:deine )?(?:vorherigen |bisherigen )?(?:anweisungen|regein)\b|\bignora (?:tutte )?(?:ie )?(?:istruzioni|regoie) (?:precedenti)\b|\bignore (?:todas )?(?:as )?(?:instrucoes|regras) (?:anteriores)\b",
    },
];

/// Role-override markers, matched on the raw text.
const ROLE_MARKERS: &[Signal] = &[
    Signal {
        name: "role_marker",
        weight: 0.6,
        pattern: r"(?i)\[(?:end|start) of (?:input|prompt|instructions|system prompt|user input|conversation)\]|<\|im_start\|>\s*(?:system|assistant|developer)|<\|(?:system|endoftext|im_end|start_header_id|eot_id)\|>|\[/?INST\]|<</?SYS>>|</?(?:system|system_prompt|sys)>",
    },
    Signal {
        name: "fake_turn",
        weight: 0.35,
        pattern: r"(?im)^[ \t]*(?:#{1,4}[ \t]*)?(?:system|assistant|developer|admin)[ \t]*(?:prompt|message|override|instructions?)?[ \t]*:[ \t]*(?:$|you |ignore|new |from now|reveal|the user|respond|answer|always|never|do not|don't)",
    },
    Signal {
        name: "fake_turn",
        weight: 0.35,
        pattern: r"(?im)^[ \t]*#{2,4}[ \t]*(?:system|new instructions|instructions|admin|developer)\b",
    },
];

/// A compiled table: each signal's name, weight and regex.
pub(super) type Compiled = Vec<(&'static str, f64, Regex)>;

/// Compile a table, expanding `{NAME}` placeholders (`lists`) and folding the patterns
/// like normalised text when they are matched on it.
pub(super) fn compile(table: &[Signal], fold: bool, lists: &[(&str, &str)]) -> Compiled {
    table
        .iter()
        .map(|s| {
            let expanded = lists.iter().fold(s.pattern.to_string(), |p, (name, list)| {
                p.replace(name, list)
            });
            let source = if fold {
                fold_pattern(&expanded)
            } else {
                expanded
            };
            let re = Regex::new(&source)
                .unwrap_or_else(|e| unreachable!("static injection regex {}: {e}", s.name));
            (s.name, s.weight, re)
        })
        .collect()
}

static PHRASING_REGEXES: LazyLock<Compiled> = LazyLock::new(|| compile(PHRASINGS, true, LISTS));
static MARKER_REGEXES: LazyLock<Compiled> = LazyLock::new(|| compile(ROLE_MARKERS, false, LISTS));

/// Phrasings in normalised text; `emit(signal, weight, start, end)` gets normalised offsets.
pub(super) fn phrasings(normalized: &str, emit: &mut dyn FnMut(&'static str, f64, usize, usize)) {
    for (name, weight, re) in PHRASING_REGEXES.iter() {
        for m in re.find_iter(normalized) {
            emit(name, *weight, m.start(), m.end());
        }
    }
}

/// True when decoded text contains any phrasing (used on base64/hex payloads).
pub(super) fn has_phrasing(normalized: &str) -> bool {
    PHRASING_REGEXES
        .iter()
        .any(|(_, _, re)| re.is_match(normalized))
}

pub(super) fn role_markers(text: &str, hits: &mut Vec<(&'static str, f64, usize, usize)>) {
    for (name, weight, re) in MARKER_REGEXES.iter() {
        for m in re.find_iter(text) {
            hits.push((name, *weight, m.start(), m.end()));
        }
    }
}
