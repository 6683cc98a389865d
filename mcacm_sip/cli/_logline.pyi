# The optional C extension built from _logline.c (setup.py); logs.py is its only user.
from collections.abc import Callable
from typing import Any

def console(
    stamp: str, msecs: float, levelname: str, name: str, message: str, fields: dict[str, Any], /
) -> str | None: ...
def json(created: float, head: str, message: str, fields: dict[str, Any], /) -> str | None: ...
def configure(
    printable: Callable[[str], str],
    json_string: Callable[[str], str],
    json_value: Callable[[Any], str],
    /,
) -> None: ...
def info(logger: Any, msg: object, args: tuple[object, ...], extra: object, /) -> object: ...
def info_method(cls: type, python_info: Callable[..., None], /) -> Any: ...
def configure_info(
    logs_globals: dict[str, Any],
    console: type,
    json: type,
    time_module: Any,
    running_loop: Callable[[], object],
    reserved: frozenset[str],
    /,
) -> None: ...
