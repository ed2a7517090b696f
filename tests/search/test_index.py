"""CatalogueIndex: what a build stores, what a search returns, re-ranking, the checkpoint check,
atomic writes and adding rows."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mvlt
from mvlt.data import SyntheticCatalogue, open_catalogue, prepare_image
from mvlt.search import CatalogueIndex, IndexMismatchError, QueryError, checkpoint_sha256, store
from mvlt.search import index as index_module

from .conftest import IMAGE_SIZE, write_catalogue, write_checkpoint


def embed_text(model, text: str) -> np.ndarray:
    ids = torch.tensor([model.tokenizer.encode(text)])
    with torch.inference_mode():
        return model.encode_texts(ids, torch.ones_like(ids)).numpy()[0]


def test_build_stores_unit_embeddings_metadata_and_the_checkpoint_hash(
    index_dir: Path, checkpoint: Path, catalogue: Path
) -> None:
    manifest = json.loads((index_dir / store.MANIFEST).read_text())
    shop = open_catalogue(catalogue)
    assert manifest["products"] == len(shop)
    assert manifest["checkpoint"] == {
        "path": str(checkpoint.resolve()),
        "sha256": checkpoint_sha256(checkpoint),
    }
    assert manifest["catalogue"]["root"] == str(catalogue.parent)
    products = store.read_products(index_dir)
    assert [p.product_id for p in products] == shop.product_ids
    assert products[3].image == f"images/{shop.product_ids[3]}.png" and products[3].text == shop.texts[3]
    images, texts = store.read_embeddings(index_dir, len(products))
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    model = mvlt.MVLT.from_pretrained(checkpoint).eval()
    with torch.inference_mode():
        expected = model.encode_images(prepare_image(shop[5].image, IMAGE_SIZE)[None]).numpy()[0]
    np.testing.assert_allclose(images[5], expected, atol=1e-5)
    np.testing.assert_allclose(texts[7], embed_text(model, shop.texts[7]), atol=1e-5)


def test_text_search_ranks_product_images_by_cosine(index: CatalogueIndex) -> None:
    query = "a red cotton shirt with long sleeves"
    hits = index.search(query, k=5)
    cosine = index.embeddings["images"] @ embed_text(index.model, query)
    assert [h.row for h in hits] == np.argsort(-cosine, kind="stable")[:5].tolist()
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    for h in hits:
        assert h.score == pytest.approx(cosine[h.row], abs=1e-5) and h.cosine == h.score
        assert h.stage == "first" and h.match is None
        assert h.product_id == index.products[h.row].product_id


def test_a_products_own_photo_and_text_find_it_first(index: CatalogueIndex) -> None:
    photo = index.image_path(11)
    same_modality = index.search(image=photo, k=3, over="images")
    assert same_modality[0].row == 11 and same_modality[0].cosine == pytest.approx(1.0, abs=1e-4)
    own_text = index.search(index.products[4].text, k=1, over="texts")
    assert own_text[0].row == 4
    cross = index.search(image=photo, k=4)  # a photo is matched with the products' texts
    texts = index.embeddings["texts"] @ index.embeddings["images"][11]
    assert [h.row for h in cross] == np.argsort(-texts, kind="stable")[:4].tolist()


def test_rerank_orders_the_top_k_by_itc_logit_plus_itm(index: CatalogueIndex) -> None:
    query = "a blue skirt"
    first = index.search(query, k=12)
    hits = index.search(query, k=12, rerank=6)
    top_rows = [h.row for h in first[:6]]
    assert sorted(h.row for h in hits[:6]) == sorted(top_rows)
    assert [h.row for h in hits[6:]] == [h.row for h in first[6:]]  # the rest keep their order
    ids = torch.tensor([index.model.tokenizer.encode(query)] * 6)
    images = torch.stack([prepare_image(open_image(index, r), IMAGE_SIZE) for r in top_rows])
    with torch.inference_mode():
        itm = index.model.match_score(images, ids, torch.ones_like(ids)).numpy()
    fused = {r: index.itc_scale * h.cosine + m for r, h, m in zip(top_rows, first[:6], itm)}
    assert [h.row for h in hits[:6]] == sorted(top_rows, key=lambda r: -fused[r])
    assert [h.row for h in hits[:6]] != top_rows  # this query's order does change
    for h in hits[:6]:
        assert h.stage == "rerank" and h.score == pytest.approx(fused[h.row], abs=1e-4)
    assert all(h.stage == "first" and h.match is None for h in hits[6:])
    assert [h.rank for h in hits] == list(range(1, 13))
    # k below the re-ranked depth: the best of the re-ranked shortlist
    assert [h.row for h in index.search(query, k=2, rerank=6)] == [h.row for h in hits[:2]]


def open_image(index: CatalogueIndex, row: int):
    from mvlt.data import load_image

    return load_image(index.image_path(row))


def test_photo_rerank_scores_are_the_models_match_scores(index: CatalogueIndex) -> None:
    """A photo query's re-ranking runs the photo's unimodal stages once (the model fuses late) and
    gives ``match_score`` of the photo with each candidate text, as the text query's path does."""
    photo = index.image_path(11)
    hits = index.search(image=photo, k=6, rerank=6)
    rows = [h.row for h in hits]
    seqs = [index.model.tokenizer.encode(index.products[r].text) for r in rows]
    ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(seq)
    image = prepare_image(open_image(index, 11), IMAGE_SIZE)[None].expand(len(rows), -1, -1, -1)
    with torch.inference_mode():
        itm = index.model.match_score(image, ids, (ids != 0).long()).numpy()
    assert index.model.config.fusion_stage > 1
    for h, m in zip(hits, itm):
        assert h.stage == "rerank" and h.match == pytest.approx(float(m), abs=1e-4)


def test_bad_queries_say_what_is_wrong(index: CatalogueIndex) -> None:
    with pytest.raises(QueryError, match="exactly one"):
        index.search()
    with pytest.raises(QueryError, match="exactly one"):
        index.search("coat", image=index.image_path(0))
    with pytest.raises(QueryError, match="empty"):
        index.search("   ")
    with pytest.raises(QueryError, match="k must be"):
        index.search("coat", k=0)
    with pytest.raises(QueryError, match="rerank must be"):
        index.search("coat", rerank=-1)
    with pytest.raises(QueryError, match="over must be"):
        index.search("coat", over="sounds")
    with pytest.raises(QueryError, match="rerank scores"):
        index.search("coat", over="texts", rerank=5)
    assert len(index.search("coat", k=1000)) == len(index)  # k past the catalogue: all of it


def test_search_refuses_an_index_built_by_another_checkpoint(index_dir: Path, tmp_path: Path) -> None:
    other = write_checkpoint(tmp_path / "retrained", seed=1)
    with pytest.raises(IndexMismatchError, match="built by another checkpoint") as info:
        CatalogueIndex.load(index_dir, checkpoint=other)
    assert str(other) in str(info.value) and "Rebuild the index" in str(info.value)
    moved = shutil.copytree(
        json.loads((index_dir / store.MANIFEST).read_text())["checkpoint"]["path"], tmp_path / "moved"
    )
    assert len(CatalogueIndex.load(index_dir, checkpoint=moved)) > 0  # same bytes, new place: fine
    (moved / "vocab.txt").write_text((moved / "vocab.txt").read_text() + "extra\n")
    with pytest.raises(IndexMismatchError):
        CatalogueIndex.load(index_dir, checkpoint=moved)


def test_an_interrupted_build_leaves_the_old_index_or_none(
    checkpoint: Path, catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "index"
    monkeypatch.setattr(store, "write_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CatalogueIndex.build(checkpoint, catalogue, out, limit=4, precision="fp32")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    CatalogueIndex.build(checkpoint, catalogue, out, limit=4, precision="fp32")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(store, "write_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CatalogueIndex.build(checkpoint, catalogue, out, limit=9, precision="fp32")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_add_embeds_only_new_products(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = write_catalogue(tmp_path / "shop")
    out = tmp_path / "index"
    index = CatalogueIndex.build(checkpoint, shop, out, limit=10, precision="fp32")
    old = index.embeddings["images"].copy()
    embedded: list[int] = []
    original = index_module.model_embedder

    def counting(*args, **kwargs):
        embedder = original(*args, **kwargs)
        images = embedder.images

        def tally(rows):
            embedded.extend(rows)
            return images(rows)

        embedder.images = tally
        return embedder

    monkeypatch.setattr(index_module, "model_embedder", counting)
    reopened = CatalogueIndex.load(out, precision="fp32")
    assert reopened.add(shop) == len(open_catalogue(shop)) - 10
    assert sorted(embedded) == list(range(10, len(open_catalogue(shop))))
    np.testing.assert_array_equal(reopened.embeddings["images"][:10], old)
    again = CatalogueIndex.load(out, precision="fp32")
    assert len(again) == len(reopened) and [b["added"] for b in again.manifest["builds"]] == [10, 26]
    assert again.search(image=again.image_path(30), k=1, over="images")[0].row == 30
    before = (out / "index.json").stat().st_mtime_ns
    assert again.add(shop) == 0 and (out / "index.json").stat().st_mtime_ns == before
    assert again.kept == len(again) and CatalogueIndex.load(out, precision="fp32").kept == 0


def test_add_counts_the_products_it_keeps_as_they_are(checkpoint: Path, tmp_path: Path, caplog) -> None:
    shop = write_catalogue(tmp_path / "shop", products=6)
    index = CatalogueIndex.build(checkpoint, shop, tmp_path / "index", limit=4, precision="fp32")
    text = shop.read_text(encoding="utf-8")
    first = index.products[0]
    shop.write_text(text.replace(first.text, "an edited description", 1), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="mvlt.search"):
        assert index.add(shop) == 2
    assert index.kept == 4 and index.products[0].text == first.text  # kept, not updated
    assert "4 products already in the index kept as they are; rebuild to update them" in caplog.text


def test_a_killed_build_leaves_no_temporary_for_good_and_files_are_readable(
    checkpoint: Path, catalogue: Path, tmp_path: Path
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)  # a process that has ended: what it left behind is nobody's
    (tmp_path / f".index.tmp-{pid}" / "images").mkdir(parents=True)
    (tmp_path / f".index.old-{pid}").mkdir()
    (tmp_path / f".index.tmp-{os.getppid()}").mkdir()  # a running writer's: left alone
    (tmp_path / ".index.tmp-notapid").mkdir()
    (tmp_path / f".other.tmp-{pid}").mkdir()  # another folder's: not ours to remove
    out = tmp_path / "index"
    CatalogueIndex.build(checkpoint, catalogue, out, limit=3, precision="fp32")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f".index.tmp-{os.getppid()}", ".index.tmp-notapid", f".other.tmp-{pid}", "index"])
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [*out.iterdir(), checkpoint / "model.safetensors"]:
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_a_catalogue_without_image_files_keeps_its_images_in_the_index(
    checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    index = CatalogueIndex.build(
        checkpoint, SyntheticCatalogue(num_products=12, image_size=40), out, precision="fp32"
    )
    assert index.manifest["catalogue"]["root"] is None and index.root == out
    assert index.image_path(3) == out / "images" / "0000003.png" and index.image_path(3).is_file()
    moved = Path(shutil.move(out, tmp_path / "moved"))  # such an index moves as one folder
    index = CatalogueIndex.load(moved, precision="fp32")
    assert index.search(image=index.image_path(3), k=1, over="images")[0].row == 3
    assert index.add(SyntheticCatalogue(num_products=16, image_size=40)) == 4
    assert (moved / "images" / "0000015.png").is_file()


def test_index_errors_name_the_file(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such index folder"):
        CatalogueIndex.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"index\.json is missing"):
        CatalogueIndex.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"--data .*no such file"):
        CatalogueIndex.build(checkpoint, tmp_path / "missing.csv", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        CatalogueIndex.build(tmp_path / "nockpt", "synthetic", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_vanished_image_is_not_reranked_and_breaks_nothing(checkpoint: Path, tmp_path: Path) -> None:
    shop = write_catalogue(tmp_path / "shop", products=8)
    index = CatalogueIndex.build(checkpoint, shop, tmp_path / "index", precision="fp32")
    index.image_path(2).unlink()
    hits = index.search("a shirt", k=8, rerank=8)
    assert len(hits) == 8
    assert [h.row for h in hits if h.stage == "first"] == [2] and hits[-1].row == 2 and hits[-1].match is None


def test_a_build_from_the_image_cache_stores_the_same_embeddings(
    index_dir: Path, checkpoint: Path, catalogue: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cached"
    CatalogueIndex.build(checkpoint, catalogue, out, precision="fp32", image_cache=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1
    n = len(store.read_products(index_dir))
    assert np.array_equal(store.read_embeddings(out, n)[0], store.read_embeddings(index_dir, n)[0])
