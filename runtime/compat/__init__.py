"""The only place that touches the private parts of the libraries we build on.

The rule: a private name of aiokafka, Faust or uvicorn (an attribute or
method with a leading underscore, or an undocumented internal such as a
protocol's parser callbacks) is used in exactly one module,
``runtime/compat/<library>.py``. The rest of the code calls that module's
public functions and classes and contains no private names of the library
(ruff's ``SLF001`` is allowed only here and in tests).

Each compat module:

- lists at its top, in ``PRIVATE_NAMES``, every private name it touches,
  per class;
- names the versions it was tested with, ``TESTED`` (``[from, to)``), and
  refuses to import outside them (``UnsupportedVersion``), saying which
  version was found, which range is tested, and what to do;
- checks, before it writes a private attribute, that the attribute exists,
  so that a rename upstream fails loudly instead of creating a new attribute
  nobody reads.

tests/unit/test_compat.py checks that every listed name exists in the
installed library and that each module refuses an out-of-range version.
docs/decisions/0008-library-internals-fenced.md lists the names and the
upstream changes that would let each workaround go.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from importlib.metadata import version as _distribution_version

Version = tuple[int, ...]


class UnsupportedVersion(ImportError):
    """An installed library is outside the version range a compat module was tested with."""


class MissingInternal(RuntimeError):
    """A private name a compat module relies on is not there (the library changed)."""


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` (a PyPI name), as its metadata spells it."""
    return _distribution_version(distribution)


def parse_version(text: str) -> Version:
    """The leading numeric release parts of a version string: ``"0.15.3rc1"`` -> ``(0, 15, 3)``."""
    parts: list[int] = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(part):
            break
    return tuple(parts)


def _dotted(version: Version) -> str:
    return ".".join(str(part) for part in version)


def require_version(distribution: str, tested: tuple[Version, Version], fenced_in: str) -> str:
    """Check the installed ``distribution`` against ``tested`` (``[from, to)``); return its version.

    Raises ``UnsupportedVersion`` outside the range: the private names
    ``fenced_in`` uses may have changed, silently.
    """
    found = installed_version(distribution)
    low, high = tested
    if not low <= parse_version(found) < high:
        raise UnsupportedVersion(
            f"{fenced_in} was tested with {distribution} >={_dotted(low)},<{_dotted(high)}; "
            f"{distribution} {found} is installed. Install a tested version "
            f"(pip install '{distribution}>={_dotted(low)},<{_dotted(high)}'), or check every "
            f"name in {fenced_in}'s PRIVATE_NAMES against {distribution} {found}, run "
            f"tests/unit/test_compat.py, then widen TESTED there and the bound in pyproject.toml.")
    return found


def _source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # a built-in or C class: no Python source to read
        return ""


def missing_names(private_names: Mapping[type, tuple[str, ...]]) -> list[str]:
    """The names in ``private_names`` that ``cls`` does not have, as ``"Class.name"``.

    A name counts as present if it is a class attribute (a method, a class
    level default) or if the class's source assigns it on ``self`` (an
    instance attribute set in ``__init__`` or later).
    """
    missing = []
    for cls, names in private_names.items():
        source: str | None = None
        for name in names:
            if hasattr(cls, name):
                continue
            if source is None:
                source = "".join(_source(klass) for klass in cls.__mro__)
            if not re.search(rf"self\.{re.escape(name)}\s*(:[^=]*)?=[^=]", source):
                missing.append(f"{cls.__qualname__}.{name}")
    return missing
