"""Just enough of Dockerfile and .dockerignore syntax for the image tests."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = ["Instruction", "build_context_includes", "parse_dockerfile", "stages"]


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``keyword`` upper-cased, ``args`` the rest of its logical line."""

    keyword: str
    args: str

    def words(self) -> list[str]:
        """The arguments split as a shell would (exec form stays a JSON string)."""
        return shlex.split(self.args)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        logical = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if token in ("**", "**/"):
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def build_context_includes(dockerignore: str, path: str) -> bool:
    """Whether ``path`` (relative to the context) is sent to the builder.

    Docker's rules: patterns in order, the last one that matches the path or
    one of its parent directories decides; ``!`` re-includes.
    """
    included = True
    candidates = [path.strip("/")]
    while "/" in candidates[-1]:
        candidates.append(candidates[-1].rsplit("/", 1)[0])
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _pattern_regex(line.lstrip("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included
