"""The README's first look works as written: its shell variables are set before they are
used, and its SDK example chats on a real server."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from hybridcon.core.tokens import Role
from support import issue

README = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
SDK_EXAMPLE = re.search(r"<<'EOF'\n(.*?)\nEOF\n", README, re.DOTALL)


def test_every_shell_variable_is_set_before_it_is_used():
    assigned: set[str] = set()
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            used = set(re.findall(r"\$([A-Z][A-Z0-9_]*)", line))
            missing = used - assigned
            assert not missing, f"README uses ${missing.pop()} before setting it: {line!r}"
            assigned |= set(re.findall(r"^([A-Z][A-Z0-9_]*)=", line))
    assert {"ORGANISER", "VIEWER"} <= assigned


async def test_the_sdk_example_chats_on_a_running_server(client):
    assert SDK_EXAMPLE, "the README has no SDK example"
    code = SDK_EXAMPLE.group(1).replace(
        "ws://localhost:8080/ws", str(client.make_url("/ws")).replace("http", "ws", 1)
    )
    assert "ws://127.0.0.1:" in code
    token = issue(client, Role.VIEWER, name="Demo kijker")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-",
        token,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(code.encode()), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "Demo kijker says Goeiemorgen!"
