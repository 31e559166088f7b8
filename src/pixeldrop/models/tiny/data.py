"""The (image, caption) set pixeldrop-tiny learns from, built reproducibly from registry packages.

Source: npm `emoji-datasource-google` 16.0.0 (Noto Emoji images, Apache-2.0; the package's
metadata is MIT). Every image comes with its name, short names, category and subcategory.

Names alone teach a model a dictionary, not a language, so a fixed-seed set of augmentations
with matching caption changes is added: hue shifts named by their colour, two copies side by
side ("two apples"), two different emoji side by side ("a cat and a dog"), and coloured
backgrounds. 10% of the base emoji (and everything made from them) are held out for evaluation.

Beyond emoji, the artwork of `sources.SOURCES` (Fluent, Twemoji, OpenMoji, game-icons,
openclipart, ...) teaches named concepts in several styles: each drawing is rendered by resvg at
IMAGE_SIZE on white (`cached_renders`, kept on disk) and captioned with its concept and its
source's style ("a lighthouse, silhouette", "a lighthouse emoji"); a concept the Noto emoji lack
also gets plain captions ("a lighthouse") on the pictures of the first source in `SOURCES` that
draws it, so a prompt without a style word gets the flat colour look. These drawings are not
augmented. Concepts are held out whole: those of held-out Noto emoji, and a fixed 10% of the
others (`sources.is_held_out_concept`), in every source.

The 512 px upscaler learns from sharp ground truth instead: the same Noto designs as SVGs, npm
`@iconify-json/noto` (Apache-2.0), rendered at 512 px by resvg and composed with the same
augmentations (`random_composition`).

`dataset.npz` records the fingerprint of everything it was built from (`DATASET_FINGERPRINT`):
a file built from other sources is rebuilt, and train.py drops the caches made from it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess  # nosec B404 # used for `npm pack` only (fetch_npm_package): fixed argv, no shell
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import sources
from .architecture import IMAGE_SIZE, text_encoder_path
from .sources import HELD_OUT_FRACTION, SEED, Source

EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
ICON_PACKAGE = "@iconify-json/noto@1.2.9"
RENDER_SIZE = 512
DATASET_REVISION = 2  # bump when the way samples are made changes
DATASET_FINGERPRINT = hashlib.sha256(
    f"{DATASET_REVISION}:{EMOJI_PACKAGE}:{SEED}:{sources.fingerprint()}".encode()).hexdigest()[:16]
# A drawing is kept when it covers this much of its square (openclipart has empty and full-bleed files)
# and, on white, shows this much contrast: a white flag on white teaches nothing.
MIN_COVERAGE = 0.02
MIN_CONTRAST = 12.0

SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}

# Hue ranges (degrees) and the word a person would use for them.
COLOUR_WORDS = [
    (15, "red"), (45, "orange"), (70, "yellow"), (160, "green"),
    (200, "cyan"), (255, "blue"), (290, "purple"), (335, "pink"), (360, "red"),
]
BACKGROUNDS = {
    "red": (230, 60, 60), "orange": (245, 150, 50), "yellow": (250, 220, 80),
    "green": (90, 190, 90), "blue": (70, 120, 230), "purple": (150, 90, 200),
    "pink": (245, 150, 190), "black": (25, 25, 25), "gray": (150, 150, 150),
}


@dataclass
class Sample:
    image: np.ndarray  # uint8, IMAGE_SIZE x IMAGE_SIZE x 3, on white unless the caption says
    captions: list[str]
    group: int  # index of the base emoji (or, after them, the concept) it comes from, for the held-out split
    kind: str = "emoji"  # "icon" for the drawings of `sources.SOURCES`
    source: str = "noto"  # a `Source.key` for those


@dataclass
class Emoji:
    image: Image.Image  # RGBA
    name: str
    short_names: list[str]
    category: str
    subcategory: str
    captions: list[str] = field(default_factory=list)
    code: str = ""  # code point(s) of the base emoji, "1F34E": links its concept to other sets' names
    concept: str = ""  # the base emoji's name as words (`sources.normalise`)


@dataclass
class Drawing:
    """One SVG of a `sources.SOURCES` entry, with the concept it depicts."""
    source: str  # Source.key
    ident: str  # unique within its source: the cache file's name
    name: str  # the concept as this source names it, in words ("coffee cup")
    svg: str


def npm_package_dir(spec: str, cache_dir: Path) -> Path:
    """Where `fetch_npm_package` keeps a package's files."""
    return cache_dir / spec.replace("/", "_").replace("@", "_") / "package"


def fetch_npm_package(spec: str, cache_dir: Path) -> Path:
    """Unpack an npm package (downloaded once with `npm pack`) and return its folder."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    package = npm_package_dir(spec, cache_dir)
    if (package / "package.json").exists():
        return package
    target = package.parent
    # Bandit B603/B607: the argv is fixed, with no shell; `spec` is a pinned package constant (this module's
    # or `sources.SOURCES`); `npm` is looked up on the PATH on purpose: the operator's own toolchain, training only.
    out = subprocess.run(  # nosec B603 B607
        ["npm", "pack", spec, "--silent"], cwd=cache_dir, check=True, capture_output=True, text=True
    )
    tgz = cache_dir / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as archive:
        archive.extractall(target, filter="data")
    tgz.unlink()
    return package


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _emoji_captions(name: str, short_names: list[str], category: str, subcategory: str) -> list[str]:
    shorts = [s.replace("_", " ").replace("-", " ") for s in short_names]
    captions = {name, _article(name), f"{name} emoji", f"an emoji of {_article(name)}"}
    captions.update(s for s in shorts if not s.startswith("flag "))
    captions.add(f"{_article(name)}, {subcategory.replace('-', ' ')}")
    captions.add(f"{category.lower()}: {name}")
    return sorted(captions)


def load_emoji(package: Path) -> list[Emoji]:
    records = json.loads((package / "emoji.json").read_text())
    folder = package / "img" / "google" / "64"
    emoji = []
    for record in sorted(records, key=lambda r: r["sort_order"]):
        if not record.get("has_img_google") or record["category"] == "Component":
            continue
        name = record["name"].lower()
        variants = [(record["image"], name)]
        for tone_key, variation in sorted((record.get("skin_variations") or {}).items()):
            tones = [SKIN_TONES[t] for t in tone_key.split("-") if t in SKIN_TONES]
            if variation.get("has_img_google") and tones:
                variants.append((variation["image"], f"{name}, {' and '.join(dict.fromkeys(tones))}"))
        for image_name, variant_name in variants:
            path = folder / image_name
            if not path.exists():
                continue
            image = Image.open(path).convert("RGBA").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            emoji.append(
                Emoji(
                    image=image,
                    name=variant_name,
                    short_names=record["short_names"] if variant_name == name else [],
                    category=record["category"],
                    subcategory=record["subcategory"],
                    code=record["unified"],
                    concept=sources.normalise(name),
                )
            )
    for e in emoji:
        e.captions = _emoji_captions(e.name, e.short_names, e.category, e.subcategory)
    return emoji


def on_background(image: Image.Image, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    canvas = Image.new("RGBA", image.size, colour + (255,))
    canvas.alpha_composite(image)
    return np.asarray(canvas.convert("RGB"))


def dominant_colour(image: Image.Image) -> str | None:
    """The colour word for the most common saturated hue, or None for grey-ish images."""
    hsv = np.asarray(image.convert("RGB").convert("HSV")).reshape(-1, 3).astype(np.float32)
    alpha = np.asarray(image)[..., 3].reshape(-1)
    mask = (alpha > 128) & (hsv[:, 1] > 90) & (hsv[:, 2] > 60)
    if mask.sum() < 0.15 * (alpha > 128).sum():
        return None
    hues = hsv[mask, 0] * 360.0 / 255.0
    histogram = np.histogram(hues, bins=36, range=(0, 360))[0]
    hue = (np.argmax(histogram) + 0.5) * 10
    return next(word for limit, word in COLOUR_WORDS if hue < limit)


def hue_shift(image: Image.Image, degrees: float) -> Image.Image:
    hsv = np.asarray(image.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(degrees * 255 / 360)) % 256
    shifted = Image.fromarray(hsv, "HSV").convert("RGBA")
    shifted.putalpha(image.getchannel("A"))
    return shifted


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    size = left.size[0]
    half = size // 2
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.alpha_composite(left.resize((half, half), Image.Resampling.LANCZOS), (0, half // 2))
    canvas.alpha_composite(right.resize((half, half), Image.Resampling.LANCZOS), (half, half // 2))
    return canvas


def _object_word(e: Emoji) -> str:
    return e.short_names[0].replace("_", " ") if e.short_names else e.name


def build_samples(emoji: list[Emoji], seed: int = SEED) -> list[Sample]:
    """Base emoji plus the augmented compositions, deterministically for a seed."""
    rng = np.random.default_rng(seed)
    samples = []
    for group, e in enumerate(emoji):
        captions = list(e.captions)
        colour = dominant_colour(e.image)
        if colour and colour not in e.name:
            captions.append(f"{_article(colour)} {_object_word(e)}")
        samples.append(Sample(on_background(e.image), captions, group))

    # Compositions use base emoji (skin-tone variants make captions too long to fit), and hue
    # shifts leave people and faces alone: a green face is not what "green" should teach.
    objects = [g for g, e in enumerate(emoji) if e.short_names and e.category not in ("Flags", "Symbols")]
    recolourable = [g for g in objects if emoji[g].category not in ("People & Body", "Smileys & Emotion")]
    for group in rng.choice(recolourable, size=2500):
        e = emoji[group]
        shifted = hue_shift(e.image, float(rng.uniform(40, 320)))
        colour = dominant_colour(shifted)
        if colour:
            word = _object_word(e)
            captions = [f"{_article(colour)} {word}", f"{colour} {word}"]
            samples.append(Sample(on_background(shifted), captions, group, "hue"))
    for group in rng.choice(objects, size=1500):
        e = emoji[group]
        word = _object_word(e)
        samples.append(Sample(on_background(side_by_side(e.image, e.image)),
                              [f"two {_plural(word)}", f"two {_plural(e.name)}"], group, "two"))
    for _ in range(2500):
        a, b = rng.choice(objects, size=2, replace=False)
        ea, eb = emoji[a], emoji[b]
        samples.append(Sample(on_background(side_by_side(ea.image, eb.image)),
                              [f"{_article(_object_word(ea))} and {_article(_object_word(eb))}",
                               f"{ea.name} and {eb.name}"], int(a), "pair"))
    names = sorted(BACKGROUNDS)
    for group in rng.choice(objects, size=1500):
        e = emoji[group]
        colour = names[int(rng.integers(len(names)))]
        samples.append(Sample(on_background(e.image, BACKGROUNDS[colour]),
                              [f"{_article(_object_word(e))} on a {colour} background",
                               f"{e.name}, {colour} background"], group, "background"))
    return samples


def held_out_groups(n_groups: int, seed: int = SEED) -> set[int]:
    rng = np.random.default_rng(seed + 1)
    return set(rng.choice(n_groups, size=int(n_groups * HELD_OUT_FRACTION), replace=False).tolist())


def iconify_svg(icon: dict, icon_set: dict) -> str:
    """An icon of an Iconify JSON set as a standalone SVG document."""
    box = [icon.get("left", 0), icon.get("top", 0),
           icon.get("width", icon_set.get("width", 16)), icon.get("height", icon_set.get("height", 16))]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{" ".join(map(str, box))}">{icon["body"]}</svg>')


def iconify_drawings(src: Source, package: Path) -> tuple[list[Drawing], list[tuple[str, str]]]:
    """The drawings of an Iconify set, and the name links its aliases and code points give."""
    icon_set = json.loads((package / "icons.json").read_text())
    kept = sources.iconify_names(sorted(icon_set["icons"]), src)
    drawings = [Drawing(src.key, name, concept, iconify_svg(icon_set["icons"][name], icon_set))
                for name, concept in kept.items()]
    links = []
    for alias, target in sorted(icon_set.get("aliases", {}).items()):
        # Only plain aliases: one with a flip or rotation draws something else ("arrow-left").
        if set(target) == {"parent"} and target["parent"] in kept and "skin-tone" not in alias:
            links.append((kept[target["parent"]], sources.normalise(alias)))
    chars = package / "chars.json"
    for code, name in sorted(json.loads(chars.read_text()).items()) if chars.exists() else []:
        if name in kept:
            links.append((kept[name], "U+" + sources.code_point_key(code)))
    return drawings, links


def text_vocabulary() -> set[str]:
    """The text encoder's whole words: what "an English word" means to the openclipart filter."""
    return {w for w in (text_encoder_path() / "vocab.txt").read_text().split() if w.isalpha()}


def openclipart_drawings(src: Source, root: Path) -> list[Drawing]:
    return [Drawing(src.key, path.relative_to(root).with_suffix("").as_posix().replace("/", "__"), concept,
                    path.read_text(errors="replace"))
            for path, concept in sources.openclipart_candidates(root, text_vocabulary())]


def load_drawings(src: Source, cache_dir: Path) -> tuple[list[Drawing], list[tuple[str, str]]]:
    """A source's drawings and name links, its package fetched once into `cache_dir`."""
    if src.names == "iconify":
        return iconify_drawings(src, fetch_npm_package(src.spec(), cache_dir / "npm"))
    root = sources.fetch_deb_package(src.spec(), cache_dir / "deb") / sources.OPENCLIPART_ROOT
    return openclipart_drawings(src, root), []


# resvg-py refuses a root width/height in physical units ("297mm", old Inkscape files); in px it is the same.
_PX_PER_UNIT = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


def _in_px(svg: str) -> str:
    head = re.search(r"<svg\b[^>]*>", svg)
    if head is None:
        return svg
    fixed = re.sub(r'(?<=\s)(width|height)="\s*([\d.]+)\s*(px|pt|pc|mm|cm|in)\s*"',
                   lambda m: f'{m.group(1)}="{float(m.group(2)) * _PX_PER_UNIT[m.group(3)]:g}"', head.group(0))
    return svg[:head.start()] + fixed + svg[head.end():]


def render_svg(svg: str, size: int, crop: bool = False) -> Image.Image:
    """An SVG drawn by resvg to fit a transparent size x size square, centred (aspect kept).

    `crop`: drawn larger, then cut to what it draws plus a margin, for clip art that sits
    somewhere on a whole page. System fonts are skipped so that a render does not depend on
    the machine: text in a drawing (rare, in clip art) is left out.
    """
    import resvg_py

    side = size * 4 if crop else size
    png = resvg_py.svg_to_bytes(svg_string=_in_px(svg), width=side, height=side, skip_system_fonts=True)
    image = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    box = image.getchannel("A").getbbox()
    if crop and box:
        image = image.crop(box)
        side = round(max(image.size) * 1.1)
        image.thumbnail((size * image.width // side or 1, size * image.height // side or 1), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def cached_renders(drawings: list[Drawing], cache_dir: Path, size: int = IMAGE_SIZE,
                   crop: bool = False) -> list[Image.Image | None]:
    """Each drawing rendered once at `size` px (`render_svg`), kept as an RGBA PNG under
    `cache_dir/renders-<size>/`; None where resvg cannot draw the SVG (remembered as a `.failed` file)."""
    images: list[Image.Image | None] = []
    for d in drawings:
        path = cache_dir / f"renders-{size}" / d.source / f"{d.ident}.png"
        failed = path.with_suffix(".failed")
        if not path.exists() and not failed.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                image = render_svg(d.svg, size, crop)
            except ValueError:
                failed.touch()
            else:
                image.save(path.with_suffix(".tmp"), format="PNG")
                path.with_suffix(".tmp").replace(path)
        images.append(None if failed.exists() else Image.open(path).convert("RGBA"))
    return images


def is_legible(image: Image.Image) -> bool:
    """Covers enough of its square and, on white, shows enough contrast to be seen."""
    coverage = (np.asarray(image)[..., 3] > 32).mean()
    grey = np.asarray(Image.fromarray(on_background(image)).convert("L"), dtype=np.float32)
    return bool(coverage >= MIN_COVERAGE and grey.std() >= MIN_CONTRAST)


def icon_captions(name: str, styles: tuple[str, ...], plain: bool) -> list[str]:
    """Concept and style, canonical first: "a lighthouse, silhouette", "lighthouse silhouette", ...;
    with `plain`, also "a lighthouse" and "lighthouse"."""
    captions = []
    for style in styles:
        captions += [f"{_article(name)} emoji", f"{name} emoji"] if style == "emoji" else \
            [f"{_article(name)}, {style}", f"{name} {style}"]
    if plain:
        captions += [_article(name), name]
    return list(dict.fromkeys(captions))


@dataclass
class IconSet:
    samples: list[Sample]
    held_out_groups: set[int]
    summary: dict  # per source: images and distinct concepts; "total": distinct concepts over all


def build_icon_samples(emoji: list[Emoji], held_emoji: set[int],
                       drawings: list[tuple[Drawing, Image.Image]], links: list[tuple[str, str]]) -> IconSet:
    """Captioned samples of the sources' drawings; concept groups numbered after the emoji's.

    A concept is held out when its Noto emoji is, and otherwise by `sources.is_held_out_concept`;
    plain captions go to the first source in `SOURCES` that draws a concept Noto lacks.
    """
    concepts = sources.Concepts()
    sources.link_code_points(concepts, {e.concept: e.code for e in emoji if e.code})
    for a, b in links:
        concepts.join(a, b)
    noto = {concepts.find(e.concept) for e in emoji}
    noto_held = {concepts.find(e.concept) for g, e in enumerate(emoji) if e.short_names and g in held_emoji}
    order = {s.key: i for i, s in enumerate(sources.SOURCES)}
    first_source: dict[str, int] = {}
    for d, _ in drawings:
        root = concepts.find(d.name)
        first_source[root] = min(first_source.get(root, len(order)), order[d.source])
    groups = {root: len(emoji) + i for i, root in enumerate(sorted(first_source))}
    samples, held = [], set()
    for d, image in drawings:
        root = concepts.find(d.name)
        if root in noto_held or (root not in noto and sources.is_held_out_concept(root)):
            held.add(groups[root])
        plain = root not in noto and first_source[root] == order[d.source]
        captions = icon_captions(d.name, sources.source(d.source).styles, plain)
        samples.append(Sample(on_background(image), captions, groups[root], "icon", d.source))
    names = {"noto": {e.concept for e in emoji}} | {s.key: set() for s in sources.SOURCES}
    images = dict.fromkeys(names, 0)
    images["noto"] = len(emoji)
    for d, _ in drawings:
        names[d.source].add(d.name)
        images[d.source] += 1
    counts = sources.concept_counts(concepts, names)
    summary = {key: {"images": images[key], "concepts": counts[key]} for key in names}
    summary["total"] = {"images": len(emoji) + len(drawings), "concepts": counts["total"]}
    return IconSet(samples, held, summary)


def build_dataset(cache_dir: Path) -> dict:
    """Everything training needs, as arrays: built once and stored as `dataset.npz` (with
    `concepts.json`, the images and distinct concepts per source)."""
    target = cache_dir / "dataset.npz"
    if target.exists():
        data = np.load(target, allow_pickle=False)
        if "fingerprint" in data.files and str(data["fingerprint"]) == DATASET_FINGERPRINT:
            return {k: data[k] for k in data.files}
    emoji = load_emoji(fetch_npm_package(EMOJI_PACKAGE, cache_dir / "npm"))
    samples = build_samples(emoji)
    held = held_out_groups(len(emoji))
    drawings, links = [], []
    for src in sources.SOURCES:
        found, found_links = load_drawings(src, cache_dir)
        drawings += [(d, image) for d, image in zip(found, cached_renders(found, cache_dir, crop=src.crop), strict=True)
                     if image is not None and is_legible(image)]
        links += found_links
    icons = build_icon_samples(emoji, held, drawings, links)
    samples += icons.samples
    held |= icons.held_out_groups
    captions = sorted({c for s in samples for c in s.captions})
    caption_index = {c: i for i, c in enumerate(captions)}
    width = max(len(s.captions) for s in samples)
    caption_ids = np.full((len(samples), width), -1, dtype=np.int32)
    for i, s in enumerate(samples):
        caption_ids[i, : len(s.captions)] = [caption_index[c] for c in s.captions]
    data = {
        "images": np.stack([s.image for s in samples]),
        "caption_ids": caption_ids,
        "captions": np.array(captions),
        "groups": np.array([s.group for s in samples], dtype=np.int32),
        "held_out": np.array([s.group in held for s in samples]),
        "kinds": np.array([s.kind for s in samples]),
        "sources": np.array([s.source for s in samples]),
        "fingerprint": np.array(DATASET_FINGERPRINT),
    }
    (cache_dir / "concepts.json").write_text(json.dumps(icons.summary, indent=2) + "\n")
    np.savez(target.with_suffix(".tmp.npz"), **data)
    target.with_suffix(".tmp.npz").replace(target)
    return data


def render_icons(cache_dir: Path, size: int = RENDER_SIZE) -> list[Path]:
    """Every Noto emoji SVG rendered once at `size` px as an RGBA PNG; returns their paths."""
    import resvg_py

    folder = cache_dir / f"icons-{size}"
    done = folder / "complete"
    if not done.exists():
        package = fetch_npm_package(ICON_PACKAGE, cache_dir / "npm")
        icon_set = json.loads((package / "icons.json").read_text())
        folder.mkdir(parents=True, exist_ok=True)
        for name, icon in sorted(icon_set["icons"].items()):
            png = resvg_py.svg_to_bytes(svg_string=iconify_svg(icon, icon_set), width=size, height=size)
            (folder / f"{name}.png").write_bytes(bytes(png))
        done.touch()
    return sorted(folder.glob("*.png"))


def is_held_out_icon(path: Path) -> bool:
    """A fixed 10% of the icons, by name, kept out of decoder training to measure it."""
    return hashlib.sha256(path.stem.encode()).digest()[0] < 256 * HELD_OUT_FRACTION


def random_composition(icons: list[Path], rng: np.random.Generator) -> np.ndarray:
    """One picture like those in the caption set (same kinds, same proportions), at render size."""
    def icon() -> Image.Image:
        return Image.open(io.BytesIO(icons[int(rng.integers(len(icons)))].read_bytes())).convert("RGBA")

    kind = rng.choice(["emoji", "hue", "two", "pair", "background"], p=[0.34, 0.17, 0.13, 0.23, 0.13])
    if kind == "emoji":
        return on_background(icon())
    if kind == "hue":
        return on_background(hue_shift(icon(), float(rng.uniform(40, 320))))
    if kind == "two":
        image = icon()
        return on_background(side_by_side(image, image))
    if kind == "pair":
        return on_background(side_by_side(icon(), icon()))
    colours = sorted(BACKGROUNDS)
    return on_background(icon(), BACKGROUNDS[colours[int(rng.integers(len(colours)))]])


def downsample(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """What the 64 px autoencoder sees of a render (Lanczos, as for the caption set)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def main() -> None:
    """`python -m pixeldrop.models.tiny.data [--work-dir DIR]`: build the set (or read it) and print
    the images and distinct concepts per source."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("~/.pixeldrop/tiny-training"))
    work_dir = parser.parse_args().work_dir.expanduser()
    work_dir.mkdir(parents=True, exist_ok=True)
    data = build_dataset(work_dir)
    summary = json.loads((work_dir / "concepts.json").read_text())
    for key, row in summary.items():
        print(f"{key:20} {row['images']:7,} images {row['concepts']:7,} concepts")
    print(f"{len(data['images']):,} samples, {len(data['captions']):,} distinct captions, "
          f"{int(data['held_out'].sum()):,} held out")


if __name__ == "__main__":
    main()
