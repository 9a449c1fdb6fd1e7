"""Read-only value classes: slots, equality and hash by value, copy and pickle.

What ``@dataclass(frozen=True)`` gives, without the methods a dataclass generates and
compiles when its module loads, which every job's fresh process would pay for (0.3 to
0.8 ms a class).
"""

from __future__ import annotations

import functools
from typing import Any


class ReadOnlyValue:
    """Base of a read-only value class that declares its fields in ``__slots__`` and sets
    them in ``__init__`` with :meth:`_set`.

    Instances compare and hash by the fields named in ``_COMPARED`` (every field when it
    is empty), and copy and pickle through ``__init__``, every field a keyword argument.
    """

    __slots__ = ()
    _COMPARED: tuple[str, ...] = ()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[str, ...]:
        return self.__slots__  # the subclass's

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._COMPARED or self._fields())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in self._fields()}
        return (functools.partial(type(self), **fields), ())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot delete {name!r}")
