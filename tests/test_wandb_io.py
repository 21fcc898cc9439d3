"""W&B modes and ``wandb-artifact://`` references: one spelling, one-line errors, lineage.

No test reaches W&B's servers: the online cases replace ``wandb.Api`` by a fake that behaves as
the public API does (``artifact(name)`` raising for a missing artifact, ``.type``, ``.download``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import wandb

from hvps_lightning.cli import main
from hvps_lightning.errors import HVPSError
from hvps_lightning.wandb_io import (
    WANDB_MODES,
    log_path_artifact,
    resolve_path,
    resolve_wandb_mode,
    use_resolved_artifacts,
)

REFERENCE = "wandb-artifact://me/hvps-lightning/detections-motchallenge_step:v3"


class FakeArtifact:
    def __init__(self, kind: str, files: dict[str, str]) -> None:
        self.type = kind
        self.files = files

    def download(self, root: str) -> str:
        for name, text in self.files.items():
            (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(root) / name).write_text(text)
        return root


class FakeApi:
    """The part of ``wandb.Api`` the resolver uses."""

    artifacts: ClassVar[dict[str, FakeArtifact]] = {}

    def artifact(self, name: str, type: str | None = None) -> FakeArtifact:
        if name not in self.artifacts:
            raise wandb.errors.CommError(f"artifact '{name}' not found in 'me/hvps-lightning'")
        return self.artifacts[name]


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeApi]:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HVPS_ARTIFACT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wandb, "Api", FakeApi)
    FakeApi.artifacts = {
        "me/hvps-lightning/detections-motchallenge_step:v3": FakeArtifact("dataset", {"0002.json": "{}"}),
        "me/hvps-lightning/model-abc:v1": FakeArtifact("model", {"model.ckpt": "x"}),
    }
    return FakeApi


def test_modes_are_spelled_one_way(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WANDB_MODES == ("auto", "online", "offline", "disabled")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SWEEP_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # Lightning's spelling of offline
    assert resolve_wandb_mode("auto") == "offline"
    with pytest.raises(HVPSError, match="--wandb off: expected one of auto, online, offline, disabled"):
        resolve_wandb_mode("off")


def test_plain_paths_pass_through() -> None:
    assert resolve_path("cache/detections", "dataset", "--detections") == "cache/detections"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("wandb-artifact://detections", "expected wandb-artifact://[entity/]project/name:version"),
        (REFERENCE, "W&B is offline here"),
    ],
)
def test_bad_references_are_one_line(
    reference: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    code = main(["track", "--detections", reference, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and reference in err and "--detections" in err
    assert not (tmp_path / "out").exists()


def test_missing_and_wrongly_typed_artifacts(online: type[FakeApi]) -> None:
    missing = r"--detections wandb-artifact://me/p/nope:v0: W&B could not find.*CommError"
    with pytest.raises(HVPSError, match=missing):
        resolve_path("wandb-artifact://me/p/nope:v0", "dataset", "--detections")
    with pytest.raises(HVPSError, match="a 'dataset' artifact, but --ckpt_path needs a 'model' artifact"):
        resolve_path(REFERENCE, "model", "--ckpt_path")


def test_a_resolved_artifact_is_a_local_path_and_an_input_of_the_next_run(
    online: type[FakeApi], tmp_path: Path
) -> None:
    folder = Path(resolve_path(REFERENCE, "dataset", "--detections"))
    assert (folder / "0002.json").read_text() == "{}"
    checkpoint = Path(resolve_path("wandb-artifact://me/hvps-lightning/model-abc:v1", "model", "init_from"))
    assert checkpoint.name == "model.ckpt" and checkpoint.is_file()

    class Run:
        def __init__(self) -> None:
            self.used: list[Any] = []
            self.inputs: dict[str, Any] = {}
            self.settings = type("Settings", (), {"_offline": False})()
            update = lambda _, values, allow_val_change: self.inputs.update(values)  # noqa: E731
            self.config = type("Config", (), {"update": update})()

        def use_artifact(self, artifact: Any) -> None:
            self.used.append(artifact)

    run = Run()
    assert use_resolved_artifacts(run) == [REFERENCE, "wandb-artifact://me/hvps-lightning/model-abc:v1"]
    assert run.used == [online.artifacts[n] for n in ("me/hvps-lightning/detections-motchallenge_step:v3",
                                                      "me/hvps-lightning/model-abc:v1")]  # fmt: skip
    assert run.inputs["inputs"][0] == REFERENCE
    assert use_resolved_artifacts(run) == []  # declared once


def test_log_path_artifact_offline(tmp_path: Path) -> None:
    from wandb_offline import read_offline_run

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "0002.json").write_text("{}")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="hvps-test", reinit="create_new")
    try:
        log_path_artifact(run, tmp_path / "cache", "detections motchallenge/0002", "dataset", {"k": 1})
        with pytest.raises(HVPSError, match="artifact type 'cache'"):
            log_path_artifact(run, tmp_path / "cache", "x", "cache")
    finally:
        run.finish()
    (found,) = read_offline_run(next((tmp_path / "wandb").glob("offline-run-*"))).artifacts
    assert found == {"name": "detections-motchallenge-0002", "type": "dataset", "files": ["0002.json"],
                     "metadata": {"k": 1}}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["infer", "--model", REFERENCE, "--input", "frames", "--out", "OUT"], "--model"),
        (["infer", "--mots-checkpoint", REFERENCE, "--semantic-checkpoint", "s.ckpt", "--input", "frames",
          "--out", "OUT"], "--mots-checkpoint"),
        (["bundle", "--mots-checkpoint", "m.ckpt", "--semantic-checkpoint", REFERENCE, "--out", "OUT"],
         "--semantic-checkpoint"),
        (["export", "--model", REFERENCE, "--format", "onnx", "--out", "OUT"], "--model"),
    ],
)  # fmt: skip
def test_models_and_bundles_take_references_too(
    args: list[str], option: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    code = main([str(out) if a == "OUT" else a for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{option} {REFERENCE}: W&B is offline here" in err
    assert not out.exists()
