"""POST a JSON body to a chat webhook (Slack, Microsoft Teams and Matrix hook bridges all take
``{"text": ...}``). Standard library only; imported by ds01d when it sends."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping

from ds01d.adapters.base import PermanentError, TemporaryError

MAX_URL_FILE = 4096
log = logging.getLogger("ds01d")


def post(url: str, body: Mapping[str, object], *, timeout: float) -> None:
    """Send ``body``; :class:`TemporaryError` when worth trying again (no answer, 429, 5xx),
    :class:`PermanentError` when not (another 4xx: a wrong URL or token)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "ds01d"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(4096)
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
            raise TemporaryError(f"webhook answered {e.code} {e.reason}") from None
        raise PermanentError(f"webhook answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TemporaryError(f"webhook not reached: {reason}") from None


def url_from_file(path: str) -> str:
    """The URL in ``path``: its first line. The file must be a regular file; one others may
    read is used but said (:class:`PermanentError` otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise PermanentError(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermanentError(f"{path} is not a regular file")
        text = os.read(fd, MAX_URL_FILE).decode("utf-8", errors="replace")
        if st.st_mode & 0o077:
            log.warning("%s may be read by others than its owner: the webhook's token is "
                        "theirs too (chmod 600 %s)", path, path)
    finally:
        os.close(fd)
    url = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"{path} holds no http:// or https:// URL on its first line")
    return url
