"""What a ``sub`` condition admits beyond what it evidently means.

A ``StringLike`` pattern is read component by component (project, ref type, ref) and, for
each way it reaches too far (a look-alike group or branch, a tag where a branch was meant),
yields an example ``sub`` it admits. Used by the linting and by :func:`policy_for_token`,
which refuses such patterns.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from gitlab_botocore.explanations import format_sub, sub_components

from .evaluation import _wildcard
from .naming import _WILDCARDS, has_wildcard
from .report import Severity

_VALID_PROJECT = re.compile(r"[\w][\w.-]*(?:/[\w][\w.-]*)+", re.ASCII)
# A group no one in the policy's audience owns, for the requests an outsider could make.
_OUTSIDER_GROUP = "outsider-group/project"


@dataclasses.dataclass(frozen=True)
class _SubProbe:
    """A ``sub`` a pattern admits, and what it stands for (``text`` follows "it lets in")."""

    severity: Severity
    category: str
    text: str
    sub: str


def _fill(pattern: str, first: str, rest: str = "x") -> str:
    """``pattern`` with its first wildcard replaced by ``first`` and the others by ``rest``.

    A ``?`` takes one character of its filler.
    """
    out: list[str] = []
    filler = first
    for char in pattern:
        if char in _WILDCARDS:
            out.append(filler[:1] if char == "?" else filler)
            filler = rest
        else:
            out.append(char)
    return "".join(out)


def _glued(value: str) -> bool:
    """Whether the first wildcard of ``value`` extends a name (``main*``, ``*main``).

    ``release/*``, ``v1.*`` and ``v*`` start a new part of the name: GitLab can protect
    exactly that pattern. ``main*`` also matches ``main-evil``, which a protection rule for
    ``main`` does not cover.
    """
    index = _first_wildcard(value)
    before, after = value[:index], value[index + 1 :]
    if before:
        return len(before) >= 2 and before[-1].isalnum()
    return bool(after) and after[0].isalnum()


def _benign_type(ref_type: str | None) -> str:
    if ref_type is None or not has_wildcard(ref_type):
        return ref_type or "branch"
    return next((t for t in ("branch", "tag") if _wildcard(ref_type).fullmatch(t)), "branch")


def _approximate(pattern: str) -> dict[str, str]:
    """Components for a pattern whose wildcards span several (``project_path:g/p:*``).

    The literal text before the first wildcard is what the pattern pins; the rest is
    read as "anything".
    """
    literal = pattern[: _first_wildcard(pattern)]
    prefix = "project_path:"
    if not literal.startswith(prefix):
        project = "*"
    else:
        rest = literal[len(prefix) :]
        project = rest.split(":", 1)[0] if ":" in rest else rest + "*"
    return {"project_path": project, "ref_type": "*", "ref": "*"}


def _sub_probes(value: str, base: str, own_ref_type: str | None) -> list[_SubProbe]:
    """The subs that one ``sub`` condition value admits beyond what it evidently means."""
    exact = sub_components(value)
    if base != "StringLike" or not has_wildcard(value):
        if exact is None:
            return []
        probes = _shape_notes(exact, value)
        ref = exact.get("ref", "")
        if base == "StringEqualsIgnoreCase" and ref.swapcase() != ref:
            text = (
                f"refs whose name differs from {ref} only in case ({base} ignores case, Git "
                "and GitLab's protection rules do not)"
            )
            probes.insert(
                0,
                _SubProbe(
                    "security", "ref-case", text, format_sub({**exact, "ref": ref.swapcase()})
                ),
            )
        return probes
    pattern = _SubPattern(value, exact or _approximate(value), own_ref_type)
    found = pattern.project_probes()
    if not any(p.category == "other-group" for p in found):
        found += pattern.ref_type_probes() + pattern.ref_probes()
    if exact is not None:
        found += _shape_notes(exact, value)
    return found


class _SubPattern:
    """A ``StringLike`` sub pattern, read component by component."""

    def __init__(self, value: str, components: dict[str, str], own_ref_type: str | None) -> None:
        self.value = value
        self.components = components
        self.own_ref_type = own_ref_type
        self.matcher = _wildcard(value)
        tail = value.rpartition(":")[2]
        self.fallback_refs = ["x", "main"] + ([tail] if tail and not has_wildcard(tail) else [])

    def _example(self, **changes: str) -> str | None:
        """A sub in the pattern's shape with ``changes``, if the pattern admits it."""
        project = _fill(self.components["project_path"], "x")
        if not _VALID_PROJECT.fullmatch(project):
            project = "group/project"
        ref = self.components.get("ref")
        for fallback in self.fallback_refs:
            values = {
                "project_path": project,
                "ref_type": _benign_type(self.components.get("ref_type")),
                "ref": _fill(ref, fallback) if ref else fallback,
                **changes,
            }
            sub = format_sub({name: values[name] for name in self.components})
            if self.matcher.fullmatch(sub):
                return sub
        return None

    def _probe(
        self, severity: Severity, category: str, text: str, **changes: str
    ) -> list[_SubProbe]:
        sub = self._example(**changes)
        return [] if sub is None else [_SubProbe(severity, category, text, sub)]

    def project_probes(self) -> list[_SubProbe]:
        project = self.components["project_path"]
        if not has_wildcard(project):
            return []
        index = _first_wildcard(project)
        literal = project[:index]
        if "/" not in literal:
            text = (
                f"projects of groups whose name merely starts with {literal!r} (anyone can "
                "create such a group on a shared instance)"
                if literal
                else "projects of any group on the instance"
            )
            for filler in ("-evil/project", "-evil", _OUTSIDER_GROUP, "/project"):
                candidate = _fill(project, filler)
                if _VALID_PROJECT.fullmatch(candidate) and candidate.split("/")[0] != literal:
                    return self._probe("security", "other-group", text, project_path=candidate)
            return []
        rest = project[index + 1 :]
        whole_segment = project[index] == "*" and literal.endswith("/") and rest[:1] in ("", "/")
        if whole_segment and not has_wildcard(rest):
            text = (
                f"every project of {literal.rstrip('/')} and its subgroups, including any "
                "new project that someone allowed to create projects there adds"
            )
            return self._probe(
                "warning", "group-wide", text, project_path=_fill(project, "new-project")
            )
        text = f"other projects whose path merely starts with {literal!r}"
        return self._probe(
            "security", "project-sibling", text, project_path=_fill(project, "-evil")
        ) + self._probe("security", "project-nested", text, project_path=_fill(project, "/evil"))

    def ref_type_probes(self) -> list[_SubProbe]:
        ref_type = self.components.get("ref_type")
        if ref_type is None or not has_wildcard(ref_type):
            return []
        if not all(_wildcard(ref_type).fullmatch(t) for t in ("branch", "tag")):
            return []
        ref = self.components.get("ref")
        if ref is None or ref == "*":
            project = self.components["project_path"]
            text = f"every branch and every tag of {project}"
            return self._probe("note", "every-ref", text, ref_type="tag")
        other = "branch" if self.own_ref_type == "tag" else "tag"
        meant = "tag" if other == "branch" else "branch"
        text = (
            f"a {other} with the name the pattern means for a {meant} (ref_type {ref_type} "
            f"matches both, and the {meant}'s protection rule does not cover a {other})"
        )
        return self._probe("security", "ref-type", text, ref_type=other)

    def ref_probes(self) -> list[_SubProbe]:
        ref = self.components.get("ref")
        if ref is None or not has_wildcard(ref):
            return []
        ref_type = self.components.get("ref_type")
        kind = ref_type if ref_type in ("branch", "tag") else "ref"
        kinds = {"branch": "branches", "tag": "tags"}.get(kind, "refs")
        project = self.components["project_path"]
        if ref == "*":
            return self._probe("note", "every-ref", f"every {kind} of {project}", ref="any")
        if _glued(ref):
            index = _first_wildcard(ref)
            if index:
                stem, how, filler = ref[:index], "starts", "-evil"
            else:
                stem, how, filler = ref[1:], "ends", "evil-"
            text = (
                f"{kinds} whose name merely {how} with {stem!r}, which a protection rule for "
                f"{stem} does not cover"
            )
            return self._probe("security", "ref-prefix", text, ref=_fill(ref, filler))
        text = (
            f"every {kind} matching {ref}: protect exactly that pattern in GitLab, so "
            "only maintainers can create such refs"
        )
        return self._probe("note", "ref-pattern", text, ref=_fill(ref, "evil"))


def _first_wildcard(value: str) -> int:
    return min(value.find(c) for c in _WILDCARDS if c in value)


def _shape_notes(components: Mapping[str, str], value: str) -> list[_SubProbe]:
    """What a customised sub shape cannot say, whatever the policy does."""
    names = ",".join(components)
    if "ref_type" not in components and not has_wildcard(components["ref"]):
        return [
            _SubProbe(
                "note",
                "no-ref-type",
                f"a tag named {components['ref']} as well as the branch: this project's sub "
                f"({names}) does not say which kind of ref it is, so protect the tag name too",
                value,
            )
        ]
    if "ref" not in components and not has_wildcard(components["ref_type"]):
        return [
            _SubProbe(
                "note",
                "every-ref",
                f"every {components['ref_type']} of {components['project_path']}: this "
                f"project's sub ({names}) has no ref",
                value,
            )
        ]
    return []
