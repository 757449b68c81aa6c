"""Cache versioning: checkpoints per mednb code version, phantoms per generator version, `mednb cache`."""
from __future__ import annotations

import os
import re
import time

import torch

from mednb import cache, cli, data, models, runtime
from mednb import ssl as S


def test_code_version_hashes_the_package_source(tmp_path):
    v = runtime.code_version()
    assert re.fullmatch(r"[0-9a-f]{10}", v) and runtime.code_version() == v
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    files = lambda: sorted(pkg.rglob("*.py"))  # noqa: E731
    before = runtime.source_hash(files(), root=pkg)
    assert runtime.source_hash(files(), root=pkg) == before
    (pkg / "sub" / "b.py").write_text("y = 3\n")  # an edited module
    edited = runtime.source_hash(files(), root=pkg)
    assert edited != before
    (pkg / "sub" / "b.py").rename(pkg / "sub" / "c.py")  # same bytes, another module
    assert runtime.source_hash(files(), root=pkg) != edited


def test_a_checkpoint_is_reloaded_only_by_the_code_that_trained_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    x = torch.randint(0, 256, (8, 1, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    kw = dict(epochs=1, batch_size=4, lr=1e-3, progress=False, dataset="toy", all_rotations=False)
    net = lambda: models.create("cnn", 1, 2, size=16, width=8)  # noqa: E731
    r1 = S.pretrain("rotation", net(), x, **kw)
    assert r1.checkpoint.parent == runtime.checkpoint_dir("ssl") == \
        tmp_path / "checkpoints" / "ssl" / runtime.code_version()
    assert S.pretrain("rotation", net(), x, **kw).cached
    monkeypatch.setattr(runtime, "code_version", lambda: "0123456789")  # mednb's code changed
    r2 = S.pretrain("rotation", net(), x, **kw)
    assert not r2.cached and r2.checkpoint.parent == tmp_path / "checkpoints" / "ssl" / "0123456789"
    assert r1.checkpoint.exists()  # the other version's weights are left for `mednb cache prune`


def test_phantoms_are_regenerated_when_the_generator_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    s = data.load("phantom2d", counts=(8, 4, 4))
    assert s.path.name.endswith(f"_g{cache.phantom_generator()}.npz") and s.path.exists()
    monkeypatch.setattr(cache, "phantom_generator", lambda: "feedbeef00")
    s2 = data.load("phantom2d", counts=(8, 4, 4))
    assert s2.path != s.path and s2.path.name.endswith("_gfeedbeef00.npz") and s2.path.exists()
    assert torch.equal(s.train.x, s2.train.x)  # same generator code here, so the same arrays


def _tree(root, current_gen):
    cur = runtime.code_version()
    files = {
        f"checkpoints/ssl/{cur}/rotation.pt": 10, f"checkpoints/ssl/0000000000/rotation.pt": 20,
        "checkpoints/cam/legacy.pt": 30, f"checkpoints/seg/{cur}/unet.pt": 40,
        f"phantoms/phantom2d_28_site0_seed0_k4_n8-4-4_g{current_gen}.npz": 50,
        "phantoms/phantom2d_28_site0_seed0_k4_n8-4-4_gdeadbeef00.npz": 60,
        "phantoms/phantom3d_28_site0_seed0_k4_n8-4-4.npz": 70,
        "sweeps/smoke-1234abcd/results.csv": 80,
    }
    for rel, n in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * n)
    # temp files of atomic writes: one left by a process killed two hours ago, one being written now
    old = time.time() - 2 * 3600
    for rel, n in ((f"checkpoints/ssl/{cur}/.jigsaw.pt.k3j2h1", 5), ("phantoms/.phantom3d_28.npz.q8w7.npz", 7)):
        (root / rel).write_bytes(b"x" * n)
        os.utime(root / rel, (old, old))
    (root / f"checkpoints/ssl/{cur}/.byol.pt.a1b2c3").write_bytes(b"x" * 9)
    return cur


def test_entries_and_prune_keep_what_the_installed_code_reads(tmp_path):
    gen = cache.phantom_generator()
    cur = _tree(tmp_path, gen)
    rows = {(e.what, e.version, e.why): e for e in cache.entries(tmp_path)}
    assert set(rows) == {
        ("checkpoints/cam", None, "no code version"), ("checkpoints/seg", cur, "current"),
        ("checkpoints/ssl", "0000000000", "other code version"), ("checkpoints/ssl", cur, "current"),
        ("checkpoints/ssl", cur, "interrupted writes"), ("phantoms", gen, "current"),
        ("phantoms", "deadbeef00", "other generator"), ("phantoms", None, "no generator version"),
        ("phantoms", None, "interrupted writes"), ("sweeps/smoke-1234abcd", None, "results")}
    stale = {k[:2] for k, e in rows.items() if e.stale}
    assert stale == {("checkpoints/cam", None), ("checkpoints/ssl", "0000000000"), ("checkpoints/ssl", cur),
                     ("phantoms", "deadbeef00"), ("phantoms", None)}
    assert rows[("checkpoints/ssl", "0000000000", "other code version")].nbytes == 20
    assert rows[("checkpoints/ssl", cur, "interrupted writes")].n_files == 1  # the young temp file is left alone
    assert rows[("checkpoints/ssl", cur, "current")].n_files == 1
    before = sorted(tmp_path.rglob("*"))
    assert {(e.what, e.version) for e in cache.prune(tmp_path, dry_run=True)} == stale
    assert sorted(tmp_path.rglob("*")) == before  # a dry run deletes nothing
    assert {(e.what, e.version) for e in cache.prune(tmp_path)} == stale
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([f"checkpoints/seg/{cur}/unet.pt", f"checkpoints/ssl/{cur}/rotation.pt",
                           f"checkpoints/ssl/{cur}/.byol.pt.a1b2c3",
                           f"phantoms/phantom2d_28_site0_seed0_k4_n8-4-4_g{gen}.npz",
                           "sweeps/smoke-1234abcd/results.csv"])
    assert not cache.prune(tmp_path)  # nothing stale is left


def test_cli_cache_lists_and_prunes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    _tree(tmp_path, cache.phantom_generator())
    assert cli.main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"cache root: {tmp_path} (code version {runtime.code_version()}" in out
    assert re.search(r"checkpoints/ssl\s+0000000000\s+1\s+20 B\s+stale: other code version", out)
    assert re.search(r"sweeps/smoke-1234abcd\s+-\s+1\s+80 B\s+kept \(results\)", out)
    assert "192 B stale: `mednb cache prune` deletes it" in out
    assert cli.main(["cache", "prune", "--dry-run"]) == 0
    assert "would delete 192 B in 6 stale groups" in capsys.readouterr().out
    assert cli.main(["cache", "prune"]) == 0
    out = capsys.readouterr().out
    assert "deleted checkpoints/ssl 0000000000 (other code version): 1 files, 20 B" in out
    assert "deleted 192 B in 6 stale groups" in out
    assert cli.main(["cache", "prune"]) == 0
    assert "nothing stale in the cache root" in capsys.readouterr().out
    assert cache.human(1234567) == "1.2 MB"


def test_data_list_reports_phantoms_of_the_current_generator_in_the_cache_root(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEDNB_CACHE_IN_DATA")
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path / "cache"))
    data.load("phantom2d", counts=(8, 4, 4))
    (tmp_path / "cache" / "phantoms" / "phantom3d_64_site0_seed0_k4_n8-4-4_gdeadbeef00.npz").write_bytes(b"")
    assert cli.main(["data", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["phantom2d"].rstrip().endswith("built-in (cached 28)")
    assert rows["phantom3d"].rstrip().endswith("built-in")  # another generator's arrays are not read
