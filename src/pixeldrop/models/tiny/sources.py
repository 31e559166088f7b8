"""The openly licensed artwork pixeldrop-tiny learns named concepts and styles from, beyond emoji.

`SOURCES` is the one table of them: the pinned package each comes from, its licence, whether
that licence asks for attribution (and the credit line), the style words its captions carry and
how its names are read. `data.py` renders their pictures; this module turns their names into
concepts.

Invariants:
- every package is pinned to an exact version: the table alone rebuilds the same set;
- a name is either a concept or dropped (`Source.skip`, skin-tone variants); a numbered
  alternative design (`Source.variant`: "astronaut-2") joins its concept and keeps its picture;
- concepts merge across sources by normalised name, by the icon sets' own aliases and by emoji
  code point (Noto says "hash key" where Fluent says "keycap hashtag": one concept), so
  `concept_counts` never counts one thing twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess  # nosec B404 # `apt-get download` and `dpkg-deb -x` (fetch_deb_package): fixed argv, no shell
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HELD_OUT_FRACTION = 0.10
SEED = 1234

SKIN_TONE = r"(light|medium-light|medium|medium-dark|dark)"


@dataclass(frozen=True)
class Source:
    key: str  # short name: cache folders, the dataset's `sources` column, the model card
    package: str  # "npm:<name>@<exact version>" or "deb:<name>=<exact version>"
    licence: str  # SPDX identifier
    credit: str | None  # the attribution line, where the licence asks for one (CC BY, CC BY-SA)
    styles: tuple[str, ...]  # style words for captions, canonical first ("a lighthouse, silhouette")
    names: Literal["iconify", "openclipart"]  # iconify: the icon names; openclipart: each SVG's <dc:title>
    skip: str = r"$^"  # names that are not concepts (matched in full against the raw name)
    variant: str = r"$^"  # a suffix marking another design of the same concept: removed, picture kept
    crop: bool = False  # drawings sit somewhere on a page: render cut to what they draw

    @property
    def attribution_required(self) -> bool:
        return self.credit is not None

    def spec(self) -> str:
        return self.package.split(":", 1)[1]


# In order of preference for a style-less prompt: a concept's plain captions ("a lighthouse") go to
# the first source here that draws it. Flat colour first, like the Noto emoji the model already
# paints by default and the 16x16 latents reproduce best; a silhouette or 3D look is asked for by name.
SOURCES: tuple[Source, ...] = (
    Source("fluent-emoji-flat", "npm:@iconify-json/fluent-emoji-flat@1.2.6", "MIT", None,
           styles=("flat icon",), names="iconify"),
    Source("twemoji", "npm:@iconify-json/twemoji@1.2.5", "CC-BY-4.0",
           "Twemoji by Twitter, Inc and other contributors (github.com/jdecked/twemoji), CC BY 4.0",
           styles=("emoji",), names="iconify"),
    Source("emojione", "npm:@iconify-json/emojione@1.2.3", "CC-BY-4.0",
           "Emoji One, via the EmojiTwo project (github.com/EmojiTwo/emojitwo), CC BY 4.0",
           styles=("emoji",), names="iconify"),
    Source("openmoji", "npm:@iconify-json/openmoji@1.2.29", "CC-BY-SA-4.0",
           "OpenMoji, the open-source emoji and icon project (openmoji.org), CC BY-SA 4.0",
           styles=("emoji", "outlined icon"), names="iconify", variant=r"(?<=[a-z])2|-low"),
    Source("flat-color-icons", "npm:@iconify-json/flat-color-icons@1.2.3", "MIT", None,
           styles=("flat icon",), names="iconify", variant=r"-?\d+"),
    Source("streamline-emojis", "npm:@iconify-json/streamline-emojis@1.2.4", "CC-BY-4.0",
           "Streamline Emojis by Streamline (github.com/webalys-hq/streamline-vectors), CC BY 4.0",
           styles=("emoji", "doodle"), names="iconify", variant=r"-\d+"),
    Source("openclipart", "deb:openclipart-svg=1:0.18+dfsg-19", "CC-PDDC", None,
           styles=("clip art",), names="openclipart", crop=True),
    Source("fluent-emoji-3d", "npm:@iconify-json/fluent-emoji@1.2.7", "MIT", None,
           styles=("3d icon",), names="iconify"),
    Source("game-icons", "npm:@iconify-json/game-icons@1.2.4", "CC-BY-3.0",
           "Game icons by Lorc, Delapouite and contributors (game-icons.net), CC BY 3.0",
           styles=("silhouette", "black icon"), names="iconify", skip=r"abstract-\d+", variant=r"-\d+"),
)


def source(key: str) -> Source:
    return next(s for s in SOURCES if s.key == key)


def fingerprint() -> str:
    """Changes whenever the table does: caches built from another table are stale."""
    return hashlib.sha256(json.dumps([s.__dict__ for s in SOURCES], sort_keys=True).encode()).hexdigest()[:16]


# --- names -> concepts -------------------------------------------------------------------------

_PREFIXES = (("flag-for-flag-", "flag-"), ("flag-for-", "flag-"), ("icons8-", ""))


def normalise(raw: str) -> str:
    """A name as words: "Coffee_Cup" / "coffee-cup" / "COFFEE CUP" -> "coffee cup"."""
    text = raw.lower().replace("&amp;", "&")
    for prefix, replacement in _PREFIXES:
        if text.startswith(prefix):
            text = replacement + text[len(prefix):]
    text = re.sub(r"\([^)]*\)", " ", text)  # "map of slovenia (in europe)"
    text = re.sub(r"[_\-:,.!?\"/]+", " ", text)
    return " ".join(text.split())


def iconify_names(names: list[str], src: Source) -> dict[str, str]:
    """Icon name -> concept name for the names that are concepts (skin tones and junk dropped)."""
    present = set(names)
    tone_suffix = re.compile(rf"-{SKIN_TONE}$")
    kept = {}
    for name in names:
        if re.fullmatch(src.skip, name) or re.search(rf"{SKIN_TONE}-skin-tone", name):
            continue
        base = tone_suffix.sub("", name)
        if base != name and base in present:  # Fluent: "nose-light" is "nose" in a skin tone
            continue
        concept = normalise(re.sub(rf"(?:{src.variant})$", "", name) or name)
        if concept and not concept.replace(" ", "").isdigit():
            kept[name] = concept
    return kept


class Concepts:
    """Union-find over concept names: names joined by an alias or a shared code point are one."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        """The name that represents `name`'s concept (a name seen first is its own)."""
        root = self._parent.setdefault(name, name)
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[name] != root:  # path compression
            self._parent[name], name = root, self._parent[name]
        return root

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # a name before a code point, then the smaller: whatever the order of joins
            low, high = sorted((ra, rb), key=lambda n: (n.startswith("U+"), n))
            self._parent[high] = low


def code_point_key(code: str) -> str:
    """"1F3F3-FE0F-200D-1F308" and "1f3f3-200d-1f308" name the same emoji."""
    return "-".join(p for p in code.lower().split("-") if p != "fe0f")


def link_code_points(concepts: Concepts, named_codes: dict[str, str]) -> None:
    """Join every concept name to the emoji code point it stands for (`named_codes`: name -> code)."""
    for name, code in named_codes.items():
        concepts.join(name, "U+" + code_point_key(code))


def concept_counts(concepts: Concepts, names_by_source: dict[str, set[str]]) -> dict[str, int]:
    """Distinct concepts per source, and "total" over all of them (merged)."""
    counts = {key: len({concepts.find(n) for n in names}) for key, names in names_by_source.items()}
    counts["total"] = len({concepts.find(n) for names in names_by_source.values() for n in names})
    return counts


def is_held_out_concept(concept: str) -> bool:
    """A fixed 10% of concepts, by a seeded hash of the name: adding a source moves no other concept."""
    return hashlib.sha256(f"{SEED}:{concept}".encode()).digest()[0] < 256 * HELD_OUT_FRACTION


# --- openclipart ---------------------------------------------------------------------------------

OPENCLIPART_ROOT = Path("usr/share/openclipart/svg")
# Folders of UI icon themes, patterns, gradients and geometric exercises: not named things.
OPENCLIPART_EXCLUDED = ("computer/icons", "special", "shapes/stars", "shapes/arrows")
OPENCLIPART_MAX_BYTES = 300_000  # beyond, mostly traced photographs and maps: slow and noisy at 64 px
OPENCLIPART_MIN_BYTES = 600
_NOT_A_TITLE = {"clipart", "clip", "art", "theme", "icon", "icons", "collection", "part", "by", "various",
                "pattern", "gradient", "svg", "logo", "untitled", "test", "drawing", "image", "picture",
                "symbol", "signs", "set", "sample", "example", "new", "my"}


def svg_title(text: str) -> str:
    match = re.search(r"<dc:title>\s*([^<]*?)\s*</dc:title>", text) or re.search(r"<title>\s*([^<]*?)\s*</title>", text)
    return match.group(1) if match else ""


def openclipart_title(raw: str, vocabulary: set[str]) -> str | None:
    """The concept an openclipart title names, or None for titles that name none.

    Kept: one to four English words ("Winter Hat", "war_drum"), English meaning every word is a
    whole word of the text encoder's vocabulary (Italian "abitazione villa con giardino" is
    not) and no initial ("b w tiger"), with a leading article and trailing numbers dropped
    ("The Moon", "scale 01").
    """
    words = re.sub(r"^(a|an|the) |\s*\d+$", "", normalise(raw)).split()
    if not 1 <= len(words) <= 4 or _NOT_A_TITLE & set(words) or min(map(len, words)) < 2:
        return None
    if not all(w.isalpha() and (w in vocabulary or (w.endswith("s") and w[:-1] in vocabulary)) for w in words):
        return None
    return " ".join(words)


def openclipart_candidates(root: Path, vocabulary: set[str]) -> list[tuple[Path, str]]:
    """(SVG, concept) for files whose title names a thing; titles shared by 3+ files are a collection's."""
    found = []
    for path in sorted(root.rglob("*.svg")):
        relative = path.relative_to(root).as_posix()
        size = path.stat().st_size
        if relative.startswith(OPENCLIPART_EXCLUDED) or not OPENCLIPART_MIN_BYTES <= size <= OPENCLIPART_MAX_BYTES:
            continue
        text = path.read_text(errors="replace")
        if "<image" in text:  # embedded raster pictures: photographs, not drawings
            continue
        found.append((path, svg_title(text)))
    shared = Counter(normalise(title) for _, title in found)
    kept = []
    for path, title in found:
        concept = openclipart_title(title, vocabulary) if title and shared[normalise(title)] < 3 else None
        if concept:
            kept.append((path, concept))
    return kept


def fetch_deb_package(spec: str, cache_dir: Path) -> Path:
    """Unpack a Debian package (downloaded once with `apt-get download`, no root needed) and return its root."""
    target = cache_dir / spec.replace("=", "_").replace(":", "_")
    if (target / "complete").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Bandit B603/B607: fixed argv without a shell; `spec` is a pinned constant of SOURCES; apt-get and dpkg-deb
    # come from the operator's PATH on purpose (training only, on a Debian-family system).
    try:
        subprocess.run(["apt-get", "download", spec], cwd=cache_dir, check=True, capture_output=True)  # nosec B603 B607
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or b""
        raise RuntimeError(f"could not download the Debian package {spec} with `apt-get download` (a Debian-family "
                           f"system with that version in its archive is needed): {error} {detail.decode()}") from error
    [deb] = cache_dir.glob(spec.split("=")[0] + "_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)  # nosec B603 B607
    deb.unlink()
    (target / "complete").touch()
    return target
