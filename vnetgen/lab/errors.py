"""What can go wrong in a lab: it cannot build or reach something, it refuses an unproven namespace,
or a command inside it fails."""

from __future__ import annotations

import subprocess


class LabError(RuntimeError):
    """The lab could not build or reach what was asked."""


class NotPrivateError(LabError):
    """A target process is not in a private network namespace: refusing to touch it."""


class LabCommandError(subprocess.CalledProcessError):
    """A command inside the lab failed; the message carries its output, unlike CalledProcessError."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                if isinstance(data, bytes):
                    data = data.decode("utf-8", "replace")
                text += f"\n--- {label} (last 2000 chars) ---\n{data[-2000:]}"
        return text
