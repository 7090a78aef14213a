"""Where a study keeps its trials' models: an Optuna artifact store (a folder or S3), recorded in the study.

A store has a root, a folder or `s3://bucket/prefix`, and each study its own part of it:
`<root>/<study>/`. So a study deleted with `optuna delete-study` leaves one folder (or prefix)
that nothing else uses, and `search clean-artifacts` can remove it whole. The default root is
beside the SQLite file (`studies.db` -> `studies.artifacts/`). PostgreSQL has no default:
workers on several machines need a root they all reach, which only the user can name.
The study records its root and how many models it keeps, so `worker`, `export` and the
dashboard find them with nothing but the storage.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from search.errors import UserError
from search.optuna_internals import TrialArtifact, forget_trial_artifact, trial_artifacts
from search.storage import folder_name, sqlite_path

KEEP_MODELS = 3  # a study keeps the models of its best 3 complete trials unless --keep-models says otherwise
ROOT_SUFFIX = ".artifacts"  # studies.db -> studies.artifacts/
S3 = "s3://"
# Study user attrs: the store's root ("" = models not kept) and how many models the study keeps.
_ROOT, _KEEP = "artifacts", "keep_models"
T = TypeVar("T")


@dataclass(frozen=True)
class ModelStore:
    """One study's part of an artifact store: `<root>/<study>/`, a folder or an S3 prefix."""

    root: str  # an absolute folder, or s3://bucket/prefix
    study: str

    @property
    def where(self) -> str:
        """The study's part of the store, as messages name it."""
        return f"{self.root.rstrip('/')}/{self.study}/"

    def open(self) -> optuna.artifacts.FileSystemArtifactStore | _Prefixed:
        """The Optuna artifact store of this study's part (a folder is created on first use)."""
        if self.root.startswith(S3):
            bucket, _, prefix = self.root.removeprefix(S3).partition("/")
            return _Prefixed(_boto3_store(bucket), f"{prefix.strip('/')}/{self.study}/".lstrip("/"))
        folder = Path(self.root) / self.study
        folder.mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(folder)


@dataclass(frozen=True)
class Keeping:
    """How a study keeps models: the store (None: not kept), how many, and the line that tells the user."""

    store: ModelStore | None
    keep: int
    line: str


def settle_keeping(url: str, study: optuna.Study, *, keep: int | None, root: str | None) -> Keeping:
    """What `search run` (or a joining worker) keeps: the flags given, else what the study records, else
    the defaults; recorded in the study. A store other than the one the study records is refused."""
    attrs = study.user_attrs
    keep = keep if keep is not None else attrs.get(_KEEP, KEEP_MODELS)
    recorded = attrs.get(_ROOT) or None
    given = _normal(root) if root is not None else None
    if given and recorded and given != recorded:
        raise UserError(
            f"study '{study.study_name}' keeps its models in {recorded}; leave out --artifacts (or pass that), "
            "or pick another --study"
        )
    root = given or recorded or default_root(url)
    study.set_user_attr(_KEEP, keep)
    study.set_user_attr(_ROOT, root or "")
    if root is None:
        line = (
            "models are not kept: workers on several machines need one store they all reach; pass --artifacts "
            "with a shared folder or s3://bucket/prefix"
        )
        return Keeping(None, keep, line if keep else "")
    store = ModelStore(root, folder_name(study.study_name))
    if not keep:
        return Keeping(store, keep, "no model is kept (--keep-models 0)")
    if not root.startswith(S3):
        if not given and root != default_root(url) and not Path(root).is_dir():
            # A worker on a machine that does not share the study's folder would keep models where no one looks.
            return Keeping(None, keep, f"this worker keeps no model: the study's store {root} is not on this machine")
        _check_folder(Path(root))
    return Keeping(store, keep, f"the models of the best {keep} complete trials are kept in {store.where}")


def recorded_store(attrs: dict, study: str) -> ModelStore | None:
    """The store a study's user attrs record, or None (models not kept, or a study older than keeping)."""
    root = attrs.get(_ROOT)
    return ModelStore(root, study) if root else None


def default_root(url: str) -> str | None:
    """The root beside a SQLite file (`studies.db` -> `studies.artifacts`); None for other storages."""
    path = sqlite_path(url)
    return str(path.resolve().with_suffix(ROOT_SUFFIX)) if path is not None else None


def _normal(root: str) -> str:
    """`--artifacts` as recorded: an S3 URL as given, a folder made absolute (workers start elsewhere)."""
    if root.startswith(S3):
        if not root.removeprefix(S3).split("/")[0]:
            raise UserError(f"--artifacts {root} names no bucket; use s3://bucket or s3://bucket/prefix")
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def _check_folder(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the model store {root} ({error.strerror}); pass another --artifacts or --keep-models 0"
        ) from None


def _boto3_store(bucket: str) -> optuna.artifacts.Boto3ArtifactStore:
    try:
        import boto3  # noqa: F401  (Optuna imports it too; this only turns its absence into one line)
    except ImportError:
        raise UserError("an s3:// model store needs boto3: pip install -e '.[s3]' (or pip install boto3)") from None
    return optuna.artifacts.Boto3ArtifactStore(bucket)


class _Prefixed:
    """An artifact store with every id under one prefix: a study's part of a bucket."""

    def __init__(self, store: optuna.artifacts.Boto3ArtifactStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def open_reader(self, artifact_id: str) -> IO[bytes]:
        return self.store.open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: IO[bytes]) -> None:
        self.store.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + artifact_id)


class EveryStudysStore:
    """The dashboard's artifact store: each artifact read from the store of whichever study holds it.

    optuna-dashboard takes one store for a whole storage, and asks it by artifact id alone. The
    studies are looked up at each request, so studies made after the dashboard started show too.
    """

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage

    def _stores(self) -> list[ModelStore]:
        studies = self.storage.get_all_studies()
        return [s for study in studies if (s := recorded_store(study.user_attrs, study.study_name)) is not None]

    def open_reader(self, artifact_id: str) -> IO[bytes]:
        return self._first(lambda store: store.open_reader(artifact_id), artifact_id)

    def write(self, artifact_id: str, content_body: IO[bytes]) -> None:
        raise ArtifactNotFound("uploads through the dashboard are not kept: `search run` keeps the models")

    def remove(self, artifact_id: str) -> None:
        self._first(lambda store: store.remove(artifact_id), artifact_id)

    def _first(self, act: Callable[[Any], T], artifact_id: str) -> T:
        """`act` on the first study's store that holds the artifact."""
        for store in self._stores():
            try:
                return act(store.open())
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"no study's store holds artifact {artifact_id}")


def copy_artifact(store: Any, artifact_id: str, path: Path) -> None:
    """Copy artifact `artifact_id` out of `store` (an open one) to `path`; where that fails, no partial file stays."""
    try:
        with store.open_reader(artifact_id) as reader, path.open("wb") as out:
            shutil.copyfileobj(reader, out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def forget_artifacts(study: optuna.Study, artifacts: Iterable[TrialArtifact], open_store: Callable[[], Any]) -> None:
    """Forget trials' artifacts: each one's record first, then its file (the store opened on first need).

    A crash between the two leaves a file no trial records, which `search clean-artifacts` removes;
    never a record without its file. A file another worker removed first, or one left behind,
    costs disk, not the search.
    """
    store = None
    for artifact in artifacts:
        forget_trial_artifact(study, artifact.number, artifact.artifact_id)
        with contextlib.suppress(Exception):
            store = store or open_store()
            store.remove(artifact.artifact_id)


def clean_artifacts(url: str, storage: optuna.storages.BaseStorage, root: str | None) -> list[str]:
    """Remove what no study of the storage uses from a store's root; one line per thing done or to do.

    In a folder root: the folder of a study the storage no longer has (deleted with `optuna
    delete-study`), and in a study's own folder the files no trial records (left by an upload that
    failed midway or a worker killed mid-upload) unless the study has a trial running (its
    upload may be under way). An S3 root: the lines say what to remove, with the AWS command line.
    """
    studies = {s.study_name: s for s in storage.get_all_studies()}
    roots = {r for s in studies.values() if (r := s.user_attrs.get(_ROOT))}
    roots |= {r for r in (_normal(root) if root else default_root(url),) if r}
    lines = []
    for found in sorted(roots):
        if found.startswith(S3):
            gone = "a study no longer in the storage" if not studies else f"any study but {', '.join(studies)}"
            lines.append(f"{found}: remove the prefixes of {gone} with `aws s3 rm --recursive {found}/STUDY/`")
            continue
        lines += _clean_folder(Path(found), studies, storage) or [f"{found}: nothing to clean"]
    return lines or ["no model store to clean"]


def _clean_folder(root: Path, studies: dict, storage: optuna.storages.BaseStorage) -> list[str]:
    if not root.is_dir():
        return []
    lines = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name not in studies:
            count = sum(1 for _ in folder.iterdir())
            shutil.rmtree(folder)
            lines.append(f"removed {folder}: {count} file(s) of study '{folder.name}', which the storage no longer has")
            continue
        study = optuna.load_study(study_name=folder.name, storage=storage)
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            lines.append(f"left {folder} alone: study '{folder.name}' has a trial running; clean again when it ends")
            continue
        recorded = {a.artifact_id for a in trial_artifacts(study)}
        stray = [p for p in folder.iterdir() if p.name not in recorded]
        for path in stray:
            path.unlink()
        if stray:
            lines.append(f"removed {len(stray)} file(s) from {folder} that no trial of '{folder.name}' records")
    return lines
