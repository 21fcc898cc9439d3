"""Storage URL forms of tracker sweeps."""

from __future__ import annotations

import optuna
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.storage import default_storage_url, describe_storage, open_storage


def test_default_storage_is_a_journal_file_in_the_output_folder(tmp_path):
    url = default_storage_url(tmp_path)
    assert url == f"journal://{tmp_path.resolve()}/study.journal"
    storage = open_storage(url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "study.journal").is_file()


@pytest.mark.parametrize("form", ["journal:///{abs}", "journal:{rel}", "{abs}"])
def test_journal_url_forms(tmp_path, monkeypatch, form):
    monkeypatch.chdir(tmp_path)
    url = form.format(abs=tmp_path / "x.journal", rel="x.journal")
    optuna.create_study(storage=open_storage(url), study_name="s")
    assert (tmp_path / "x.journal").is_file()
    # a second open sees the same study
    assert optuna.load_study(storage=open_storage(url), study_name="s").study_name == "s"


def test_sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    storage = open_storage(url)
    assert isinstance(storage, optuna.storages.RDBStorage)
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "x.db").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "not a storage URL"),
        ("journal:///no/such/folder/x.journal", "does not exist"),
        ("postgresql://user:secret@localhost:1/db", "postgresql://\\*\\*\\*@localhost:1/db"),
    ],
)
def test_bad_storage_urls_are_user_errors(url, message):
    with pytest.raises(HVPSError, match=message) as info:
        open_storage(url)
    assert "secret" not in str(info.value)


def test_describe_storage_hides_passwords():
    assert describe_storage("postgresql://u:pw@db:5432/optuna") == "postgresql://***@db:5432/optuna"
    assert describe_storage("journal:///a/b.journal") == "journal:/a/b.journal"
    assert describe_storage("redis://:s3cret@cache:6379/0") == "redis://***@cache:6379/0"


def test_storage_errors_never_print_passwords(monkeypatch):
    import optuna

    def no_redis(url):
        raise ImportError("No module named 'redis'")

    monkeypatch.setattr(optuna.storages.journal, "JournalRedisBackend", no_redis)
    for url in ("redis://:s3cret@cache:6379/0", "mysql+nodriver://user:s3cret@db/optuna"):
        with pytest.raises(HVPSError) as error:
            open_storage(url)
        assert "s3cret" not in str(error.value) and "***@" in str(error.value)
