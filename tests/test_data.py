"""Data layer: MD5 verification, offline errors, the fetch cache, dataset cards, phantoms."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mednb import cli, data, phantoms
from mednb.runtime import code_version


def _link(src, root, name=None):
    dst = root / (name or src.name)
    try:
        dst.symlink_to(src)
    except OSError:
        shutil.copy(src, dst)
    return dst


# ----------------------------------------------------------------------------- MD5 verify
def test_verify_real_file_ok(data_root, real_file, capsys):
    _link(real_file("breastmnist.npz"), data_root)
    assert cli.main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "breastmnist.npz" in out and "CORRUPT" not in out
    assert data.verify(data_root) == [("breastmnist.npz", "OK", f"md5 {data.url_md5('breastmnist')[1]}")]


def test_verify_truncated_copy_is_corrupt(data_root, real_file, capsys):
    src = real_file("breastmnist.npz")
    (data_root / "breastmnist.npz").write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _link(real_file("adrenalmnist3d.npz"), data_root)
    assert cli.main(["data", "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("CORRUPT") and "breastmnist.npz" in line for line in lines)
    assert any(line.startswith("OK") and "adrenalmnist3d.npz" in line for line in lines)
    with pytest.raises(data.DataCorrupt, match="cannot be read"):
        data.load("breastmnist", download=False)


def test_verify_flags_junk_file_without_shared_data(data_root, capsys):
    (data_root / "pneumoniamnist_64.npz").write_bytes(b"not a zip at all")
    (data_root / "unrelated.npz").write_bytes(b"ignored: not a MedMNIST file name")
    rows = data.verify(data_root)
    assert [(r[0], r[1]) for r in rows] == [("pneumoniamnist_64.npz", "CORRUPT")]
    assert cli.main(["data", "verify"]) == 1


def test_verify_empty_root(data_root, capsys):
    assert cli.main(["data", "verify"]) == 0
    assert "no MedMNIST files" in capsys.readouterr().out


# ----------------------------------------------------------------------------- offline behaviour
def test_offline_missing_file_message(data_root, no_network):
    with pytest.raises(data.DataNotFound) as e:
        data.load("breastmnist")
    msg = str(e.value)
    url, md5 = data.url_md5("breastmnist")
    assert no_network == [url]  # one download attempt, from INFO's URL
    assert "breastmnist.npz" in msg and str(data_root) in msg and url in msg and md5 in msg
    for step in ("1.", "2.", "3."):
        assert step in msg
    assert "mednb data fetch breastmnist" in msg
    assert not list(data_root.glob("*.npz")) and not list(data_root.glob(".*part"))  # nothing half-written


def test_offline_cli_fetch_is_one_readable_error(data_root, no_network, capsys):
    assert cli.main(["data", "fetch", "dermamnist", "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "dermamnist_64.npz" in err and "1." in err


def test_download_false_never_touches_network(data_root, no_network):
    with pytest.raises(data.DataNotFound, match="mednb data fetch"):
        data.load("organamnist", 128, download=False)
    assert no_network == []


def test_fetch_uses_prefilled_cache(data_root, real_file, no_network):
    _link(real_file("breastmnist.npz"), data_root)
    assert data.fetch("breastmnist") == data_root / "breastmnist.npz"
    ds = data.load("breastmnist")
    assert no_network == []
    assert (len(ds.train), len(ds.val), len(ds.test)) == (546, 78, 156)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape[1:] == (1, 28, 28)
    assert ds.train.y.shape == (546, 1) and ds.task == "binary-class" and ds.dims == 2 and ds.n_channels == 1
    card = str(ds)
    assert "binary-class" in card and "train 546 / val 78 / test 156" in card and "CC BY 4.0" in card


def test_load_real_3d(data_root, real_file, no_network):
    _link(real_file("adrenalmnist3d.npz"), data_root)
    ds = data.load("adrenalmnist3d")
    assert ds.dims == 3 and ds.train.x.shape[1:] == (1, 28, 28, 28) and ds.train.x.dtype == torch.uint8
    assert ds.class_counts("train").sum() == len(ds.train)


def test_fetch_rejects_corrupt_cached_file(data_root, no_network):
    (data_root / "breastmnist.npz").write_bytes(b"junk")
    with pytest.raises(data.DataCorrupt, match="MD5"):
        data.fetch("breastmnist")
    assert no_network == []


def test_info_offline(data_root, no_network, capsys):
    assert cli.main(["data", "info", "nodulemnist3d"]) == 0
    out = capsys.readouterr().out
    assert "nodulemnist3d" in out and "binary-class" in out and "malignant" in out
    assert data.url_md5("nodulemnist3d", 64)[1] in out and "not downloaded" in out
    assert no_network == []


def test_data_list(data_root, real_file, capsys):
    _link(real_file("breastmnist.npz"), data_root)
    assert cli.main(["data", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == set(data.names()) and len(rows) == 20
    assert rows["breastmnist"].rstrip().endswith("28") and rows["pathmnist"].rstrip().endswith("absent")
    assert "3D" in rows["adrenalmnist3d"] and "built-in" in rows["phantom2d"]


def test_data_list_into_a_closed_pipe_is_quiet(data_root):
    # `mednb data list | head -1`: the reader is gone before the command writes; no traceback, SIGPIPE's status
    proc = subprocess.Popen([sys.executable, "-m", "mednb.cli", "data", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_bad_names_and_sizes(data_root, capsys):
    with pytest.raises(ValueError, match="valid names: .*breastmnist"):
        data.load("breastmnst")
    with pytest.raises(ValueError, match="valid sizes: 28, 64"):
        data.filename("organmnist3d", 128)
    assert cli.main(["data", "info", "nosuchmnist"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    assert data.data_root() == tmp_path.resolve()
    monkeypatch.delenv("MEDNB_DATA")
    root = data.data_root()
    assert root.is_absolute() and root.name in ("data", ".medmnist")


def test_label_subset_is_stratified_and_seeded():
    y = torch.tensor([0] * 80 + [1] * 20).reshape(-1, 1)
    idx = data.label_subset(y, 0.1, seed=3)
    assert torch.equal(idx, data.label_subset(y, 0.1, seed=3))
    assert (y[idx, 0] == 0).sum() == 8 and (y[idx, 0] == 1).sum() == 2
    assert len(data.label_subset(y, 0.001)) == 2  # at least one per class
    with pytest.raises(ValueError):
        data.label_subset(y, 0)


# ----------------------------------------------------------------------------- phantoms
def test_phantom_determinism():
    a = phantoms.generate(2, 28, (12, 4, 4), seed=1)
    b = phantoms.generate(2, 28, (12, 4, 4), seed=1)
    c = phantoms.generate(2, 28, (12, 4, 4), seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train_images"], c["train_images"])


@pytest.mark.parametrize("name,size,shape", [("phantom2d", 28, (1, 28, 28)), ("phantom2d", 64, (1, 64, 64)),
                                             ("phantom3d", 28, (1, 28, 28, 28))])
def test_phantom_shapes_and_labels(name, size, shape):
    ds = data.load(name, size, counts=(16, 4, 8), cache=False)
    assert ds.train.x.shape == (16, *shape) and ds.train.x.dtype == torch.uint8
    assert ds.train.masks.shape == ds.train.x.shape and ds.train.masks.dtype == torch.uint8
    assert set(ds.train.masks.unique().tolist()) <= {0, 1}
    assert ds.class_counts("train").tolist() == [4, 4, 4, 4]  # balanced
    assert ds.task == "multi-class" and ds.labels[2] == "spiculated" and ds.dims == len(shape) - 1
    two = data.load(name, size, counts=(4, 0, 0), n_classes=2, cache=False)
    assert two.task == "binary-class" and two.n_classes == 2 and len(two.val) == 0


@pytest.mark.parametrize("dims", [2, 3])
def test_phantom_masks_align_with_lesions(dims):
    arr = phantoms.generate(dims, 28, (24, 0, 0), seed=0)
    x, m, y = arr["train_images"], arr["train_masks"], arr["train_labels"][:, 0]
    assert not m[y == 0].any()  # normal: no lesion
    assert all(m[i].any() for i in np.flatnonzero(y != 0))
    assert phantoms.lesion_contrast(x, m) > 15  # mask pixels brighter than their surroundings (uint8 units)
    shuffled = np.roll(m, 1, axis=0)  # masks of other images: no longer on the lesions
    assert phantoms.lesion_contrast(x, shuffled) < phantoms.lesion_contrast(x, m) / 2


def test_phantom_sites_shift_the_images():
    a = data.load("phantom2d", counts=(8, 0, 0), site=0, cache=False).train
    b = data.load("phantom2d", counts=(8, 0, 0), site=3, cache=False).train
    assert torch.equal(a.y.sort(0).values, b.y.sort(0).values)  # same recipe and classes...
    assert (a.x.float().mean() - b.x.float().mean()).abs() > 10  # ...different scanner
    with pytest.raises(ValueError, match="site"):
        phantoms.generate(2, 28, (1, 0, 0), site=7)


def test_phantom_cache_in_data_root(data_root):
    ds = data.load("phantom2d", counts=(8, 2, 2), seed=5)
    assert ds.path.parent == data_root / "phantoms" and ds.path.exists()
    again = data.load("phantom2d", counts=(8, 2, 2), seed=5)
    assert torch.equal(ds.train.x, again.train.x) and torch.equal(ds.test.masks, again.test.masks)


def test_phantom_difficulty_small_cnn():
    """A small cnn with a smoke-size budget is learnable but not perfect (0.80–0.97 test accuracy)."""
    from mednb import engine
    ds = data.load("phantom2d", cache=False)
    res = engine.train(ds, "cnn", engine.Recipe(epochs=8, batch_size=128), seed=0, device="cpu", progress=False)
    assert 0.80 <= res.test["acc"] <= 0.97, res.test
    assert res.test["auc"] > 0.9


def test_cache_root_choices(tmp_path, monkeypatch):
    from mednb.runtime import cache_dir, cache_root
    monkeypatch.delenv("MEDNB_CACHE_IN_DATA")
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "mednb"  # default: per-user, never the data root
    assert cache_dir("checkpoints", "ssl") == tmp_path / "xdg" / "mednb" / "checkpoints" / "ssl"
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("MEDNB_CACHE")
    monkeypatch.setenv("MEDNB_CACHE_IN_DATA", "1")
    assert cache_root() == tmp_path / "data"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only data root
    (tmp_path / "data").mkdir()
    with pytest.raises(PermissionError, match="MEDNB_CACHE"):
        cache_root()


def test_read_only_data_root_is_never_written(tmp_path, monkeypatch):
    """Loading data and caching phantoms and checkpoints leave a (read-only) data root untouched."""
    from mednb import engine
    from mednb.cam import evaluate as ev
    root = tmp_path / "shared"
    root.mkdir()
    (root / "README").write_text("read-only dataset folder")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    root.chmod(0o555)
    try:
        monkeypatch.delenv("MEDNB_CACHE_IN_DATA")
        monkeypatch.setenv("MEDNB_DATA", str(root))
        monkeypatch.setenv("MEDNB_CACHE", str(tmp_path / "cache"))
        sp = data.load("phantom2d", counts=(24, 8, 8))
        assert sp.path.parent == tmp_path / "cache" / "phantoms" and sp.path.exists()
        net, info = ev.trained(sp, "cnn", engine.Recipe(epochs=1, batch_size=8), device="cpu", progress=False,
                               model_kw={"width": 4})
        assert info["path"].parent == tmp_path / "cache" / "checkpoints" / "cam" / code_version()
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    finally:
        root.chmod(0o755)


def _load_phantom_in_process(cache, queue):
    import os as _os
    _os.environ["MEDNB_CACHE"] = cache
    _os.environ.pop("MEDNB_CACHE_IN_DATA", None)
    from mednb import data as D
    queue.put(D.load("phantom3d", counts=(40, 8, 8), seed=3).train.x.sum().item())


def test_two_processes_racing_for_one_cache_entry_both_succeed(tmp_path):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_load_phantom_in_process, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    sums = [q.get(timeout=5) for _ in procs]
    assert sums[0] == sums[1]
    files = list((tmp_path / "phantoms").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # one intact entry, no temp file left behind
    with np.load(files[0], allow_pickle=False) as z:
        assert int(z["train_images"].astype(np.int64).sum()) == sums[0]
