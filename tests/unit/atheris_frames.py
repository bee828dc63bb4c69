"""An atheris (libFuzzer) target on what the gateway does with a frame's text before any
handler runs: JSON decoding, the request id read for error replies
(``gateway._request_id``), validation into every registered request model (as
``Registry.dispatch`` does), and the close reason cut between UTF-8 characters
(``wire.close_reason``). Anything but the expected refusals is a crash.

Run by tests/unit/test_atheris_frames.py as ``python atheris_frames.py -max_total_time=N``
(atheris ends the process when the run ends, so it has a process of its own).
"""

from __future__ import annotations

import contextlib
import sys

import atheris
import orjson
from pydantic import BaseModel, ValidationError

# Coverage from hybridcon's own code only (instrumenting pydantic too costs ~40 s of start).
with atheris.instrument_imports(include=["hybridcon"]):
    from hybridcon.realtime.capabilities import EVERY_CAPABILITY
    from hybridcon.realtime.gateway import _request_id
    from hybridcon.realtime.wire import MAX_CLOSE_REASON, close_reason

MODELS: list[type[BaseModel]] = sorted(
    {spec.model for cls in EVERY_CAPABILITY for _, spec in cls.commands().values()},
    key=lambda m: m.__name__,
)
KINDS = sorted({kind for cls in EVERY_CAPABILITY for kind in cls.commands()})


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    pick = fdp.ConsumeIntInRange(0, 2)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    if pick == 1 and KINDS:
        # Mostly well-formed frames of a real type, so validation goes past the envelope.
        kind = KINDS[len(text) % len(KINDS)]
        text = f'{{"id": 1, "type": "{kind}", {text}'
    reason = close_reason(text)
    assert len(reason) <= MAX_CLOSE_REASON
    reason.decode("utf-8")  # strict: a reason cut inside a character would raise
    request_id = _request_id(text)
    assert request_id is None or (isinstance(request_id, int) and type(request_id) is int)
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if not isinstance(raw, dict):
        return
    for model in MODELS if pick == 2 else MODELS[: 1 + len(text) % 3]:
        with contextlib.suppress(ValidationError):
            model.model_validate(raw)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
