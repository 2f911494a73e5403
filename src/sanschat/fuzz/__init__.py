"""`sanschat.fuzz`: fuzz the core, or a protocol of yours, for a bounded budget.

Theory of operation: two targets, one command line (``python -m sanschat.fuzz``).

* The core (`check_channel`, in ``_core``): one byte string decoded into a whole `Channel`
  scenario (terminators set after frames, limits, chunk sizes, abandoned loops) and checked
  against the core's invariants, by atheris (coverage-guided) where it imports, else
  hypothesis.
* A protocol (`fuzz_protocol`, in ``_protocol``; ``--target module:Factory``): inputs built
  from the target's own tokens (its terminators, ``fuzz_tokens``, a ``--dict``, the frames
  of a ``--corpus``) and mutated, so that frames actually end; each is run whole and under
  a few cuttings, and the first that makes the chat raise a non-`ProtocolError` or answer
  differently is reported as a `Finding`, shrunk, reproducible with its seed.
  `check_protocol` is the raw-bytes version of that check, for the generic engines.

The command line is in ``_cli``.  Nothing here is imported by the rest of the library.
"""

from ._cli import main as main
from ._core import Case as Case
from ._core import check_channel as check_channel
from ._core import check_protocol as check_protocol
from ._core import decode as decode
from ._protocol import Finding as Finding
from ._protocol import FuzzResult as FuzzResult
from ._protocol import Outcome as Outcome
from ._protocol import fuzz_protocol as fuzz_protocol
from ._protocol import load_corpus as load_corpus
from ._protocol import load_dictionary as load_dictionary
from ._protocol import parse_dictionary as parse_dictionary
from ._protocol import show_bytes as show_bytes
from ._protocol import target_tokens as target_tokens

__all__ = [
    "Case",
    "Finding",
    "FuzzResult",
    "Outcome",
    "check_channel",
    "check_protocol",
    "decode",
    "fuzz_protocol",
    "load_corpus",
    "load_dictionary",
    "main",
    "parse_dictionary",
    "show_bytes",
    "target_tokens",
]
