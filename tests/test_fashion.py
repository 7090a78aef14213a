"""Fashion-MNIST (search/data/_fashion.py): each source checked before use, and a real search of it by the command line.

Its files come from Debian's package `dataset-fashion-mnist` (installed by `.ci/run`); without them
these tests skip, or fail under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import gzip
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import TINY_RUN, require_service, search_cli

from search.config import TrialConfig
from search.configfile import read_yaml
from search.data import _fashion, load_dataset
from search.data._fashion import CHECKSUM, FILES, load_fashion
from search.errors import UserError
from search.final import retrain
from search.report.compare import write_comparison
from search.study import StudySpec, open_search

STUDY = "schedule-tpe"  # TINY_RUN's space with the default backend


@pytest.fixture(scope="module")
def debian() -> Path:
    """The folder of Debian's Fashion-MNIST files."""
    if not all((_fashion.DEBIAN_DIR / file).is_file() for file in FILES.values()):
        require_service("Debian's dataset-fashion-mnist is not installed; apt-get install dataset-fashion-mnist")
    return _fashion.DEBIAN_DIR


@pytest.fixture
def no_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras home, so a source found is the one a test means."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


def _linked(folder: Path, source: Path) -> Path:
    """`folder` holding links to the four files of `source`."""
    folder.mkdir(parents=True)
    for file in FILES.values():
        (folder / file).symlink_to(source / file)
    return folder


def test_debians_files_are_verified_then_read_from_the_cache(
    debian: Path, no_keras_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_fashion(cache_dir=tmp_path / "cache")
    assert f"using Debian's dataset-fashion-mnist {debian}" in capsys.readouterr().err
    assert (data.name, data.checksum, data.n_classes) == ("fashion-mnist", CHECKSUM, 10)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (50_000, 10_000, 10_000)
    assert data.x_train.shape[1:] == data.inputs.shape == (28, 28)
    assert data.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.concatenate([data.x_train, data.x_val]).mean() / 255 == pytest.approx(0.2860, abs=1e-4)
    again = load_fashion(cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err == ""  # from the cache: nothing found, nothing written
    assert again.source == str(tmp_path / "cache" / "fashion-mnist.npz")
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_keras_cache_comes_before_debians_files(
    debian: Path, no_keras_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _linked(no_keras_cache / "datasets" / "fashion-mnist", debian)
    assert load_fashion(cache_dir=tmp_path / "cache").checksum == CHECKSUM
    assert f"using Keras's cache {no_keras_cache / 'datasets' / 'fashion-mnist'}" in capsys.readouterr().err


def test_a_named_folder_is_read_and_goes_by_the_datasets_name(debian: Path, tmp_path: Path) -> None:
    folder = _linked(tmp_path / "mine", debian)
    data = load_dataset(f"fashion-mnist:{folder}", tmp_path / "cache")
    assert (data.name, data.source, data.checksum) == ("fashion-mnist", str(folder), CHECKSUM)
    assert (tmp_path / "cache" / "fashion-mnist.npz").is_file()  # a resume or a worker needs no folder


def _relabelled(path: Path) -> None:
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[8] = (labels[8] + 1) % 10
    path.unlink()
    path.write_bytes(gzip.compress(bytes(labels)))


def _truncated(path: Path) -> None:
    raw = gzip.decompress(path.read_bytes())
    path.unlink()
    path.write_bytes(gzip.compress(raw[:-1]))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda path: path.unlink(), "has no train-labels-idx1-ubyte.gz (--dataset fashion-mnist:FOLDER reads"),
        (_relabelled, "does not hold Fashion-MNIST (y_train checksum mismatch)"),
        (_truncated, "(train-labels-idx1-ubyte.gz holds 59999 values, its header says 60000)"),
        (lambda path: path.unlink() or path.write_text("labels"), "does not hold Fashion-MNIST (Not a gzipped file"),
    ],
    ids=["missing", "relabelled", "truncated", "not gzip"],
)
def test_a_named_folder_without_fashion_mnist_is_refused_in_one_line(
    debian: Path, tmp_path: Path, damage: object, said: str
) -> None:
    folder = _linked(tmp_path / "mine", debian)
    damage(folder / FILES["y_train"])
    with pytest.raises(UserError) as caught:
        load_dataset(f"fashion-mnist:{folder}", tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(f"{folder} ") and said in message, message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message
    assert not (tmp_path / "cache").exists()


def test_with_no_source_one_line_says_how_to_get_it(
    no_keras_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fashion, "DEBIAN_DIR", tmp_path / "not-installed")
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):  # Keras's download fails at once
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    for bypass in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(bypass, raising=False)
    try:
        with pytest.raises(UserError) as caught:
            load_fashion(cache_dir=tmp_path / "cache")
    finally:
        # urllib builds its process-wide opener at the first urlopen, with the proxies of that moment:
        # left alone, every later request of this test process (the dashboard tests') would go to port 9.
        urllib.request.install_opener(None)
    message = str(caught.value)
    assert message.startswith(
        f"Fashion-MNIST is not in {no_keras_cache / 'datasets' / 'fashion-mnist'} nor in {tmp_path / 'not-installed'}, "
        "and Keras's download failed ("
    )
    assert message.endswith(
        "install Debian's package (apt-get install dataset-fashion-mnist), or name a folder holding its four "
        "files as Zalando names them (train-images-idx3-ubyte.gz and the others): --dataset fashion-mnist:FOLDER"
    )
    assert "\n" not in message
    assert not (tmp_path / "cache" / "fashion-mnist.npz").exists()


@pytest.fixture(scope="module")
def fashion_study(debian: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real one-trial search of Fashion-MNIST by the command line: the reference model, 1 epoch on 300 images."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fashion') / 'studies.db'}"
    result = search_cli(
        "run", "--dataset", "fashion-mnist", *TINY_RUN, "--epochs", "1", "--trials", "1", "--storage", url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"study '{STUDY}' on fashion-mnist: space schedule" in result.stdout + result.stderr
    return url


def test_a_fashion_search_records_and_exports_its_data(fashion_study: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name=STUDY, storage=fashion_study)
    assert study.user_attrs["dataset"] == "fashion-mnist"
    assert [(t.state.name, t.user_attrs["dataset"], t.user_attrs["epochs_run"]) for t in study.trials] == [
        ("COMPLETE", CHECKSUM, 1)
    ]
    exported = search_cli("export", "--storage", fashion_study, "--out", str(tmp_path / "best.yaml"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "best.yaml").read_text().startswith("# An MLP-on-Fashion-MNIST config exported by mlp-search")
    provenance = read_yaml(tmp_path / "best.yaml").provenance
    assert (provenance["dataset"], provenance["dataset_checksum"]) == ("fashion-mnist", CHECKSUM)
    with pytest.raises(UserError) as caught:
        retrain(tmp_path / "best.yaml", dataset="mnist")
    assert str(caught.value) == (
        f"{tmp_path / 'best.yaml'}'s trial trained on fashion-mnist (dataset {CHECKSUM}), not on mnist "
        "(dataset 741c988805d008ac); leave out --dataset to train on it"
    )


def test_a_file_exported_before_datasets_had_names_is_mnist(debian: Path, tmp_path: Path) -> None:
    config = tmp_path / "old.yaml"
    old = {"config": TrialConfig().to_dict(), "provenance": {"dataset": "741c988805d008ac"}}  # no name, no _checksum
    config.write_text(yaml.safe_dump(old))
    with pytest.raises(UserError, match=r"old\.yaml's trial trained on mnist \(dataset 741c988805d008ac\), not on "):
        retrain(config, dataset="fashion-mnist")


def test_a_fashion_study_resumed_on_mnist_is_refused(fashion_study: str) -> None:
    spec = StudySpec.from_attrs(optuna.load_study(study_name=STUDY, storage=fashion_study).user_attrs)
    with pytest.raises(UserError, match=f"^study '{STUDY}' was made with dataset='fashion-mnist', not 'mnist'; "):
        open_search(replace(spec, dataset="mnist"), fashion_study, STUDY, seed=0)


def test_the_comparison_takes_the_studies_of_one_dataset(fashion_study: str, tmp_path: Path) -> None:
    notes: list[str] = []
    fashion, _ = write_comparison(fashion_study, "fashion-mnist", tmp_path / "fashion", notes.append)
    mnist, _ = write_comparison(fashion_study, "mnist", tmp_path / "mnist", notes.append)
    assert STUDY in fashion and STUDY not in mnist
    assert "compare: 1 studies of fashion-mnist over the spaces size" in notes[0]
