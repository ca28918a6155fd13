"""Text for the 1000 ImageNet classes of the backbone's classifier, from WordNet 3.0.

ImageNet class ids (``n01440764``) are WordNet 3.0 noun offsets, so Debian's ``wordnet-base``
(fetched by fetch_data.py) gives each class its synonyms, its hypernym chain and its gloss. The
class order is timm's (``timm.data.ImageNetInfo``), the order of the classifier's rows.

Each class gets prompts at three levels, like the training captions (training_data.LEVEL_WEIGHTS):
specific ("a photo of a toaster", one per common synonym), mid (its first hypernyms: "a picture
of a kitchen appliance") and top (its WordNet lexicographer file: "a picture of an object",
"... of an animal", "... of food"). Nothing here looks at the Tux Paint test images.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# WordNet lexicographer file numbers (lexnames(5WN)) -> a plain top-level phrase
_LEXFILE_PHRASE = {
    4: "an action", 5: "an animal", 6: "an object", 8: "a body part", 9: "a thing", 11: "an event",
    13: "food", 14: "a group", 15: "a place", 16: "a shape", 17: "nature", 18: "a person", 20: "a plant",
    21: "a possession", 23: "an amount", 27: "a substance",
}
_BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z]+$")  # "Tinca tinca": Latin names MiniLM does not know


@dataclass(frozen=True)
class ClassText:
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str
    top: str


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def read_nouns(wordnet_dir: Path) -> dict[str, tuple[list[str], list[str], int, str]]:
    """offset -> (words, hypernym offsets, lexicographer file, gloss) from ``data.noun`` (wndb(5WN))."""
    synsets = {}
    with open(wordnet_dir / "data.noun", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            head, _, gloss = line.partition(" | ")
            p = head.split()
            offset, lexfile, n_words = p[0], int(p[1]), int(p[3], 16)
            words = [p[4 + 2 * i].replace("_", " ") for i in range(n_words)]
            i = 4 + 2 * n_words
            n_pointers = int(p[i])
            i += 1
            hypernyms = []
            for _ in range(n_pointers):
                symbol, target, pos = p[i], p[i + 1], p[i + 2]
                i += 4
                if symbol in ("@", "@i") and pos == "n":
                    hypernyms.append(target)
            synsets[offset] = (words, hypernyms, lexfile, gloss.strip())
    return synsets


def class_texts(wordnet_dir: Path, depth: int = 3) -> list[ClassText]:
    """One :class:`ClassText` per ImageNet class, in the classifier's order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    synsets = read_nouns(wordnet_dir)
    out = []
    for i in range(1000):
        offset = info.index_to_label_name(i)[1:]
        words, hypernyms, lexfile, gloss = synsets[offset]
        lemmas = [w for w in words if not _BINOMIAL.match(w)][:3] or words[:1]
        chain, cur = [], hypernyms
        while cur and len(chain) < depth:
            words_h, cur_next, _, _ = synsets[cur[0]]
            chain.append(words_h[0])
            cur = cur_next
        out.append(ClassText(tuple(lemmas), tuple(chain), gloss.split(";")[0].strip(),
                             _LEXFILE_PHRASE.get(lexfile, "an object")))
    return out


def prompts(c: ClassText) -> dict[str, list[str]]:
    """Prompt variants per level (specific / mid / top) for one class."""
    first = c.lemmas[0]
    specific = [f"a photo of {_article(w)}" for w in c.lemmas] + [f"a picture of {_article(first)}", _article(first)]
    mid = [f"a picture of {_article(h)}" for h in c.hypernyms] or [f"a picture of {c.top}"]
    mid.append(f"{_article(first)}, a kind of {c.hypernyms[0] if c.hypernyms else c.top}")
    return {"specific": specific, "mid": mid, "top": [f"a picture of {c.top}"]}
