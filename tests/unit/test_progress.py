from __future__ import annotations

import io

from tracelake.cli.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only() -> None:
    tty = _Terminal()
    bar = Progress(total=2048, label="importing", stream=tty)
    bar.update(1024)
    bar.update(2048)
    bar.close()
    out = tty.getvalue()
    assert "importing [" in out and "100%" in out and "2.0 KiB/2.0 KiB" in out
    assert out.endswith("\n")

    pipe = io.StringIO()
    quiet = Progress(total=10, label="importing", stream=pipe)
    quiet.update(10)
    quiet.close()
    assert pipe.getvalue() == ""
