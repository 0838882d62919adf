"""File discovery on real folder trees: .gitignore at every level, skipped folders, globs, odd files."""

import os
from pathlib import Path

import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing.discover import DEFAULT_MAX_FILE_SIZE, discover


def write(root: Path, relative: str, content: str = "some text\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def found(root: Path, **options) -> list[str]:
    return [path.relative_to(root).as_posix() for path in discover([root], **options).files]


def test_gitignore_rules_apply_at_every_level_with_negation(tmp_path):
    write(tmp_path, ".gitignore", "*.log\nsecret/\n/only-top.txt\n")
    for name in ["a.md", "debug.log", "only-top.txt", "secret/key.txt", "sub/only-top.txt", "sub/b.md"]:
        write(tmp_path, name)
    write(tmp_path, "sub/.gitignore", "!keep.log\n*.tmp\n")
    for name in ["sub/keep.log", "sub/other.log", "sub/scratch.tmp", "sub/deeper/c.tmp", "sub/deeper/c.md"]:
        write(tmp_path, name)
    result = discover([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == [
        "a.md",
        "sub/b.md",
        "sub/deeper/c.md",
        "sub/keep.log",
        "sub/only-top.txt",
    ]
    # debug.log, only-top.txt, secret/, sub/other.log, sub/scratch.tmp, sub/deeper/c.tmp
    assert result.skipped["gitignored"] == 6
    assert all(path.is_absolute() for path in result.files)


def test_malformed_gitignore_line_is_skipped_not_fatal(tmp_path):
    write(tmp_path, ".gitignore", "!\n*.log\n")
    write(tmp_path, "a.txt")
    write(tmp_path, "b.log")
    assert found(tmp_path) == ["a.txt"]


def test_dependency_build_virtualenv_and_hidden_folders_are_skipped(tmp_path):
    write(tmp_path, "src/main.py")
    skipped = [".git", "node_modules", ".venv", "venv", "__pycache__", "build", "dist", ".tox"]
    skipped += [".mypy_cache", ".pytest_cache", ".cache", "target", ".hidden"]
    for name in skipped:
        write(tmp_path, f"{name}/inside.txt")
        write(tmp_path, f"src/{name}/inside.txt")
    write(tmp_path, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    write(tmp_path, "myenv/lib/site.py")
    write(tmp_path, ".env", "SECRET=1\n")
    result = discover([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == ["src/main.py"]
    assert result.skipped["ignored dir"] == 2 * len(skipped) + 1
    assert result.skipped["hidden"] == 1


def test_a_folder_given_explicitly_is_walked_even_if_hidden_and_a_hidden_file_is_taken(tmp_path):
    write(tmp_path, ".notes/a.txt")
    secret = write(tmp_path, ".env")
    assert [p.name for p in discover([tmp_path / ".notes", secret]).files] == [".env", "a.txt"]


def test_include_and_exclude_globs_match_paths_relative_to_the_root(tmp_path):
    for name in ["README.md", "docs/guide.md", "docs/api/ref.rst", "docs/drafts/wip.md", "src/app.py"]:
        write(tmp_path, name)
    write(tmp_path, "src/tmp_notes.md")
    assert found(tmp_path, include=["*.md"]) == [
        "README.md",
        "docs/drafts/wip.md",
        "docs/guide.md",
        "src/tmp_notes.md",
    ]
    assert found(tmp_path, include=["docs/**/*.rst", "src/*.py"]) == ["docs/api/ref.rst", "src/app.py"]
    assert found(tmp_path, include=["*.md"], exclude=["docs/drafts/", "**/tmp_*"]) == [
        "README.md",
        "docs/guide.md",
    ]
    result = discover([tmp_path], exclude=["docs"])
    assert result.skipped["excluded"] == 1  # the folder is pruned, not walked
    assert "docs/guide.md" not in [p.relative_to(tmp_path).as_posix() for p in result.files]


def test_bad_glob_is_a_user_error(tmp_path):
    with pytest.raises(L2VError, match="--exclude"):
        discover([tmp_path], exclude=["!"])


def test_symlink_loop_ends_and_a_file_symlink_is_kept(tmp_path):
    write(tmp_path, "a/real.txt")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a" / "alias.txt").symlink_to(tmp_path / "a" / "real.txt")
    result = discover([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == ["a/alias.txt", "a/real.txt"]
    assert result.skipped["repeated dir"] == 2


def test_broken_links_fifos_and_unreadable_entries_are_counted_not_raised(tmp_path):
    write(tmp_path, "good.txt")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (tmp_path / "self.txt").symlink_to(tmp_path / "self.txt")
    os.mkfifo(tmp_path / "pipe.txt")
    write(tmp_path, "notes.txt/inside.md")  # a folder named like a file is still a folder
    result = discover([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == ["good.txt", "notes.txt/inside.md"]
    assert result.skipped["broken symlink"] == 1
    assert result.skipped["special file"] == 1
    assert result.skipped["unreadable"] == 1  # the link to itself


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_folder_without_permissions_is_counted(tmp_path):
    write(tmp_path, "locked/a.txt")
    write(tmp_path, "open.txt")
    (tmp_path / "locked").chmod(0)
    try:
        result = discover([tmp_path])
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert [p.name for p in result.files] == ["open.txt"]
    assert result.skipped["unreadable"] == 1


def test_files_over_the_size_cap_are_skipped(tmp_path):
    write(tmp_path, "small.txt", "x" * 100)
    write(tmp_path, "medium.txt", "x" * 101)
    with (tmp_path / "huge.txt").open("wb") as huge:
        huge.truncate(DEFAULT_MAX_FILE_SIZE + 1)  # sparse: no 10 MB written
    with (tmp_path / "at-limit.txt").open("wb") as at_limit:
        at_limit.truncate(DEFAULT_MAX_FILE_SIZE)
    result = discover([tmp_path])
    assert [p.name for p in result.files] == ["at-limit.txt", "medium.txt", "small.txt"]
    assert result.skipped["too large"] == 1
    small_cap = discover([tmp_path], max_file_size=100)
    assert [p.name for p in small_cap.files] == ["small.txt"]
    assert small_cap.skipped["too large"] == 3


def test_odd_names_and_deep_nesting(tmp_path):
    names = ["with space.txt", "ünïcødé 文字.md", "new\nline.txt", "-dash.txt", "semi;colon.txt"]
    for name in names:
        write(tmp_path, name)
    deep = write(tmp_path, "/".join(f"level{depth}" for depth in range(50)) + "/bottom.txt")
    result = discover([tmp_path])
    assert set(result.files) == {tmp_path / name for name in names} | {deep}
    assert len(deep.relative_to(tmp_path).parts) == 51


def test_single_files_overlapping_roots_and_sorted_unique_output(tmp_path):
    b = write(tmp_path, "b.txt")
    a = write(tmp_path, "sub/a.txt")
    result = discover([b, tmp_path, tmp_path / "sub", a])
    assert result.files == sorted({a, b})
    assert result.skipped["repeated dir"] == 1


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, "docs/a.md")
    monkeypatch.chdir(tmp_path)
    assert discover([Path("docs")]).files == [tmp_path / "docs" / "a.md"]


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(L2VError, match=r"path not found: .*nope"):
        discover([tmp_path / "nope"])
