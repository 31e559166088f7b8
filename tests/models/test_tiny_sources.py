"""pixeldrop-tiny's icon sources: the registry, names -> concepts, captions, the held-out split and
rendering, on small fake packages built here (no network)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixeldrop.models.tiny import data, evaluate, sources, train
from pixeldrop.models.tiny.sources import Source

CIRCLE = '<circle cx="16" cy="16" r="12" fill="#e33"/>'
SQUARE = '<rect x="4" y="4" width="24" height="24" fill="#33e"/>'


def fake_source(key: str, **changes) -> Source:
    return dataclasses.replace(Source(key, f"npm:@iconify-json/{key}@1.0.0", "MIT", None, ("flat icon",), "iconify"),
                               **changes)


def iconify_package(root, source: Source, icons: dict[str, str], aliases=None, chars=None):
    """An unpacked Iconify JSON package where `data.fetch_npm_package` looks first."""
    package = data.npm_package_dir(source.spec(), root / "npm")
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}")
    (package / "icons.json").write_text(json.dumps({
        "prefix": source.key, "width": 32, "height": 32,
        "icons": {name: {"body": body} for name, body in icons.items()}, "aliases": aliases or {}}))
    if chars is not None:
        (package / "chars.json").write_text(json.dumps(chars))
    return package


def test_every_source_is_pinned_licensed_and_credited_where_its_licence_asks():
    keys = [s.key for s in sources.SOURCES]
    assert len(keys) == len(set(keys))
    for s in sources.SOURCES:
        assert re.fullmatch(r"npm:(@[\w-]+/)?[\w-]+@\d+\.\d+\.\d+|deb:[\w-]+=[\w:.+~-]+", s.package), s.package
        assert s.licence and s.styles
        assert s.attribution_required == s.licence.startswith("CC-BY"), s.key
    assert sources.source("game-icons").styles[0] == "silhouette"
    assert sources.SOURCES[0].key == "fluent-emoji-flat", "flat colour is the default style"
    assert {"fluent-emoji-flat", "fluent-emoji-3d", "twemoji", "openmoji", "emojione", "flat-color-icons",
            "streamline-emojis", "game-icons", "openclipart"} == set(keys)


def test_the_readme_and_the_model_card_credit_every_source_that_asks():
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    card = (root / "src/pixeldrop/models/tiny/weights/MODEL_CARD.md").read_text()
    for s in sources.SOURCES:
        assert s.spec().split("@" if s.package.startswith("npm:") else "=")[-1] in card, s.key
        if s.credit:
            assert s.credit in readme and s.credit in card, s.key


def test_the_fingerprint_follows_the_table(monkeypatch):
    before = sources.fingerprint()
    assert sources.fingerprint() == before
    monkeypatch.setattr(sources, "SOURCES", sources.SOURCES[:-1])
    assert sources.fingerprint() != before


def test_names_become_concepts_without_skin_tones_numbers_or_junk():
    assert sources.normalise("Coffee_Cup") == sources.normalise("coffee-cup") == "coffee cup"
    assert sources.normalise("flag-for-flag-fiji") == sources.normalise("flag-fiji") == "flag fiji"
    assert sources.normalise("Map of Slovenia (in Europe)") == "map of slovenia"
    source = fake_source("set", skip=r"abstract-\d+", variant=r"-\d+")
    names = ["lighthouse", "coffee-cup", "1st-place-medal", "nose", "nose-light", "nose-medium-dark",
             "horizontal-traffic-light", "thumbs-up-dark-skin-tone", "woman-dark-skin-tone-beard",
             "astronaut-1", "astronaut-2", "2", "abstract-001"]
    assert sources.iconify_names(names, source) == {
        "lighthouse": "lighthouse", "coffee-cup": "coffee cup", "1st-place-medal": "1st place medal",
        "nose": "nose", "horizontal-traffic-light": "horizontal traffic light",
        "astronaut-1": "astronaut", "astronaut-2": "astronaut",
    }
    # Without a variant pattern, numbers belong to the name.
    assert sources.iconify_names(["keycap-10"], fake_source("plain")) == {"keycap-10": "keycap 10"}


def test_concepts_merge_across_sources_by_name_alias_and_code_point():
    concepts = sources.Concepts()
    sources.link_code_points(concepts, {"hash key": "0023-FE0F-20E3", "red apple": "1F34E"})
    sources.link_code_points(concepts, {"keycap hashtag": "0023-20e3"})
    concepts.join("a button blood type", "a button")  # an icon set's alias
    names = {"noto": {"hash key", "red apple"}, "fluent": {"keycap hashtag", "red apple", "lighthouse"},
             "twemoji": {"a button", "a button blood type"}}
    counts = sources.concept_counts(concepts, names)
    assert counts == {"noto": 2, "fluent": 3, "twemoji": 1, "total": 4}
    assert concepts.find("keycap hashtag") == concepts.find("hash key") == "hash key", "a name, not a code point"


def test_openclipart_keeps_english_titles_of_single_drawings(tmp_path):
    vocabulary = {"winter", "hat", "war", "drum", "scale", "villa", "con"}
    assert sources.openclipart_title("Winter Hat", vocabulary) == "winter hat"
    assert sources.openclipart_title("war_drum", vocabulary) == "war drum"
    assert sources.openclipart_title("scale 01", vocabulary) == "scale"
    assert sources.openclipart_title("hats", vocabulary) == "hats"
    assert sources.openclipart_title("The war drum", vocabulary) == "war drum"
    assert sources.openclipart_title("b w hat", vocabulary | {"b", "w"}) is None
    assert sources.openclipart_title("Abitazione villa con giardino", vocabulary) is None
    assert sources.openclipart_title("Clipart by Nicu Buculei - hat", vocabulary) is None
    assert sources.openclipart_title("", vocabulary) is None

    def svg(title: str, body: str = CIRCLE) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
                f'viewBox="0 0 32 32"><metadata><dc:title>{title}</dc:title></metadata>{body}{" " * 600}</svg>')

    root = tmp_path / "svg"
    for relative, text in {
        "people/winter_hat.svg": svg("Winter Hat"),
        "recreation/war_drum.svg": svg("War drum"),
        "recreation/cards/a.svg": svg("card"), "recreation/cards/b.svg": svg("card"),
        "recreation/cards/c.svg": svg("card"),  # a collection's title, not a drawing's
        "computer/icons/theme/drum.svg": svg("drum"),  # a UI theme
        "people/photo.svg": svg("scale", '<image href="x.png"/>'),  # an embedded photograph
        "people/tiny.svg": "<svg><title>hat</title></svg>",  # too small to be a drawing
    }.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    found = sources.openclipart_candidates(root, vocabulary | {"card"})
    assert [(p.relative_to(root).as_posix(), c) for p, c in found] == [
        ("people/winter_hat.svg", "winter hat"), ("recreation/war_drum.svg", "war drum")]


def test_a_missing_apt_get_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get download"):
        sources.fetch_deb_package("openclipart-svg=1:0.18+dfsg-19", tmp_path / "deb")


def test_captions_carry_concept_and_style():
    assert data.icon_captions("lighthouse", ("silhouette", "black icon"), plain=False) == [
        "a lighthouse, silhouette", "lighthouse silhouette", "a lighthouse, black icon", "lighthouse black icon"]
    assert data.icon_captions("owl", ("emoji",), plain=True) == ["an owl emoji", "owl emoji", "an owl", "owl"]
    assert data.icon_captions("owl", ("3d icon",), plain=False)[0] == "an owl, 3d icon"


def test_the_held_out_split_is_a_fixed_tenth_of_concepts():
    names = [f"concept {i}" for i in range(5000)]
    held = [n for n in names if sources.is_held_out_concept(n)]
    assert held == [n for n in names if sources.is_held_out_concept(n)], "deterministic"
    assert 0.08 < len(held) / len(names) < 0.12


def test_svgs_render_centred_on_a_transparent_square_and_are_cached(tmp_path):
    wide = data.render_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 32">'
                           '<rect width="64" height="32" fill="#f00"/></svg>', 64)
    pixels = np.asarray(wide)
    assert pixels.shape == (64, 64, 4)
    assert pixels[32, 32, 3] == 255 and tuple(pixels[32, 32, :3]) == (255, 0, 0)
    assert pixels[4, 32, 3] == 0 and pixels[60, 32, 3] == 0, "aspect kept, centred vertically"

    circle = data.iconify_svg({"body": CIRCLE}, {"width": 32, "height": 32})
    drawings = [data.Drawing("set", "circle", "circle", circle), data.Drawing("set", "broken", "broken", "<svg")]
    first = data.cached_renders(drawings, tmp_path)
    assert (tmp_path / "renders-64" / "set" / "circle.png").exists()
    assert first[1] is None and (tmp_path / "renders-64" / "set" / "broken.failed").exists()
    marker = Image.new("RGBA", (64, 64), (0, 255, 0, 255))
    marker.save(tmp_path / "renders-64" / "set" / "circle.png")
    [cached] = data.cached_renders(drawings[:1], tmp_path)
    assert cached is not None and np.array_equal(np.asarray(cached), np.asarray(marker)), "read, not drawn again"
    again = data.cached_renders(drawings[:1], tmp_path / "other")
    assert first[0] is not None and np.array_equal(np.asarray(first[0]), np.asarray(again[0]))
    big = data.cached_renders(drawings[:1], tmp_path, size=512)[0]
    assert big is not None and big.size == (512, 512) and (tmp_path / "renders-512" / "set" / "circle.png").exists()


def test_blank_and_invisible_drawings_are_not_legible():
    red = data.render_svg(data.iconify_svg({"body": CIRCLE}, {"width": 32, "height": 32}), 64)
    white = data.render_svg(data.iconify_svg({"body": CIRCLE.replace("#e33", "#fff")}, {"width": 32, "height": 32}), 64)
    empty = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert data.is_legible(red)
    assert not data.is_legible(white) and not data.is_legible(empty)


def emoji(name: str, code: str, colour=(220, 30, 30)) -> data.Emoji:
    pixels = np.zeros((64, 64, 4), dtype=np.uint8)
    pixels[16:48, 16:48] = (*colour, 255)
    e = data.Emoji(Image.fromarray(pixels, "RGBA"), name, [name.replace(" ", "_")], "Food & Drink", "food-fruit",
                   code=code, concept=sources.normalise(name))
    e.captions = data._emoji_captions(e.name, e.short_names, e.category, e.subcategory)
    return e


def test_icon_samples_merge_concepts_hold_them_out_whole_and_caption_the_default_style(monkeypatch):
    flat, silhouette = fake_source("flat"), fake_source("shapes", styles=("silhouette",))
    monkeypatch.setattr(sources, "SOURCES", (flat, silhouette))
    noto = [emoji("red apple", "1F34E"), emoji("hash key", "0023-FE0F-20E3")]
    picture = data.render_svg(data.iconify_svg({"body": CIRCLE}, {"width": 32, "height": 32}), 64)
    held_concept = next(f"thing {i}" for i in range(100) if sources.is_held_out_concept(f"thing {i}"))
    kept = next(n for n in ("boat", "castle", "tower", "tent") if not sources.is_held_out_concept(n))
    assert not sources.is_held_out_concept("lighthouse")
    drawings = [(data.Drawing("flat", "red-apple", "red apple", ""), picture),
                (data.Drawing("flat", "keycap-hashtag", "keycap hashtag", ""), picture),
                (data.Drawing("flat", "lighthouse", "lighthouse", ""), picture),
                (data.Drawing("shapes", "lighthouse", "lighthouse", ""), picture),
                (data.Drawing("shapes", kept, kept, ""), picture),
                (data.Drawing("shapes", held_concept, held_concept, ""), picture),
                (data.Drawing("flat", held_concept, held_concept, ""), picture)]
    links = [("keycap hashtag", "U+0023-20e3")]
    icons = data.build_icon_samples(noto, {1}, drawings, links)  # "hash key" is a held-out emoji
    by_name = {(s.source, s.captions[0]): s for s in icons.samples}
    assert {s.kind for s in icons.samples} == {"icon"}
    assert by_name["flat", "a lighthouse, flat icon"].captions[-2:] == ["a lighthouse", "lighthouse"]
    assert "a lighthouse" not in by_name["shapes", "a lighthouse, silhouette"].captions, "flat colour is the default"
    assert by_name["shapes", f"a {kept}, silhouette"].captions[-1] == kept, "the only drawing is the default"
    assert "red apple" not in by_name["flat", "a red apple, flat icon"].captions, "Noto keeps the plain captions"
    assert by_name["flat", "a lighthouse, flat icon"].group == by_name["shapes", "a lighthouse, silhouette"].group
    assert all(s.group >= len(noto) for s in icons.samples)
    held = {s.captions[0] for s in icons.samples if s.group in icons.held_out_groups}
    assert held == {"a keycap hashtag, flat icon", f"a {held_concept}, silhouette", f"a {held_concept}, flat icon"}
    assert icons.summary["total"] == {"images": 9, "concepts": 5}
    assert icons.summary["flat"] == {"images": 4, "concepts": 4}
    assert icons.summary["shapes"] == {"images": 3, "concepts": 3}
    again = data.build_icon_samples(noto, {1}, drawings, links)
    assert [s.captions for s in again.samples] == [s.captions for s in icons.samples]


def test_the_dataset_holds_emoji_and_icons_and_is_rebuilt_for_other_sources(tmp_path, monkeypatch):
    flat, silhouette = fake_source("flat"), fake_source("shapes", styles=("silhouette",), variant=r"-\d+")
    monkeypatch.setattr(sources, "SOURCES", (flat, silhouette))
    package = data.npm_package_dir(data.EMOJI_PACKAGE, tmp_path / "npm")
    (package / "img" / "google" / "64").mkdir(parents=True)
    (package / "package.json").write_text("{}")
    records = []
    for i, (name, colour) in enumerate([("RED APPLE", (220, 30, 30)), ("BANANA", (240, 200, 40)),
                                        ("PEAR", (40, 160, 40)), ("GRAPES", (120, 40, 160))]):
        image = emoji(name.lower(), "", colour).image
        image.save(package / "img" / "google" / "64" / f"{i}.png")
        records.append({"name": name, "unified": f"1F34{i}", "image": f"{i}.png", "sort_order": i,
                        "has_img_google": True, "category": "Food & Drink", "subcategory": "food-fruit",
                        "short_names": [name.lower().replace(" ", "_")]})
    (package / "emoji.json").write_text(json.dumps(records))
    white_flag = CIRCLE.replace("#e33", "#fff")
    iconify_package(tmp_path, flat, {"banana": CIRCLE, "lighthouse": SQUARE, "white-flag": white_flag},
                    chars={"1f341": "banana"})
    iconify_package(tmp_path, silhouette, {"lighthouse-1": SQUARE, "lighthouse-2": CIRCLE, "anchor": CIRCLE})

    dataset = data.build_dataset(tmp_path)
    icons = dataset["kinds"] == "icon"
    assert icons.sum() == 5, "the white flag on white is not legible"
    assert set(dataset["sources"][icons]) == {"flat", "shapes"} and set(dataset["sources"][~icons]) == {"noto"}
    first_captions = {str(dataset["captions"][i]) for i in dataset["caption_ids"][icons, 0]}
    assert first_captions == {"a banana, flat icon", "a lighthouse, flat icon", "a lighthouse, silhouette",
                              "an anchor, silhouette"}
    summary = json.loads((tmp_path / "concepts.json").read_text())
    assert summary["total"]["concepts"] == 6  # apple, banana, pear, grapes + lighthouse, anchor
    assert summary["shapes"] == {"images": 3, "concepts": 2}
    assert str(dataset["fingerprint"]) == data.DATASET_FINGERPRINT
    for group in np.unique(dataset["groups"]):
        assert len(set(dataset["held_out"][dataset["groups"] == group])) == 1, "a concept is held out whole"

    assert data.build_dataset(tmp_path)["images"].shape == dataset["images"].shape, "read back from the file"
    monkeypatch.setattr(data, "DATASET_FINGERPRINT", "other sources")
    (tmp_path / "renders-64" / "shapes" / "anchor.png").unlink()
    rebuilt = data.build_dataset(tmp_path)
    assert str(rebuilt["fingerprint"]) == "other sources"
    assert (tmp_path / "renders-64" / "shapes" / "anchor.png").exists(), "a rebuild renders what is missing"

    rows = {evaluate._caption_pool(dataset, held, 10, np.random.default_rng(0), "icon")[0]
            for held in (False, True) if (dataset["held_out"][icons] == held).any()}
    assert rows <= first_captions


def test_training_drops_the_caches_of_another_dataset(tmp_path):
    config = train.TrainConfig(work_dir=tmp_path)
    for name in ("latents.npz", "text.npy", "scorer.pt", "unet.pt"):
        (tmp_path / name).write_text("x")
    train.drop_stale_caches(config, "first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caches.fingerprint", "unet.pt"]
    (tmp_path / "text.npy").write_text("x")
    train.drop_stale_caches(config, "first")
    assert (tmp_path / "text.npy").exists(), "the same dataset keeps its caches"
    train.drop_stale_caches(config, "second")
    assert not (tmp_path / "text.npy").exists()


def test_pools_average_each_top1_over_other_captions_and_diversity_widens_to_8_captions(monkeypatch):
    kinds = np.array(["emoji"] * 40 + ["icon"] * 20)
    held_out = np.arange(60) % 4 == 0
    dataset = {"captions": np.array([f"caption {i}" for i in range(60)]), "caption_ids": np.arange(60)[:, None],
               "held_out": held_out, "kinds": kinds}
    asked = []

    def top1(pipe, tower, captions, seed, steps, guidance):
        asked.append((seed, {int(c.split()[1]) for c in captions}))
        return seed / 10_000

    def generate(pipe, prompts, seeds, steps, guidance):  # a picture whose grey level is its seed / 10
        return np.stack([np.full((4, 4, 3), s / 10, dtype=np.float32) for s in seeds])

    monkeypatch.setattr(evaluate, "retrieval_top1", top1)
    monkeypatch.setattr(evaluate, "_generate", generate)
    metrics = evaluate.Metrics(0.5, 0.4, 0.05, 0.0, 0.7, 10, top1_held_out_icons=0.2, scorer_top1_real_icons=0.3)
    evaluate._add_pools(metrics, None, None, dataset, 20, 5.0, 10, pools=3)

    assert [seed for seed, _ in asked] == [6000, 6100, 6200, 7000, 7100, 7200]
    for (_, rows), (held, kind) in zip(asked, [(False, "emoji"), (True, "emoji"), (True, "icon")] * 2, strict=True):
        assert all(held_out[r] == held and kinds[r] == kind for r in rows)
    assert metrics.pools == 3
    assert metrics.top1_train == pytest.approx((0.5 + 0.6 + 0.7) / 3)
    assert metrics.top1_held_out == pytest.approx((0.4 + 0.61 + 0.71) / 3)
    assert metrics.top1_held_out_icons == pytest.approx((0.2 + 0.62 + 0.72) / 3)
    assert metrics.diversity == 0.05 and metrics.diversity_wide == pytest.approx(0.1 * 10 / 6)  # seeds 1-4
