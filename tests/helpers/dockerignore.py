"""Which paths a .dockerignore file leaves out of a Docker build context, decided as Docker decides it: a port of
moby's patternmatcher (``New``, ``Pattern.compile``/``match``, ``MatchesOrParentMatches``: the rules BuildKit
applies when it sends the context) and of its ignorefile reader.

docker-py's ``docker.utils.build.PatternMatcher`` implements moby's older ``Matches``, deprecated there as buggy:
it checks only the one parent directory as deep as the pattern, so ``**/.pytest_cache`` would not cover
``.pytest_cache/v/cache/nodeids``, which Docker leaves out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

_ESCAPED = set(".+()|{}$")  # regexp metacharacters with no meaning in Go's filepath.Match


def go_clean(path: str) -> str:
    """Go's path/filepath.Clean (slash-separated)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    return ("/" + cleaned) if rooted else (cleaned or ".")


def go_dir(path: str) -> str:
    """Go's path/filepath.Dir."""
    return go_clean(path[: path.rfind("/") + 1]) if "/" in path else "."


class Pattern:
    def __init__(self, cleaned: str, exclusion: bool):
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.kind, self.regexp = self._compile(cleaned)

    @staticmethod
    def _compile(pattern: str) -> tuple[str, re.Pattern | None]:
        reg, kind, k, n, i = "^", "exact", 0, len(pattern), 0
        while k < n:
            ch = pattern[k]
            k += 1
            if ch == "*":
                if k < n and pattern[k] == "*":  # some flavour of "**"
                    k += 1
                    if k < n and pattern[k] == "/":  # treat **/ as **
                        k += 1
                    if k >= n:  # "**" at the end: anything below
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            reg += ".*"
                            kind = "regexp"
                    else:  # any number of directories, even none
                        reg += "(.*/)?"
                        kind = "regexp"
                    if i == 0:
                        kind = "suffix"
                else:  # "*": anything but "/"
                    reg += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                reg += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPED:
                reg += "\\" + ch
            elif ch == "\\":
                if k < n:
                    reg += "\\" + pattern[k]
                    k += 1
                    kind = "regexp"
                else:
                    reg += "\\\\"
            elif ch in "[]":
                reg += ch
                kind = "regexp"
            else:
                reg += ch
            i += 1
        if kind != "regexp":
            return kind, None
        try:
            return kind, re.compile(reg + r"\Z")
        except re.error as e:
            raise ValueError(f"bad .dockerignore pattern {pattern!r}: {e}") from None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":  # strip the trailing **
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":  # strip the leading **; **/foo also matches foo
            suffix = self.cleaned[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return bool(self.regexp.match(path))


class PatternMatcher:
    def __init__(self, patterns: list[str]):
        self.patterns: list[Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                p = p[1:]
            self.patterns.append(Pattern(p, exclusion))
        self.exclusions = any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """moby's MatchesOrParentMatches: ``path`` (slash-separated, relative to the context root) or one of its
        parent directories matches a pattern, and no later ``!`` pattern takes it back."""
        path = go_clean(path)
        parent = go_dir(path)
        parent_dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:  # nothing this pattern could change
                continue
            match = pattern.match(path)
            if not match and parent != ".":
                match = any(pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))
            if match:
                matched = not pattern.exclusion
        return matched


def read_dockerignore(path: Path) -> list[str]:
    """The patterns of a .dockerignore file, as moby's ignorefile.ReadAll reads them: comment lines and blank
    lines dropped, each pattern trimmed and cleaned, a leading "/" removed."""
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(("!" if invert else "") + line)
    return patterns


def context_files(root: Path, matcher: PatternMatcher) -> Iterator[str]:
    """The files a build with this context root sends (relative, slash-separated). Like BuildKit, it does not
    enter a left-out directory unless a ``!`` pattern could take something under it back."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel + "/"
        if not matcher.exclusions:
            dirnames[:] = [d for d in dirnames if not matcher.matches(rel + d)]
        for name in filenames:
            if not matcher.matches(rel + name):
                yield rel + name
