"""Hypothesis strategies shared by the fuzz tests: awkward text, JSON of any shape, and
mutations of a valid document."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

# Control characters, lone surrogates (JSON's \ud800 escapes decode to them), digits of other
# scripts, right-to-left marks, emoji, and the rest of Unicode.
awkward_chars = st.one_of(
    st.characters(codec=None, categories=["Cs"]),
    st.characters(codec=None, categories=["Cc", "Cf", "Zl", "Zp", "Nd"]),
    st.characters(codec=None),
    st.sampled_from(["\x00", "\n", "\r", "\t", "\u202e", "\ufeff", "\U0001f600", "+", "@", "$"]),
)
# Joined by hand: st.text() drops lone surrogates from any alphabet.
awkward_text = st.lists(awkward_chars, max_size=40).map("".join)

# Strings that mean something to YAML, to ${ENV} substitution, or to the fields' validators.
special_strings = st.sampled_from(
    [
        "",
        " ",
        "~",
        "null",
        "yes",
        "no",
        "0o17",
        "0x1F",
        "1:30",
        ".inf",
        "-.nan",
        "+15005550006",
        "1e400",
        "${HOME}",
        "${PIPECORE_FUZZ_UNSET}",
        "${PIPECORE_FUZZ_UNSET:-}",
        "${PIPECORE_FUZZ_UNSET:-fallback}",
        "${",
        "<<",
        "!!binary",
        "*alias",
        "&anchor",
        "- ",
        ": ",
        "#",
        "http://",
        "https://example.com/",
        "sms",
        "email",
        "whatsapp",
        "console",
        "httpjson",
        "ana@example.com",
        "Ana <ana@example.com>",
        "+34600111222",
        "\u0663" * 9,
    ]
)

strings = st.one_of(awkward_text, special_strings, st.text(max_size=20))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([2**63, -(2**63) - 1, 10**400, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    strings,
)

json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(strings, inner, max_size=4),
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``doc`` (the root is ``()``)."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any], *, max_mutations: int = 4) -> Any:
    """``document`` after 1 to ``max_mutations`` of: a value replaced (any type, nested, huge,
    awkward text), a key deleted, renamed or added, a value wrapped in a list or a mapping,
    a value turned into its text."""
    doc: Any = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "delete", "rename", "add", "wrap", "text"]))
        if not path:
            if op in ("replace", "wrap"):
                doc = draw(json_values) if op == "replace" else [doc]
            continue
        parent = _parent(doc, path)
        step = path[-1]
        if op == "replace":
            parent[step] = draw(json_values)
        elif op == "delete":
            del parent[step]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(strings)] = parent.pop(step)
        elif op == "add":
            target = parent[step]
            if isinstance(target, dict):
                target[draw(strings)] = draw(json_values)
            elif isinstance(target, list):
                target.append(draw(json_values))
        elif op == "wrap":
            parent[step] = draw(st.sampled_from([[parent[step]], {"value": parent[step]}]))
        elif op == "text":
            parent[step] = str(parent[step])
    return doc
