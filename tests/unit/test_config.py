"""Settings and the project registry: valid files load, broken ones name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.config import Settings, load_registry
from app.domain.errors import ConfigError
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "projects.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "projects.toml"
    path.write_text(text)
    return path


def test_example_registry_loads_two_projects() -> None:
    registry = load_registry(EXAMPLE)
    assert set(registry.projects) == {"orch", "ops"}
    ops = registry.projects["ops"]
    assert ops.state_name("code_review") == "In Review"
    assert ops.state_name("approved") == "Approved"
    assert registry.by_plane_id(ops.plane_project_id) is ops


def test_missing_field_names_file_project_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[projects.web]\nplane_project_id = "p"\nwork_item_prefix = "W"\n')
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    assert str(err.value) == f"{path}: project 'web': field 'repo' is required"


def test_wrong_type_names_the_nested_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[projects.web]\nplane_project_id = "p"\nrepo = "r"\n'
        'work_item_prefix = "W"\n[projects.web.agents.analyst]\nargv = "x"\n',
    )
    with pytest.raises(ConfigError, match=r"project 'web': field 'agents.analyst.argv'"):
        load_registry(path)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[projects.web]\nplane_project_id = "p"\nrepo = "r"\n'
        'work_item_prefix = "W"\nrepository = "typo"\n',
    )
    with pytest.raises(ConfigError, match="field 'repository'"):
        load_registry(path)


def test_unknown_status_key_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[projects.web]\nplane_project_id = "p"\nrepo = "r"\n'
        'work_item_prefix = "W"\n[projects.web.states]\nreviewing = "X"\n',
    )
    with pytest.raises(ConfigError, match="unknown status key"):
        load_registry(path)


def test_duplicate_plane_project_id_is_rejected(tmp_path: Path) -> None:
    body = 'plane_project_id = "same"\nrepo = "r"\nwork_item_prefix = "W"\n'
    path = write(tmp_path, f"[projects.a]\n{body}[projects.b]\n{body}")
    with pytest.raises(ConfigError, match="share plane_project_id"):
        load_registry(path)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_registry(write(tmp_path, "[projects\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_registry(tmp_path / "absent.toml")


def test_settings_read_orch_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://example:1/2")
    monkeypatch.setenv("ORCH_PLANE_API_TOKEN", "sekrit")
    settings = Settings()
    assert settings.redis_url == "redis://example:1/2"
    assert "sekrit" not in repr(settings)
    assert settings.plane_api_token.get_secret_value() == "sekrit"


def test_config_check_cli_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PLANE_API_TOKEN", "PLANE_WEBHOOK_SECRET", "GITEA_TOKEN", "GITEA_WEBHOOK_SECRET"):
        monkeypatch.setenv(f"ORCH_{name}", "x")
    assert main(["config", "check", "--projects", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "orch" in out and "ops" in out
    bad = write(tmp_path, '[projects.web]\nrepo = "r"\nwork_item_prefix = "W"\n')
    assert main(["config", "check", "--projects", str(bad)]) == 1
    assert "field 'plane_project_id' is required" in capsys.readouterr().err


def test_relative_data_paths_are_made_absolute_from_the_start_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_SPOOL_DIR", "spool-here")
    settings = Settings()
    assert settings.repos_dir == tmp_path / "var" / "repos"  # the default, made absolute
    assert settings.spool_dir == tmp_path / "spool-here"
    assert settings.projects_file == tmp_path / "projects.toml"


GITEA = 'forge = "gitea"\ngitea_repo = "o/r"\n'


@pytest.mark.parametrize(
    ("unset", "registry", "role", "says"),
    [
        ("PLANE_WEBHOOK_SECRET", "", "web", "ORCH_PLANE_WEBHOOK_SECRET is not set"),
        ("", 'webhook_secret = ""\n', "web", "project(s) p have an empty webhook_secret"),
        ("GITEA_WEBHOOK_SECRET", GITEA, "web", "every Gitea webhook would be refused"),
        ("GITEA_TOKEN", GITEA, "worker", "ORCH_GITEA_TOKEN is not set"),
        ("PLANE_API_TOKEN", "", "scheduler", "ORCH_PLANE_API_TOKEN is not set and project(s) p"),
    ],
)
def test_config_check_refuses_what_the_processes_refuse(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unset: str,
    registry: str,
    role: str,
    says: str,
) -> None:
    for name in ("PLANE_API_TOKEN", "PLANE_WEBHOOK_SECRET", "GITEA_TOKEN", "GITEA_WEBHOOK_SECRET"):
        if name == unset:
            monkeypatch.delenv(f"ORCH_{name}", raising=False)
        else:
            monkeypatch.setenv(f"ORCH_{name}", "x")
    path = write(
        tmp_path,
        '[projects.p]\nplane_project_id = "00000000-0000-4000-8000-000000000001"\n'
        f'repo = "r"\nwork_item_prefix = "P"\n{registry}',
    )
    monkeypatch.setenv("ORCH_PROJECTS_FILE", str(path))
    assert main(["config", "check"]) == 1
    assert says in capsys.readouterr().out
    assert main([role]) == 1  # the process refuses the same, in one line
    assert says in capsys.readouterr().err


def test_relative_paths_in_the_registry_are_taken_from_its_directory(tmp_path: Path) -> None:
    registry = load_registry(EXAMPLE)
    orch = registry.projects["orch"]
    assert orch.repo == str(EXAMPLE.parent / "var" / "remotes" / "orch.git")
    analyst = orch.agents["analyst"]  # type: ignore[index]
    assert analyst.argv == ["python3", str(EXAMPLE.parent / "examples/agents/analyst.py")]
    ops = registry.projects["ops"]
    assert ops.repo == "https://gitea.example.com/acme/ops.git"  # a URL stays
    path = write(
        tmp_path,
        '[projects.p]\nplane_project_id = "00000000-0000-4000-8000-000000000001"\n'
        'repo = "git@host:team/p.git"\nwork_item_prefix = "P"\n'
        'deploy = ["bash", "../deploy.sh", "--now"]\n',
    )
    p = load_registry(path).projects["p"]
    assert p.repo == "git@host:team/p.git"
    assert p.deploy == ["bash", str(tmp_path.parent / "deploy.sh"), "--now"]
