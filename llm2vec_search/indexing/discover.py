"""Find the files to index under the given paths, the way a developer expects: .gitignore rules at every
level inside them, no dependency/build/virtualenv/hidden folders, include/exclude globs, a size cap, no
symlink loops, no symlinks out of the folder being indexed.

Anything odd (unreadable, special, broken, too large) is counted by reason rather than raised, so one bad
file never stops an index run; only a path that does not exist at all is an error.
"""

import os
import re
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from ..errors import L2VError

DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
SKIPPED_DIR_NAMES = frozenset(
    {
        ".git",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        "build",
        "dist",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".cache",
        "target",
    }
)
VIRTUALENV_MARKER = "pyvenv.cfg"
# How `path_key` writes a byte that is not UTF-8.
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")
GITIGNORE = ".gitignore"


@dataclass
class Discovery:
    """Files to index (absolute, sorted, unique) and how many entries were left out, by reason."""

    files: list[Path]
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _IgnoreRules:
    """One .gitignore file: its patterns apply to paths relative to the folder it sits in."""

    base: Path
    spec: pathspec.GitIgnoreSpec

    def verdict(self, path: Path, is_dir: bool) -> bool | None:
        """True = ignored, False = re-included by a `!` rule, None = no rule here speaks about it."""
        relative = path.relative_to(self.base).as_posix() + ("/" if is_dir else "")
        return self.spec.check_file(relative).include


def _read_ignore_rules(directory: Path) -> list[_IgnoreRules]:
    """The folder's .gitignore as a one-element list, or [] when there is none (or it cannot be read)."""
    try:
        lines = (directory / GITIGNORE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError:  # git skips a malformed line and keeps the rest; so do we
        spec = pathspec.GitIgnoreSpec.from_lines([line for line in lines if _is_valid_pattern(line)])
    return [_IgnoreRules(directory, spec)]


def _is_valid_pattern(line: str) -> bool:
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


def _is_ignored(rules: Sequence[_IgnoreRules], path: Path, is_dir: bool) -> bool:
    """Deeper .gitignore files override shallower ones, as in git."""
    for rule in reversed(rules):
        verdict = rule.verdict(path, is_dir)
        if verdict is not None:
            return verdict
    return False


def _compile_globs(patterns: Sequence[str], option: str) -> pathspec.PathSpec | None:
    if not patterns:
        return None
    try:
        return pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    except (ValueError, TypeError) as exc:
        raise L2VError(f"bad {option} pattern: {exc}") from exc


def _is_skipped_dir(directory: Path) -> bool:
    name = directory.name
    return name in SKIPPED_DIR_NAMES or name.startswith(".") or (directory / VIRTUALENV_MARKER).exists()


class _Walker:
    """Walks the given roots one by one, sharing the files found and the folders visited between them."""

    def __init__(
        self,
        include: pathspec.PathSpec | None,
        exclude: pathspec.PathSpec | None,
        max_file_size: int,
    ) -> None:
        self.include = include
        self.exclude = exclude
        self.max_file_size = max_file_size
        self.files: set[Path] = set()
        self.skipped: Counter[str] = Counter()
        self.visited_dirs: set[Path] = set()

    def add_file(self, path: Path, info: os.stat_result, relative: str) -> None:
        left_out_by_globs = (self.include is not None and not self.include.match_file(relative)) or (
            self.exclude is not None and self.exclude.match_file(relative)
        )
        if left_out_by_globs:
            self.skipped["excluded"] += 1
        elif not stat.S_ISREG(info.st_mode):
            self.skipped["special file"] += 1
        elif info.st_size > self.max_file_size:
            self.skipped["too large"] += 1
        else:
            self.files.add(path)

    def walk(self, root: Path) -> None:
        """Iterative depth-first walk (deep trees cannot overflow the stack). Symlinks are followed only when
        they point inside the root (as in ripgrep and git), so indexing a folder never reads what lies outside
        it; each real folder is walked once, so a link loop (or a root inside another root) ends there."""
        real_root = root.resolve()
        stack: list[tuple[Path, list[_IgnoreRules]]] = [(root, [])]
        while stack:
            directory, inherited = stack.pop()
            try:
                real = directory.resolve(strict=True)
            except (OSError, RuntimeError):  # Python 3.11 reports a symlink loop as RuntimeError
                self.skipped["unreadable"] += 1
                continue
            if real in self.visited_dirs:
                self.skipped["repeated dir"] += 1
                continue
            self.visited_dirs.add(real)
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError:
                self.skipped["unreadable"] += 1
                continue
            rules = inherited + _read_ignore_rules(directory)
            subdirs = []
            for entry in entries:
                path = directory / entry.name
                try:
                    info = path.stat()
                except FileNotFoundError:
                    self.skipped["broken symlink" if entry.is_symlink() else "unreadable"] += 1
                    continue
                except OSError:  # e.g. a symlink that points at itself
                    self.skipped["unreadable"] += 1
                    continue
                is_dir = stat.S_ISDIR(info.st_mode)
                relative = path.relative_to(root).as_posix()
                if entry.is_symlink() and not path.resolve().is_relative_to(real_root):
                    self.skipped["link out of root"] += 1
                elif _is_ignored(rules, path, is_dir):
                    self.skipped["gitignored"] += 1
                elif is_dir:
                    if _is_skipped_dir(path):
                        self.skipped["ignored dir"] += 1
                    elif self.exclude is not None and self.exclude.match_file(relative + "/"):
                        self.skipped["excluded"] += 1
                    else:
                        subdirs.append((path, rules))
                elif entry.name.startswith("."):
                    self.skipped["hidden"] += 1
                else:
                    self.add_file(path, info, relative)
            stack.extend(reversed(subdirs))


def path_key(path: Path | str) -> str:
    """The absolute path as the index stores it. A name that is not valid UTF-8 cannot go into SQLite, so
    its undecodable bytes are written as `\\xNN` escapes; the file itself is still read by its real name."""
    return os.fsencode(os.path.abspath(path)).decode("utf-8", "backslashreplace")


def path_of(key: str) -> Path:
    """The file a stored path names: the inverse of `path_key` (its `\\xNN` escapes back to bytes), unless
    no such file exists (then the name is taken as written, as a file may really be named with `\\x`)."""
    raw = _ESCAPED_BYTE.sub(lambda match: bytes([int(match[1], 16)]), key.encode("utf-8"))
    real = os.fsdecode(raw)
    return Path(real if real != key and path_key(real) == key and os.path.lexists(real) else key)


def is_under(path: str, roots: Sequence[str]) -> bool:
    """Whether `path` is one of `roots` or inside one (plain string paths, no file system access)."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def discover(
    paths: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> Discovery:
    """Files under `paths` (folders walked recursively; files taken as named, still subject to
    include/exclude on their name and to the size cap). Globs use .gitignore syntax against the path
    relative to the folder given: `*.md` matches at any depth, `docs/**/*.rst` under docs/."""
    walker = _Walker(
        _compile_globs(include, "--include"), _compile_globs(exclude, "--exclude"), max_file_size
    )
    for given in paths:
        path = Path(os.path.abspath(given))
        try:
            info = path.stat()
        except FileNotFoundError:
            raise L2VError(f"path not found: {given}") from None
        except OSError as exc:
            raise L2VError(f"cannot read {given}: {exc.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            walker.walk(path)
        else:
            walker.add_file(path, info, path.name)
    return Discovery(files=sorted(walker.files), skipped=walker.skipped)
