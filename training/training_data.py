"""Training sets for picsift's offline model: captioned images, streamed from their sources.

Every image gets captions at three levels of detail, each a list of prompt-template
variants with a total weight:

* specific (weight 0.6): the item itself, "a picture of a sneaker", "an emoji of a grinning face";
* mid (0.25): its sub-category, "a picture of footwear", "a picture of mammals";
* top (0.15): its top category, "a picture of clothes", "a picture of animals".

Sources (fetched by training/fetch_data.py, all from package registries):
Fashion-MNIST (MIT), Noto emoji via emoji-datasource-google (Apache-2.0), Twemoji via
emoji-datasource-twitter (CC-BY-4.0), Microsoft's Fluent Emoji 3D renders via
@lobehub/fluent-emoji-3d (MIT; names from the emoji-datasource metadata), OpenClipart PNGs
(public domain).

Each source is a generator of ``(Item, PIL image)`` with transparency already composited on
white (picsift's rule); the model's own open_clip preprocess does the rest, so training sees
exactly what picsift feeds the model.
Tux Paint stamps are never read here.

Splits are deterministic (seeded by item id), held-out items are never trained on:
Fashion-MNIST uses its official test split; emoji hold out 10% of the emoji (every art
style of a held-out emoji is held out); OpenClipart holds out 10% of the files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: Fashion-MNIST images per class used for training (of 6,000; the test split is never trained on)
FMNIST_TRAIN_PER_CLASS = 300

LEVEL_WEIGHTS = {"specific": 0.6, "mid": 0.25, "top": 0.15}


@dataclass
class Item:
    source: str  # fashion-mnist | emoji | openclipart
    key: str  # unique id (for the split)
    label: str  # class used for per-class evaluation
    captions: dict = field(default_factory=dict)  # level -> list[str]
    split: str = "train"


def _held_out(key: str, frac: float = 0.1) -> bool:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return (h % 1000) < frac * 1000


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def to_rgb_on_white(img: Image.Image) -> Image.Image:
    """Composite transparency onto white (same rule as picsift) and return RGB."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        bg.alpha_composite(img)
        img = bg
    return img.convert("RGB")


# ---------------------------------------------------------------- Fashion-MNIST
FMNIST_CLASSES = [
    # (label, specific noun phrase, mid phrase)
    ("t-shirt", "a t-shirt", "a top"),
    ("trousers", "a pair of trousers", "legwear"),
    ("pullover", "a pullover", "a top"),
    ("dress", "a dress", "a garment"),
    ("coat", "a coat", "outerwear"),
    ("sandal", "a sandal", "footwear"),
    ("shirt", "a shirt", "a top"),
    ("sneaker", "a sneaker", "footwear"),
    ("bag", "a bag", "an accessory"),
    ("ankle boot", "an ankle boot", "footwear"),
]
FMNIST_SPECIFIC = ["{}", "a photo of {}", "a picture of {}", "a black and white photo of {}", "a product photo of {}"]
FMNIST_TOP = ["a picture of clothes", "a photo of clothing", "a piece of clothing", "fashion"]


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format), gzipped."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fmnist_items(root: Path, train_per_class: int = FMNIST_TRAIN_PER_CLASS, seed: int = 0):
    """Fashion-MNIST, inverted to a dark object on white (like product shots and clip art).

    The train split is subsampled to ``train_per_class`` images per class (seeded); the test split
    is yielded whole and marked ``test``.
    """
    rng = np.random.default_rng(seed)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        keep = np.arange(len(y))
        if split == "train":
            keep = np.sort(np.concatenate([
                rng.choice(np.flatnonzero(y == c), train_per_class, replace=False) for c in range(len(FMNIST_CLASSES))
            ]))
        for i in keep:
            label, spec, mid = FMNIST_CLASSES[int(y[i])]
            item = Item(
                "fashion-mnist",
                f"fmnist/{split}/{i}",
                label,
                {
                    "specific": [t.format(spec) for t in FMNIST_SPECIFIC],
                    "mid": [f"a picture of {mid}", f"a photo of {mid}"],
                    "top": FMNIST_TOP,
                },
                split,
            )
            yield item, Image.fromarray(255 - x[i]).convert("RGB")


# ---------------------------------------------------------------- emoji
EMOJI_SPECIFIC = ["{n}", "an emoji of {a}", "a picture of {a}", "a cartoon of {a}", "an icon of {a}"]
_SUBCAT_FIX = {
    "animal-mammal": "mammals", "animal-bird": "birds", "animal-marine": "sea animals",
    "animal-bug": "insects", "animal-reptile": "reptiles", "animal-amphibian": "amphibians",
    "plant-flower": "flowers", "plant-other": "plants", "food-fruit": "fruit",
    "food-vegetable": "vegetables", "food-prepared": "prepared food", "food-asian": "asian food",
    "food-sweet": "sweets", "drink": "drinks", "transport-ground": "ground transport vehicles",
    "transport-air": "aircraft", "transport-water": "boats", "transport-sign": "traffic signs",
    "place-building": "buildings", "place-other": "places", "place-map": "maps",
    "place-geographic": "landscapes", "place-religious": "religious buildings",
    "sky & weather": "sky and weather", "person-role": "people at work", "person-activity": "people doing things",
    "person-sport": "people doing sports", "person-fantasy": "fantasy people", "person-gesture": "people gesturing",
    "person-resting": "people resting", "person-symbol": "people symbols", "family": "families",
    "body-parts": "body parts", "country-flag": "country flags", "subdivision-flag": "flags",
    "flag": "flags", "clothing": "clothing", "household": "household objects", "medical": "medical things",
    "musical-instrument": "musical instruments", "sport": "sports equipment", "game": "games",
    "event": "celebrations", "award-medal": "awards and medals", "tool": "tools", "office": "office supplies",
    "book-paper": "books and paper", "money": "money", "mail": "mail", "computer": "computers",
    "light & video": "lights and video", "phone": "phones", "science": "science", "writing": "writing tools",
    "lock": "locks", "dishware": "dishware", "time": "clocks and time", "arts & crafts": "arts and crafts",
    "zodiac": "zodiac signs", "religion": "religious symbols", "warning": "warning signs",
    "arrow": "arrows", "geometric": "shapes", "alphanum": "letters and numbers", "keycap": "number keys",
    "av-symbol": "media symbols", "other-symbol": "symbols", "math": "math symbols", "punctuation": "punctuation",
    "currency": "currency symbols", "heart": "hearts", "emotion": "emotions",
}
_CAT_FIX = {
    "Smileys & Emotion": "smileys and emotions", "People & Body": "people", "Animals & Nature": "animals and nature",
    "Food & Drink": "food and drink", "Travel & Places": "travel and places", "Activities": "activities",
    "Objects": "objects", "Symbols": "symbols", "Flags": "flags", "Component": "symbols",
}


def _emoji_name(e: dict) -> str:
    n = (e.get("name") or e.get("short_name") or "").lower().strip()
    if n.endswith(" flag") and e.get("subcategory") == "country-flag":
        n = "flag of " + n[: -len(" flag")]
    return n


def _subcat_phrase(s: str) -> str:
    if s in _SUBCAT_FIX:
        return _SUBCAT_FIX[s]
    if s.startswith("face-") or s.endswith("-face") or s.startswith("hand"):
        return "faces" if "face" in s else "hands"
    return s.replace("-", " ")


def _emoji_item(e: dict, style: str) -> Item:
    n = _emoji_name(e)
    sub, cat = _subcat_phrase(e.get("subcategory", "")), _CAT_FIX.get(e.get("category"), "symbols")
    key = f"emoji/{e['unified']}"  # the same key for every style: held out together
    return Item(
        "emoji",
        key + f"/{style}",
        cat,
        {
            "specific": [t.format(n=n, a=_article(n)) for t in EMOJI_SPECIFIC],
            "mid": [f"a picture of {sub}", f"an emoji of {sub}"],
            "top": [f"a picture of {cat}", f"an emoji from the category {cat}"],
        },
        "test" if _held_out(key) else "train",
    )


def _open_on_white(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return to_rgb_on_white(im)


def emoji_items(roots: list[Path]):
    """Noto and Twemoji (emoji-datasource packages: 64 px PNGs with their own emoji.json)."""
    for root in roots:
        style = root.name.split("-", 1)[1]
        meta = json.loads((root / "emoji.json").read_text())
        for e in meta:
            p = root / "img" / e["image"]
            if e.get("category") == "Component" or not p.is_file():
                continue
            yield _emoji_item(e, style), _open_on_white(p)


_SKIN_TONES = ("1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff")


def fluent_items(root: Path, names_from: Path):
    """Fluent Emoji 3D renders (256 px WebP named by code point), one per emoji without skin-tone
    variants; names and categories come from the emoji-datasource metadata in ``names_from``."""
    meta = json.loads((names_from / "emoji.json").read_text())
    by_code = {}
    for e in meta:
        for code in (e.get("unified"), e.get("non_qualified")):
            if code:
                by_code[code.lower()] = e
    for p in sorted((root / "assets").glob("*.webp")):
        e = by_code.get(p.stem.lower())
        if e is None or e.get("category") == "Component" or any(t in p.stem for t in _SKIN_TONES):
            continue
        yield _emoji_item(e, "fluent-3d"), _open_on_white(p)


# ---------------------------------------------------------------- OpenClipart
_CLIPART_SKIP_DIRS = {"unsorted", "duplicates", "examples", "special", "logos", "buttons"}
_CLIPART_DIR_FIX = {
    "signs_and_symbols": "signs and symbols", "transportation": "transportation", "aiga-symbols": "transport symbols",
    "etiquette-theme": "", "flat-theme": "", "lemon-theme": "", "icons": "computer icons", "mimetypes": "file icons",
    "stock": "", "generic": "", "apps": "application icons", "actions": "action icons", "action": "action icons",
    "devices": "devices", "device": "devices", "filesystems": "folders", "emblems": "emblems",
    "housecats": "house cats", "big_cats": "big cats", "meats_and_eggs": "meat and eggs",
    "breads_and_carbs": "bread", "CD_Player": "cd players", "bodypart": "body parts", "smilies": "smiley faces",
    "stickmen": "stick figures", "map_symbols": "map symbols", "roadsigns": "road signs", "led": "led displays",
    "cardbacks": "playing cards", "bordered": "playing cards", "white": "playing cards", "simple": "playing cards",
    "ornamental": "playing cards", "cards": "playing cards", "geography": "geography", "united_states": "united states",
    "united_kingdom": "united kingdom", "new_zealand": "new zealand", "homes": "houses", "hummers": "cars",
    "penguin": "penguins", "fish": "fish", "bugs": "insects", "fantasy": "fantasy creatures",
    "evergreen": "evergreen trees", "dairy": "dairy products", "beverages": "drinks", "alcohol": "alcoholic drinks",
    "holiday": "holidays", "christianity": "christian symbols", "toys": "toys", "weapons": "weapons",
    "boating": "boats", "vehicles": "vehicles", "hazard": "hazard signs", "disability": "disability signs",
    "semaphore": "semaphore flags", "historic": "historic flags", "navy": "navy flags", "pirates": "pirate flags",
    "miscellany": "flags", "flowchart": "flowchart shapes", "callouts": "speech bubbles", "jigsaw": "jigsaw pieces",
}
# frequent author-name / noise tokens in OpenClipart file names (names are "title_author_NN")
_CLIPART_STOP = set(
    """architetto francesco rollandin ganson benji park juliane krug nicu buculei jarno vasamaa jean victor
    jon phillips gerald linda yves kim franc arch aiga gnome mime bw icon png svg the and with of for
    from by in on frances francesc rory mccann lumen desig design designs anonymous johnny automatic
    karl bartel dan gerhards patricia fidi erich schube theerud omar nurbl mauro oliv jeff walden tom
    andy peter chris john mark paul david michael lemon etiquette flat theme theme01 step pt r c h s d b
    x g fs bb mo rpg""".split()  # noqa: SIM905 - a word list reads better as text
)
CLIPART_SPECIFIC = ["{w}", "a drawing of {a}", "a clip art of {a}", "a picture of {a}"]
CLIPART_MAX_PER_DIR = 150


def _dir_phrase(part: str) -> str:
    if part in _CLIPART_DIR_FIX:
        return _CLIPART_DIR_FIX[part]
    return part.replace("_", " ").replace("-", " ")


def _vocab() -> set[str]:
    from picsift.embedding.offline_model import minilm_dir

    d = minilm_dir()
    return set((d / "vocab.txt").read_text().split()) if d else set()


def clipart_items(root: Path):
    """OpenClipart PNGs (at most CLIPART_MAX_PER_DIR per folder, seeded); captions from file names
    and folders."""
    vocab = _vocab()
    rng = np.random.default_rng(0)
    by_dir: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root)
        if any(part in _CLIPART_SKIP_DIRS for part in rel.parts[:-1]):
            continue
        by_dir.setdefault(p.parent, []).append(p)
    for d, files in sorted(by_dir.items()):
        if len(files) > CLIPART_MAX_PER_DIR:
            idx = sorted(rng.choice(len(files), CLIPART_MAX_PER_DIR, replace=False))
            files = [files[i] for i in idx]
        parts = list(d.relative_to(root).parts)
        phrases = [q for q in (_dir_phrase(x) for x in parts) if q]
        top = phrases[0]
        mid = phrases[-1]
        for p in files:
            words = [w for w in re.split(r"[^a-zA-Z]+", p.stem.lower()) if w]
            words = [w for w in words if len(w) >= 3 and w in vocab and w not in _CLIPART_STOP]
            # keep the leading run of words (the title); author names come after it
            title = " ".join(dict.fromkeys(words[:4]))
            specific_phrase = f"{title} ({mid})" if title else mid
            try:
                img = _open_on_white(p)
            except Exception:
                continue
            if np.asarray(img.convert("L").resize((32, 32))).min() > 245:  # blank (white-on-transparent art)
                continue
            a = _article(title) if title else mid
            yield Item(
                "openclipart",
                f"openclipart/{p.relative_to(root)}",
                top,
                {
                    "specific": [t.format(w=specific_phrase, a=a) for t in CLIPART_SPECIFIC]
                    if title
                    else [f"a picture of {mid}", f"a drawing of {mid}"],
                    "mid": [f"a picture of {mid}", f"a drawing of {mid}"],
                    "top": [f"a picture of {top}", f"a drawing of {top}"],
                },
                "test" if _held_out(f"openclipart/{p.relative_to(root)}") else "train",
            ), img


# ---------------------------------------------------------------- all
SOURCES = ("fashion-mnist", "emoji", "openclipart")


def all_items(cache: Path):
    """Every (Item, image) of every source, in a fixed order."""
    yield from fmnist_items(cache / "fashion-mnist")
    yield from emoji_items([cache / "emoji-google", cache / "emoji-twitter"])
    yield from fluent_items(cache / "emoji-fluent-3d", cache / "emoji-google")
    yield from clipart_items(cache / "openclipart")
