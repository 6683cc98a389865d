# The optional C extension built from _cparse.c (setup.py); message.py is its only user.
from collections.abc import Callable, Set

def parse_headers(
    head: bytes,
    first_nl: int,
    repeated: set[str] | None = None,
    original: dict[str, str] | None = None,
    /,
) -> dict[str, list[str]] | None: ...
def configure(
    compact: dict[str, str],
    multi_names: Set[str],
    split_multi: Callable[[str], list[str]],
    fallback: Callable[..., dict[str, list[str]] | None],
    /,
) -> None: ...
def own_parts(
    data: bytes, max_header_bytes: int, max_headers: int, max_body_bytes: int, /
) -> tuple[int, str, dict[str, list[str]], bytes, str, str, str, int, str, str, bytes] | None: ...
def request_parts(
    data: bytes, max_header_bytes: int, max_headers: int, max_body_bytes: int, /
) -> tuple[str, str, dict[str, list[str]], bytes, str, str, int, str, str, int, str,
           bytes] | None: ...
