"""Write one want file as its user: ``python -m ds01d.dockersock.wantfile ROOT USER NAME``
with the want's text on stdin. The Docker socket runs it with the caller's uid and gid (no
other groups), so the file lands in their folder exactly as ``ds01 want`` would put it:
nothing there is written or followed as root.

A want already there with the same settings is kept as it is (its place in the queue too).
"""

from __future__ import annotations

import os
import sys

from ds01d.cli.want import user_folder
from ds01d.config.want import from_yaml
from ds01d.core.wants import spec_hash
from ds01d.errors import InvalidInput
from ds01d.fsutil import write_atomic
from ds01d.paths import Paths
from ds01d.yamlsrc import read_text


def main(argv: list[str]) -> int:
    root, user, name = argv
    text = sys.stdin.read(1 << 20)
    try:
        want = from_yaml(text, user=user, file="(request)")
        if want.name != name:
            raise InvalidInput("the want's name differs")
        folder = user_folder(Paths(root), user)
        target = os.path.join(folder, f"{name}.yaml")
        if os.path.lexists(target):
            from pathlib import Path

            old = from_yaml(read_text(Path(target), display=f"{name}.yaml",
                                      follow_symlinks=False), user=user, file=f"{name}.yaml")
            if spec_hash(old) == spec_hash(want):
                return 0
        write_atomic(target, text)
    except InvalidInput as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot write your want: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
