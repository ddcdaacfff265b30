"""The code image's keys: the environment follows uv.lock, the code layer every file it
copies (and nothing it does not). The build itself runs in
cb_assets_tests/deploy/test_scale_out_launch.py."""

from pathlib import Path

from cb_assets.bottle import code_image


def _project(root: Path) -> Path:
    for name in code_image.CODE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / "cb_assets" / "defs").mkdir(parents=True)
    (root / "cb_assets" / "defs" / "a.py").write_text("x = 1\n")
    return root


def test_the_code_key_follows_the_code_and_not_its_bytecode(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = code_image.code_key(project, "env:1")
    (project / "cb_assets" / "__pycache__").mkdir()
    (project / "cb_assets" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"\0")
    assert code_image.code_key(project, "env:1") == first
    (project / "cb_assets" / "defs" / "a.py").write_text("x = 2\n")
    assert code_image.code_key(project, "env:1") != first
    assert code_image.code_key(project, "env:2") != code_image.code_key(project, "env:1")


def test_the_environment_key_follows_the_lock_file(tmp_path: Path) -> None:
    project = _project(tmp_path)
    interpreter = Path("/opt/python")
    first = code_image.env_key(project, "base:1", interpreter)
    (project / "pyproject.toml").write_text("changed lint settings")
    assert code_image.env_key(project, "base:1", interpreter) == first
    (project / "uv.lock").write_text("another lock")
    assert code_image.env_key(project, "base:1", interpreter) != first
    assert code_image.env_key(project, "base:2", interpreter) != code_image.env_key(
        project, "base:1", interpreter
    )
